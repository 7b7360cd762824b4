"""The status stage: each stage's state in words, and a bad config refused before the model libraries load."""
import json
import subprocess
import sys

import pytest

from pipeline.lib.errors import PipelineError
from pipeline.lib.paths import REPO, WorkLayout
from tests.tiny_run import DEMO, TINY, name


@pytest.mark.slow
def test_status_names_each_stage(copy, capsys):
    from pipeline import status
    status.main(["--config", DEMO, "--input", str(copy / "input"), "--workdir", str(copy / "work"), *TINY])
    out = capsys.readouterr().out
    for stage in ("folds", "train", "predict", "tune", "submit"):
        assert f"{stage}: up to date" in out
    status.main(["--config", DEMO, "--input", str(copy / "input"), "--workdir", str(copy / "work"), *TINY,
                 "train.lr=0.02"])
    out = capsys.readouterr().out
    assert "train: missing" in out and "predict: missing" in out
    json.loads((WorkLayout(copy / "work").experiment(name()).predict_json).read_text())


STATUS_CONFIG_ERROR = """
import sys
from pipeline import status
try:
    status.main(["--config", "demo", "train.epochs=0"])
except Exception as err:
    print(type(err).__name__, sorted(m for m in ("torch", "segmentation_models_pytorch") if m in sys.modules))
"""


def test_status_refuses_a_bad_config_before_loading_torch():
    """run.sh asks status first: a config error is one line at once, not after the model libraries load."""
    out = subprocess.run([sys.executable, "-c", STATUS_CONFIG_ERROR], capture_output=True, text=True, cwd=REPO)
    assert out.stdout.split() == ["PipelineError", "[]"], out.stdout + out.stderr


def test_run_sh_asks_status_to_check_the_encoder_too(tmp_path, capsys):
    from pipeline import status
    with pytest.raises(PipelineError, match=r"model\.encoder = 'resnet35': not a registered name"):
        status.main(["--config", DEMO, "--check-encoder", "--name", "model.encoder=resnet35"])
    status.main(["--config", DEMO, "--name", "model.encoder=resnet35"])  # alone, status builds no model
    assert capsys.readouterr().out.startswith("demo-")


def test_a_stage_after_one_not_up_to_date_is_never_up_to_date():
    from pipeline.lib.records import after_upstream
    ok, untrained = ("up to date", []), ("missing", ["fold(s) 1 not trained"])
    assert after_upstream({"train": untrained, "predict": ok, "tune": ("stale", ["config"]), "submit": ok}) == {
        "train": untrained, "predict": ("stale", ["train is missing"]), "tune": ("stale", ["config"]),
        "submit": ("stale", ["train is missing"])}
    assert after_upstream({"train": ok, "predict": ok}) == {"train": ok, "predict": ok}
