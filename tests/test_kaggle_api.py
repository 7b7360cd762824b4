"""The Kaggle road through the real `kaggle` client against a local stand-in for Kaggle's API (tests/kaggle_standin.py):
`bundle --push` twice, a submission (taken, refused, failed upload), `leaderboard --fetch-lb` over every page,
and credentials where kagglesdk finds them."""
import json
import os
import subprocess
import sys
import zipfile

import pytest

pytest.importorskip("kaggle", reason="the kaggle client (the test extra installs it)")

from pipeline.bundle import COMPETITION, KERNEL, WHEELS, write_metadata  # noqa: E402
from pipeline.lib import kaggle_api  # noqa: E402
from pipeline.lib.errors import PipelineError  # noqa: E402
from pipeline.lib.kaggle_kernel import sha256  # noqa: E402
from pipeline.lib.paths import REPO, WorkLayout  # noqa: E402
from pipeline.lib.store import write_json  # noqa: E402
from tests.kaggle_standin import BASE, ENVIRONMENT, Server  # noqa: E402
from tests.test_submit import fake_test_probs  # noqa: E402

pytestmark = pytest.mark.slow  # the real kaggle client against the stand-in, a process per call


@pytest.fixture
def kaggle(tmp_path, monkeypatch):
    """The stand-in, and an environment whose kaggle client talks to it with legacy API-key credentials."""
    home = tmp_path / "home"
    home.mkdir()
    env = {"KAGGLE_API_ENVIRONMENT": ENVIRONMENT, "KAGGLE_USERNAME": "me", "KAGGLE_KEY": "secret", "HOME": str(home)}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    for name in ("KAGGLE_API_TOKEN", "KAGGLE_CONFIG_DIR", "KAGGLE_KERNEL_RUN_TYPE"):
        monkeypatch.delenv(name, raising=False)
    try:
        server = Server()
    except OSError as err:  # not root, or the port is taken
        pytest.skip(f"the stand-in for Kaggle's API serves on localhost:80, which is not to be had here ({err})")
    with server as kaggle:
        yield kaggle


def run(*args, cwd=REPO):
    """A new Python (the kaggle package reads KAGGLE_API_ENVIRONMENT when it is imported)."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, *map(str, args)], capture_output=True, text=True, cwd=cwd, env=env)


def python(code: str):
    """`code` in a new Python, as a stage runs it (an expected failure is one line and exit 2)."""
    return run("-c", "from pipeline.lib.cli import run_stage\n"
                     "from pipeline.lib import kaggle_api\n"
                     f"def main(argv):\n    {code}\nrun_stage(main)")


OWNER = "print(kaggle_api.username(kaggle_api.client()))"


def project_wheel(folder, payload: str):
    """A wheels folder as `bundle` leaves it: the project's wheel (here a stand-in) and the dataset metadata."""
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob("*.whl"):
        old.unlink()
    path = folder / "tgs_salt_pipeline-0.9.0-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("pipeline/__init__.py", payload)
    write_metadata(folder, WHEELS, "me")
    return path


def push(out):
    return run("-m", "pipeline.bundle", "--out", out, "--config", "demo.yaml", "--no-wheels", "--push")


def test_bundle_push_creates_then_versions_and_pushes_the_t4_kernel(kaggle, tmp_path):
    out = tmp_path / "upload"
    first = project_wheel(out / WHEELS, "one")
    pushed = push(out)
    assert pushed.returncode == 0, pushed.stderr
    assert "me/tgs-wheels: created" in pushed.stdout and f"kernel pushed: {BASE}/code/me/{KERNEL}" in pushed.stdout
    assert kaggle.datasets["me/tgs-wheels"] == [{first.name: first.read_bytes()}]  # exactly the bundle's files
    kernel = kaggle.kernels[f"me/{KERNEL}"][0]
    assert (kernel.machine_shape, kernel.enable_gpu, kernel.enable_internet) == ("NvidiaTeslaT4", True, False)
    assert kernel.dataset_data_sources == ["me/tgs-wheels"] and kernel.competition_data_sources == [COMPETITION]
    assert sha256(first) in kernel.text

    second = project_wheel(out / WHEELS, "two")
    again = push(out)
    assert again.returncode == 0, again.stderr
    assert "me/tgs-wheels: versioned" in again.stdout
    assert [method for method, _ in kaggle.calls].count("CreateDataset") == 1  # a version, not a second create
    assert kaggle.datasets["me/tgs-wheels"][1] == {second.name: second.read_bytes()}
    assert sha256(second) in kaggle.kernels[f"me/{KERNEL}"][1].text


def test_the_real_cli_says_an_error_and_exits_0_on_a_dataset_that_exists(kaggle, tmp_path):
    """Why the pipeline reads the client's objects and not the CLI's words: the defect, shown with the CLI."""
    out = tmp_path / "upload"
    project_wheel(out / WHEELS, "one")
    assert push(out).returncode == 0
    cli = subprocess.run([sys.executable, "-m", "kaggle", "datasets", "create", "-p", str(out / WHEELS)],
                         capture_output=True, text=True)
    assert cli.returncode == 0 and "Dataset creation error" in cli.stdout


def submit(demo_input, work, text="first try"):
    return run("-m", "pipeline.submit", "--input", demo_input, "--workdir", work, "--experiments", "exp",
               "--kaggle-message", text)


