"""Kaggle's API through the real client's own objects (the `kaggle` package: the project's `kaggle` extra).

Credentials are wherever the client finds them, because the client is asked (`KaggleApi.authenticate`):
an access token ($KAGGLE_API_TOKEN, ~/.kaggle/access_token), a legacy kaggle.json or KAGGLE_USERNAME +
KAGGLE_KEY, the OAuth ~/.kaggle/credentials.json that `kaggle auth login` writes. Kaggle's answers are read
as the client's objects, never as the CLI's printed text: the CLI prints some failures and exits 0
(`datasets create` on a dataset that exists), and prints warnings on stdout beside its tables. The endpoint
is the client's too ($KAGGLE_API_ENVIRONMENT=LOCALHOST points it at http://localhost, where the tests run a
stand-in for Kaggle's API).

A submission is recorded in experiments/<name>/kaggle_submissions.json only when Kaggle confirms it (its
ref): when, the file and its digest, the message (the experiment, its CV and decision); leaderboard scores
read later (every page of the submission list) join it there, matched by ref.
"""
from __future__ import annotations

import contextlib
import hashlib
import importlib.metadata
import io
import time
from pathlib import Path
from urllib.parse import urlsplit

from .errors import PipelineError
from .network import answers
from .paths import ExperimentLayout
from .store import read_json, write_json

COMPETITION = "tgs-salt-identification-challenge"
CLIENT_FLOOR = (2, 2, 5)  # the release whose objects and answers this module was written and tested against
INSTALL = "python -m pipeline.deps --extras kaggle (or pip install 'kaggle>=2.2.5')"
PAGE = 20  # submissions per page, the client's default
MAX_PAGES = 500


def client():
    """The authenticated client; one line naming what is missing: the package, the network, credentials."""
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # the package authenticates on import, printing help
            from kaggle.api.kaggle_api_extended import KaggleApi
    except ImportError:
        raise PipelineError(f"the kaggle client is not installed: {INSTALL}") from None
    version = importlib.metadata.version("kaggle")
    if tuple(int(p) for p in version.split(".")[:3] if p.isdigit()) < CLIENT_FLOOR:
        raise PipelineError(f"kaggle {version} is older than this pipeline reads: {INSTALL}")
    endpoint = urlsplit(endpoint_of(KaggleApi))
    if not answers(endpoint.hostname, endpoint.port or (443 if endpoint.scheme == "https" else 80)):
        raise PipelineError(f"{endpoint.hostname} cannot be reached (offline); run this on a machine with internet")
    api = KaggleApi()
    try:
        with answered("signing in", "check your Kaggle credentials"), contextlib.redirect_stdout(io.StringIO()):
            api.authenticate()
    except SystemExit:
        raise PipelineError("no Kaggle credentials: run `kaggle auth login`, or set KAGGLE_API_TOKEN, or put "
                            "kaggle.json in ~/.kaggle (Kaggle > Settings > API)") from None
    return api


def endpoint_of(api_class) -> str:
    """Where the kaggle package sends its calls: it builds its client with an environment of its own
    (KaggleApi.args, read by build_kaggle_client_with_params), local only for KAGGLE_API_ENVIRONMENT=LOCALHOST;
    kagglesdk's own KAGGLE_API_ENVIRONMENT values (TEST: localhost:7777) do not reach it."""
    from kagglesdk.kaggle_env import KaggleEnv, get_endpoint
    return get_endpoint(KaggleEnv.LOCAL if "--local" in api_class.args else KaggleEnv.PROD)


@contextlib.contextmanager
def answered(what: str, fix: str):
    """Kaggle's refusal or a failed request inside, as one line: `what` failed, Kaggle's words, `fix`."""
    import requests
    try:
        yield
    except requests.HTTPError as err:
        raise PipelineError(f"Kaggle refused {what}: {err}; {fix}") from None
    except (requests.RequestException, ValueError, OSError) as err:
        raise PipelineError(f"{what} failed: {err}; {fix}") from None


def username(api) -> str:
    return api.get_config_value("username") or ""


# -- submissions -------------------------------------------------------------------------------------------

def message(name: str, cv: float | None, decision, text: str) -> str:
    cv_text = f"CV {cv:.4f}" if cv is not None else "CV untuned"
    return f"{name}: {cv_text}, {decision.describe()}" + (f" - {text}" if text else "")


