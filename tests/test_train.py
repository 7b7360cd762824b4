"""A short training run on generated data with a tiny model: loss, artifacts, resume, failures."""
import pandas as pd
import pytest
import torch

from pipeline import folds, train
from pipeline.config import load_config
from pipeline.errors import PipelineError
from pipeline.paths import CONFIG_DIR, InputLayout, WorkLayout

TINY = ["model.decoder_channels=[16,16,8,8,8]", "train.batch_size=8", "train.num_workers=0", "train.lr=0.003",
        "train.warmup_epochs=0", "train.cycles=2", "train.switch_epoch=1"]


@pytest.fixture
def work(demo_input, tmp_path):
    folds.main(["--input", str(demo_input), "--workdir", str(tmp_path), "--n-folds", "3"])
    return WorkLayout(tmp_path)


def run(demo_input, work, extra=(), resume=False, force=False):
    config = load_config(CONFIG_DIR / "demo.yaml", TINY + list(extra))
    return train.train_fold(config, InputLayout(demo_input), work, 0, resume=resume, force=force)


def test_training_lowers_the_loss_and_writes_every_artifact(demo_input, work):
    score = run(demo_input, work, ["train.epochs=4"])
    exp = work.experiment("demo")
    log = pd.read_csv(exp.log_csv(0))
    assert log["epoch"].tolist() == [0, 1, 2, 3]
    assert log["train_loss"].iloc[0] > log["train_loss"].iloc[1:].min()
    assert log["loss_name"].iloc[0] == "1*bce+1*dice" and log["loss_name"].iloc[-1] == "1*lovasz_symmetric"
    assert 0 <= score <= 1 and score == pytest.approx(log["score_best"].max())
    for path in [exp.last_checkpoint(0), exp.best_checkpoint(0), exp.curves_png(0), exp.done_marker(0),
                 exp.config_yaml, exp.snapshot(0, 0), exp.snapshot(0, 1)]:
        assert path.exists(), path
    assert not list(exp.fold_dir(0).glob("*.tmp"))
    assert run(demo_input, work, ["train.epochs=4"]) is None  # done folds are skipped


def test_resume_continues_from_the_saved_epoch(demo_input, work, capsys):
    run(demo_input, work, ["train.epochs=1"])
    exp = work.experiment("demo")
    exp.done_marker(0).unlink()  # as if interrupted after the first epoch
    with pytest.raises(PipelineError, match="--resume"):
        run(demo_input, work, ["train.epochs=2"])
    run(demo_input, work, ["train.epochs=2"], resume=True)
    assert "resuming after epoch 0" in capsys.readouterr().out
    assert pd.read_csv(exp.log_csv(0))["epoch"].tolist() == [0, 1]
    assert torch.load(exp.last_checkpoint(0), weights_only=False)["epoch"] == 1


def test_nan_loss_stops_with_a_clear_message_and_keeps_the_checkpoint(demo_input, work, monkeypatch):
    run(demo_input, work, ["train.epochs=1"])
    exp = work.experiment("demo")
    exp.done_marker(0).unlink()
    before = exp.last_checkpoint(0).read_bytes()

    def nan_loss(terms):
        def loss(logits, target):
            return logits.mean() * float("nan")
        loss.name = "nan"
        return loss

    monkeypatch.setattr(train, "make_loss", nan_loss)
    with pytest.raises(PipelineError, match="loss became nan.*last good checkpoint"):
        run(demo_input, work, ["train.epochs=2"], resume=True)
    assert exp.last_checkpoint(0).read_bytes() == before


def test_folds_run_in_parallel_worker_processes(demo_input, work):
    train.main(["--config", str(CONFIG_DIR / "demo.yaml"), "--fold", "all", "--parallel", "2", "--input",
                str(demo_input), "--workdir", str(work.root), *TINY, "train.epochs=1", "train.cycles=1"])
    assert all(work.experiment("demo").done_marker(fold).exists() for fold in range(3))


def test_fold_argument_takes_a_number_a_list_or_all(tmp_path):
    work = WorkLayout(tmp_path)
    assert train.fold_list("2", work) == [2] and train.fold_list("3,0,3", work) == [0, 3]
    with pytest.raises(PipelineError, match="pipeline.folds"):
        train.fold_list("all", work)
    with pytest.raises(PipelineError, match="--fold must be"):
        train.fold_list("first", work)


def test_validation_empties_the_images_the_head_calls_empty():
    probs = torch.full((3, 2, 2), 0.8)
    gated = train.gate_by_head(probs, torch.tensor([[2.0], [-0.1], [0.0]]))
    assert gated[:, 0, 0].tolist() == pytest.approx([0.8, 0.0, 0.8])
    assert train.gate_by_head(probs, None) is probs