def test_a_confirmed_submission_is_recorded_with_its_ref(kaggle, demo_input, tmp_path):
    fake_test_probs(demo_input, tmp_path)
    kaggle.newest_client = "99.0.0"  # Kaggle's "outdated client" header: a warning printed, nothing else changes
    sent = submit(demo_input, tmp_path)
    assert sent.returncode == 0, sent.stderr
    created = [request for method, request in kaggle.calls if method == "CreateSubmission"]
    assert created[0].submission_description == "exp: CV untuned, threshold 0.500, min area 0 - first try"
    record = json.loads(WorkLayout(tmp_path).experiment("exp").kaggle_submissions_json.read_text())
    assert record["submissions"][0]["ref"] == kaggle.submissions[0].ref == 1000


@pytest.mark.parametrize("how", ["refused", "upload fails"])
def test_a_submission_kaggle_does_not_take_is_one_line_and_no_record(kaggle, demo_input, tmp_path, how):
    fake_test_probs(demo_input, tmp_path)
    kaggle.refuse_submissions = "You have used your daily submission allowance" if how == "refused" else ""
    kaggle.refuse_uploads = how == "upload fails"
    sent = submit(demo_input, tmp_path)
    assert sent.returncode == 2 and "Traceback" not in sent.stderr
    words = "daily submission allowance" if how == "refused" else "Could not submit to competition"
    assert sent.stderr.count("\n") == 1 and words in sent.stderr and "nothing was recorded" in sent.stderr
    assert not WorkLayout(tmp_path).experiment("exp").kaggle_submissions_json.exists()
    assert not kaggle.submissions


def test_scores_of_every_page_arrive(kaggle, tmp_path):
    for index in range(45):  # three pages of 20
        kaggle.add_submission(f"old {index}", public=f"0.{700 + index}", private=f"0.{650 + index}")
    kaggle.newest_client = "99.0.0"
    listed = python("print(len(kaggle_api.list_submissions(kaggle_api.client())))")
    assert listed.stdout.strip().endswith("45") and [method for method, _ in kaggle.calls].count("ListSubmissions") == 3
    assert "outdated" in listed.stdout  # the client's warning, on stdout, beside what was read
    work = WorkLayout(tmp_path)
    oldest = kaggle.submissions[-1]  # on the last page
    write_json(work.experiment("exp").kaggle_submissions_json,
               {"submissions": [{"ref": oldest.ref, "message": "exp: CV 0.8"}, {"message": "old 44"}]})
    fetched = run("-c", f"from pathlib import Path; from pipeline import leaderboard; from pipeline.lib.paths import WorkLayout; "
                        f"leaderboard.fetch_lb(WorkLayout(Path({str(tmp_path)!r})), ['exp'])")
    assert fetched.returncode == 0, fetched.stderr
    got = json.loads(work.experiment("exp").kaggle_submissions_json.read_text())["submissions"]
    assert [(item["public_score"], item["private_score"]) for item in got] == [(0.7, 0.65), (0.744, 0.694)]


def test_oauth_credentials_from_kaggle_auth_login_name_the_owner(kaggle, tmp_path, monkeypatch):
    monkeypatch.delenv("KAGGLE_USERNAME")
    monkeypatch.delenv("KAGGLE_KEY")
    (tmp_path / "home" / ".kaggle").mkdir()
    (tmp_path / "home" / ".kaggle" / "credentials.json").write_text(json.dumps(
        {"refresh_token": "r", "access_token": "a", "access_token_expiration": "2099-01-01T00:00:00+00:00",
         "username": "oauth-user", "scopes": []}))
    assert python(OWNER).stdout.strip() == "oauth-user"


def test_an_access_token_is_read_where_kagglesdk_reads_it(kaggle, tmp_path, monkeypatch):
    monkeypatch.delenv("KAGGLE_USERNAME")
    monkeypatch.delenv("KAGGLE_KEY")
    elsewhere = tmp_path / "config"
    elsewhere.mkdir()
    (elsewhere / "access_token").write_text("token")
    monkeypatch.setenv("KAGGLE_CONFIG_DIR", str(elsewhere))  # kagglesdk reads access_token from ~/.kaggle only
    refused = python(OWNER)
    assert refused.returncode == 2 and refused.stderr.startswith("error: no Kaggle credentials")
    (tmp_path / "home" / ".kaggle").mkdir()
    (tmp_path / "home" / ".kaggle" / "access_token").write_text("token")
    assert python(OWNER).stdout.strip() == "me"  # the token's user, as Kaggle introspects it
    assert [method for method, _ in kaggle.calls][-1] == "IntrospectToken"


def test_bundle_without_owner_or_credentials_is_one_line(kaggle, tmp_path, monkeypatch):
    monkeypatch.delenv("KAGGLE_USERNAME")
    monkeypatch.delenv("KAGGLE_KEY")
    made = run("-m", "pipeline.bundle", "--out", tmp_path / "upload", "--config", "demo.yaml", "--no-wheels")
    assert made.returncode != 0 and "Traceback" not in made.stderr
    assert made.stderr.strip() == ("error: no Kaggle credentials: run `kaggle auth login`, or set KAGGLE_API_TOKEN, "
                                   "or put kaggle.json in ~/.kaggle (Kaggle > Settings > API); or pass --owner "
                                   "YOUR_KAGGLE_USERNAME")


class Polled:
    """A client whose dataset status goes through `statuses`."""

    def __init__(self, statuses):
        self.statuses = list(statuses)

    def dataset_status(self, ref):
        return self.statuses.pop(0)


def test_pushing_waits_until_kaggle_says_ready():
    client = Polled(["pending", "pending", "ready"])
    kaggle_api.wait_ready(client, "me/tgs-wheels", poll=0)
    assert not client.statuses
    with pytest.raises(PipelineError, match="dataset me/tgs-wheels is 'failed' on Kaggle, not ready"):
        kaggle_api.wait_ready(Polled(["failed"]), "me/tgs-wheels", poll=0)