def submit_csv(api, csv: Path, text: str) -> dict:
    """Send `csv` with the message `text`: {ref, answer} once Kaggle confirms it; otherwise one line."""
    fix = "nothing was recorded; check the competition's rules page and submit again"
    with answered(f"the submission of {csv}", fix):
        response = api.competition_submit(str(csv), text, COMPETITION, quiet=True)
    if not response.ref or response.message == api.COMPETITION_SUBMIT_UPLOAD_FAILED_MESSAGE:
        raise PipelineError(f"Kaggle did not take {csv} ({response.message or 'no submission ref'}); {fix}")
    return {"ref": response.ref, "answer": response.message}


def record(exp: ExperimentLayout, csv: Path, text: str, cv: float | None, decision, confirmed: dict) -> None:
    path = exp.kaggle_submissions_json
    entries = read_json(path)["submissions"] if path.is_file() else []
    entries.append({"time": time.strftime("%Y-%m-%d %H:%M:%S"), "file": str(csv), "message": text,
                    "sha1": hashlib.sha1(csv.read_bytes()).hexdigest(), "cv_score": cv,
                    "decision": decision.to_dict(), **confirmed})
    write_json(path, {"submissions": entries})


def list_submissions(api) -> list[dict]:
    """Every submission of ours to the competition, all pages: ref, description, status and the scores."""
    from kagglesdk.competitions.types.competition_api_service import ApiListSubmissionsRequest
    found, token, page = {}, "", 1
    with answered("listing your submissions", "try again later"), api.build_kaggle_client() as kaggle:
        for _ in range(MAX_PAGES):
            request = ApiListSubmissionsRequest()
            request.competition_name, request.page_size = COMPETITION, PAGE
            request.page_token = token
            if not token:
                request.page = page
            listed = kaggle.competitions.competition_api_client.list_submissions(request)
            fresh = [item for item in listed.submissions if item.ref not in found]
            found.update((item.ref, submission_row(item)) for item in fresh)
            token, page = listed.next_page_token, page + 1
            if not fresh or (not token and len(listed.submissions) < PAGE):
                break
    return list(found.values())


def submission_row(item) -> dict:
    return {"ref": item.ref, "description": item.description or "", "status": item.status.name,
            "public_score": score(item.public_score), "private_score": score(item.private_score)}


def score(value) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


# -- datasets and kernels ----------------------------------------------------------------------------------

def dataset_exists(api, ref: str) -> bool:
    import requests
    try:
        api.dataset_status(ref)
        return True
    except requests.HTTPError as err:
        if err.response is not None and err.response.status_code == 404:
            return False
        raise PipelineError(f"Kaggle refused the status of dataset {ref}: {err}; try again later") from None


def upload_dataset(api, folder: Path, ref: str, notes: str) -> str:
    """Create dataset `ref` from `folder`'s top-level files, or add a version when it exists; which it did."""
    exists = dataset_exists(api, ref)
    fix = "fix what it says and push again (python -m pipeline.bundle --push)"
    with answered(f"the upload of {folder} as {ref}", fix):
        result = (api.dataset_create_version(str(folder), notes, quiet=True, dir_mode="skip") if exists else
                  api.dataset_create_new(str(folder), public=False, quiet=True, dir_mode="skip"))
    if result is None or (result.status or "").lower() != "ok":
        raise PipelineError(f"Kaggle refused the upload of {folder} as {ref}: "
                            f"{getattr(result, 'error', None) or 'no answer'}; {fix}")
    return "versioned" if exists else "created"


def wait_ready(api, ref: str, seconds: float = 1800, poll: float = 10) -> None:
    """Until Kaggle says dataset `ref` is ready (a kernel pushed earlier would mount the old version)."""
    deadline = time.monotonic() + seconds
    while True:
        with answered(f"the status of dataset {ref}", "try again later"):
            status = api.dataset_status(ref)
        if status == "ready":
            return
        if status in ("failed", "deleted") or time.monotonic() > deadline:
            raise PipelineError(f"dataset {ref} is '{status}' on Kaggle, not ready; see its page, then push again")
        time.sleep(poll)


def push_kernel(api, folder: Path) -> str:
    """Push the kernel folder (its metadata names the machine, sources and internet); the run's URL."""
    fix = f"fix what it says, then push again (kaggle kernels push -p {folder})"
    with answered(f"the kernel in {folder}", fix):
        result = api.kernels_push(str(folder))
    if result is None or result.error:
        raise PipelineError(f"Kaggle refused the kernel in {folder}: {getattr(result, 'error', None) or 'no answer'}; {fix}")
    invalid = [f"{what} {names}" for what, names in (("datasets", result.invalid_dataset_sources),
                                                     ("competitions", result.invalid_competition_sources)) if names]
    if invalid:
        raise PipelineError(f"Kaggle could not attach the kernel's {'; '.join(invalid)}; {fix}")
    return result.url
