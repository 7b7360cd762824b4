"""A short training run on generated data with a tiny model: loss, artifacts, snapshots, resume, failures,
and validation == prediction."""
import os

import numpy as np
import pandas as pd
import pytest
import torch

from pipeline import folds, predict, train
from pipeline.lib import training
from pipeline.lib.checkpoints import load_checkpoint
from pipeline.lib.config import load_config
from pipeline.lib.data import load_train
from pipeline.lib.errors import PipelineError
from pipeline.lib.fold_data import fold_data
from pipeline.lib.folds import read_folds
from pipeline.lib.paths import CONFIG_DIR, InputLayout, WorkLayout
from pipeline.lib.probs import load_probs
from pipeline.lib.records import untrained_folds
from pipeline.lib.store import read_json
from tests.tiny_training import TINY, experiment, inputs_of, tiny

pytestmark = pytest.mark.slow  # real training runs, a few seconds each


def run(demo_input, work, extra=(), resume=False, force=False):
    """Fold 0 as the train stage takes it: None when it is up to date (skipped), else its best score."""
    config, inputs = tiny(extra), inputs_of(demo_input, work)
    if not force and not untrained_folds(work.experiment(config.name), [0], inputs.identity(config)):
        return None
    return training.train_fold(config, InputLayout(demo_input), inputs, 0, resume=resume, force=force)


def interrupt_after(monkeypatch, epochs: int) -> None:
    """Training stops (as on Ctrl-C) once `epochs` epochs are done and saved."""
    original = training.Trainer.train_epoch

    def train_epoch(self, epoch, loss_fn):
        if epoch == epochs:
            raise KeyboardInterrupt
        return original(self, epoch, loss_fn)

    monkeypatch.setattr(training.Trainer, "train_epoch", train_epoch)


def interrupted_run(demo_input, work, monkeypatch, extra):
    with monkeypatch.context() as patch:
        interrupt_after(patch, 1)
        with pytest.raises(KeyboardInterrupt):
            run(demo_input, work, extra)
    exp = experiment(work, extra)
    assert exp.last_checkpoint(0).exists() and not exp.done_marker(0).exists()
    return exp


def test_training_lowers_the_loss_and_writes_every_artifact(demo_input, work):
    extra = ["train.epochs=3", "train.cycles=2", "train.switch_epoch=1"]
    score = run(demo_input, work, extra)
    exp = experiment(work, extra)
    log = pd.read_csv(exp.log_csv(0))
    assert log["epoch"].tolist() == [0, 1, 2]
    assert log["train_loss"].iloc[0] > log["train_loss"].iloc[1:].min()
    assert log["loss_name"].iloc[0] == "1*bce+1*dice" and log["loss_name"].iloc[-1] == "1*lovasz_symmetric"
    assert 0 <= score <= 1 and score == pytest.approx(log["score_best"].max())
    assert (log["score_best"] >= log["score_05"] - 1e-9).all()  # the tuned decision is never worse than 0.5
    for path in [exp.last_checkpoint(0), exp.best_checkpoint(0), exp.curves_png(0), exp.done_marker(0),
                 exp.config_yaml, exp.snapshot(0, 0), exp.snapshot(0, 1)]:
        assert path.exists(), path
    assert not list(exp.fold_dir(0).glob(".*.tmp"))
    # 40 training images / batch 8 = 5 steps per epoch; 15 steps in 2 cycles of 7: snapshots after steps 7 and 14
    assert [load_checkpoint(exp.snapshot(0, c))["step"] for c in (0, 1)] == [7, 14]
    assert run(demo_input, work, extra) is None  # up to date: skipped


def test_validation_probabilities_equal_predict_out_of_fold(demo_input, work, monkeypatch):
    """The best checkpoint is chosen on exactly what predict later writes for the fold."""
    seen = []
    original = training.Trainer.validate

    def keep(self):
        prediction, scores = original(self)
        seen.append(prediction)
        return prediction, scores

    monkeypatch.setattr(training.Trainer, "validate", keep)
    run(demo_input, work, ["train.epochs=1", "model.empty_head=true", "train.cycles=1"])
    for fold in (1, 2):  # predict needs every fold trained
        training.train_fold(tiny(["train.epochs=1", "model.empty_head=true", "train.cycles=1"]),
                            InputLayout(demo_input), inputs_of(demo_input, work), fold)
    predict.main(["--config", str(CONFIG_DIR / "demo.yaml"), "--input", str(demo_input), "--workdir",
                  str(work.root), *TINY, "train.epochs=1", "model.empty_head=true", "train.cycles=1"])
    stored = load_probs(experiment(work, ["train.epochs=1", "model.empty_head=true", "train.cycles=1"]).oof_probs(0))
    validated = seen[0]
    assert np.array_equal(stored.levels, np.clip(np.rint(validated.probs * 255), 0, 255).astype(np.uint8))
    assert np.allclose(stored.salt_prob, validated.salt_prob)
    train_set = load_train(InputLayout(demo_input))
    split = read_folds(work, train_set.ids)["fold"].to_numpy()
    assert stored.ids.tolist() == train_set.ids[split == 0].tolist()


def test_resume_continues_from_the_saved_epoch(demo_input, work, monkeypatch, capsys):
    exp = interrupted_run(demo_input, work, monkeypatch, ["train.epochs=2"])
    with pytest.raises(PipelineError, match="--resume"):
        run(demo_input, work, ["train.epochs=2"])
    run(demo_input, work, ["train.epochs=2"], resume=True)
    assert "resuming after epoch 0" in capsys.readouterr().out
    assert pd.read_csv(exp.log_csv(0))["epoch"].tolist() == [0, 1]
    state = load_checkpoint(exp.last_checkpoint(0))
    assert state["epoch"] == 1 and state["step"] == 10


def test_resume_survives_a_changed_amp_and_a_killed_save(demo_input, work, monkeypatch):
    """last.pt saved without fp16 holds an empty scaler state; an fp16 run resumes from it. A save killed
    mid-way left a temporary file, which the next start removes."""
    exp = interrupted_run(demo_input, work, monkeypatch, ["train.epochs=2"])
    stray = exp.fold_dir(0) / ".last.pt.abc123.tmp"
    stray.write_bytes(b"half a checkpoint")
    monkeypatch.setattr(torch.amp.GradScaler, "is_enabled", lambda self: True)  # as on a GPU with amp=fp16
    loaded = []
    monkeypatch.setattr(torch.amp.GradScaler, "load_state_dict", lambda self, state: loaded.append(state))
    assert experiment(work, ["train.epochs=2", "train.amp=fp16"]) == exp  # amp is how it runs, not what it learns
    run(demo_input, work, ["train.epochs=2", "train.amp=fp16"], resume=True)
    assert loaded == [] and not stray.exists() and exp.done_marker(0).exists()


def test_resume_checkpoints_every_few_epochs(demo_input, work, monkeypatch):
    """train.resume_every=2: last.pt after epochs 2 and 3 (the last) only; an interruption in epoch 3
    resumes after epoch 2. It says how a run executes, so the experiment is the same."""
    extra = ["train.epochs=3", "train.resume_every=2"]
    assert experiment(work, extra) == experiment(work, ["train.epochs=3"])
    with monkeypatch.context() as patch:
        interrupt_after(patch, 2)
        with pytest.raises(KeyboardInterrupt):
            run(demo_input, work, extra)
    exp = experiment(work, extra)
    assert load_checkpoint(exp.last_checkpoint(0))["epoch"] == 1
    run(demo_input, work, extra, resume=True)
    assert pd.read_csv(exp.log_csv(0))["epoch"].tolist() == [0, 1, 2]


def test_resume_refuses_a_checkpoint_saved_for_other_inputs(demo_input, work, monkeypatch):
    exp = interrupted_run(demo_input, work, monkeypatch, ["train.epochs=2"])
    state = load_checkpoint(exp.last_checkpoint(0))
    state["identity"]["config"]["train"]["lr"] = 0.1  # as if the config file had said another lr
    torch.save(state, exp.last_checkpoint(0))
    with pytest.raises(PipelineError, match=r"saved for other inputs \(train.lr 0.1 -> 0.003\)"):
        run(demo_input, work, ["train.epochs=2"], resume=True)


def test_a_damaged_checkpoint_is_one_line_naming_it(demo_input, work, monkeypatch):
    exp = interrupted_run(demo_input, work, monkeypatch, ["train.epochs=2"])
    data = exp.last_checkpoint(0).read_bytes()
    exp.last_checkpoint(0).write_bytes(data[: len(data) // 2])
    with pytest.raises(PipelineError, match=rf"checkpoint {exp.last_checkpoint(0)} is damaged .*--force"):
        run(demo_input, work, ["train.epochs=2"], resume=True)


def test_nan_loss_stops_with_a_clear_message_and_keeps_the_checkpoint(demo_input, work, monkeypatch):
    exp = interrupted_run(demo_input, work, monkeypatch, ["train.epochs=2"])
    before = exp.last_checkpoint(0).read_bytes()

    def nan_loss(terms):
        def loss(logits, target):
            return logits.mean() * float("nan")
        loss.name = "nan"
        return loss

    monkeypatch.setattr(training, "make_loss", nan_loss)
    with pytest.raises(PipelineError, match="loss became nan.*last good checkpoint"):
        run(demo_input, work, ["train.epochs=2"], resume=True)
    assert exp.last_checkpoint(0).read_bytes() == before


def test_a_rejected_config_writes_nothing(demo_input, work):
    with pytest.raises(PipelineError, match="train.epochs"):
        train.main(["--config", str(CONFIG_DIR / "demo.yaml"), "--fold", "0", "--input", str(demo_input),
                    "--workdir", str(work.root), "train.epochs=0"])
    assert not (work.root / "experiments").exists()


def test_the_gpu_recipe_runs_at_tiny_scale_from_a_start_weights_file(demo_input, work, tmp_path):
    """default.yaml as shipped (ResNet-34 from ImageNet, scSE, head, on-device augmentation, two cycles with
    snapshots), shrunk to two epochs of small batches; the ImageNet start comes from a file, as offline."""
    import segmentation_models_pytorch as smp
    torch.save(smp.encoders.get_encoder("resnet34", weights=None).state_dict(), tmp_path / "resnet34.pth")
    config = load_config(CONFIG_DIR / "default.yaml", [
        "train.epochs=2", "train.warmup_epochs=0", "train.switch_epoch=1", "train.batch_size=8",
        "train.num_workers=0", f"model.encoder_weights={tmp_path / 'resnet34.pth'}"])
    assert config.train.gpu_augment and config.train.cycles == 2 and config.model.encoder == "resnet34"
    training.train_fold(config, InputLayout(demo_input), inputs_of(demo_input, work), 0)
    exp = work.experiment(config.name)
    record = read_json(exp.done_marker(0))
    assert record["start_weights"] == f"file {tmp_path / 'resnet34.pth'}"
    assert record["identity"]["start_weights"].startswith("file ")
    assert len(exp.snapshots(0)) == 2


def test_a_moving_average_of_the_weights_is_what_is_validated_and_saved(demo_input, work):
    extra = ["train.epochs=1", "train.ema=0.9"]
    run(demo_input, work, extra)
    exp = experiment(work, extra)
    best, last = load_checkpoint(exp.best_checkpoint(0)), load_checkpoint(exp.last_checkpoint(0))
    name = next(k for k, v in last["model"].items() if v.is_floating_point())
    assert torch.equal(best["model"][name], last["ema"][name])  # one epoch: the best is the last average
    assert not torch.equal(last["ema"][name], last["model"][name])


def test_resume_restores_the_moving_average(demo_input, work, monkeypatch):
    extra = ["train.epochs=2", "train.ema=0.9"]
    exp = interrupted_run(demo_input, work, monkeypatch, extra)
    saved = load_checkpoint(exp.last_checkpoint(0))["ema"]
    restored = []
    original = training.Trainer.resume

    def resume(self):
        original(self)
        restored.append({k: v.clone() for k, v in self.nets.ema.module.state_dict().items()})

    monkeypatch.setattr(training.Trainer, "resume", resume)
    run(demo_input, work, extra, resume=True)
    assert restored and all(torch.equal(restored[0][k], v) for k, v in saved.items())


def test_deterministic_runs_write_identical_logs_and_weights(demo_input, work, tmp_path):
    extra = ["train.epochs=2", "train.deterministic=true"]
    try:
        run(demo_input, work, extra)
        first = experiment(work, extra)
        log = first.log_csv(0).read_text()
        weights = load_checkpoint(first.best_checkpoint(0))["model"]
        again = WorkLayout(tmp_path / "again", n_folds=3)
        folds.main(["--input", str(demo_input), "--workdir", str(again.root), "--n-folds", "3"])
        run(demo_input, again, extra)
    finally:
        torch.use_deterministic_algorithms(False)
    second = experiment(again, extra)
    drop_seconds = lambda text: [line.rsplit(",", 1)[0] for line in text.splitlines()]  # noqa: E731
    assert drop_seconds(second.log_csv(0).read_text()) == drop_seconds(log)
    other = load_checkpoint(second.best_checkpoint(0))["model"]
    assert all(torch.equal(weights[key], other[key]) for key in weights)
    assert experiment(work, extra).root == experiment(work, ["train.epochs=2"]).root  # runtime-only: same experiment


def test_deterministic_switches_the_gpu_settings(monkeypatch):
    from pipeline.lib.runtime import CUBLAS_WORKSPACE, set_deterministic
    monkeypatch.setattr(torch.backends.cudnn, "benchmark", True)
    monkeypatch.setattr(torch.backends.cudnn, "deterministic", False)
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    calls = []
    monkeypatch.setattr(torch, "use_deterministic_algorithms", lambda on: calls.append(on))
    set_deterministic(False)
    assert torch.backends.cudnn.benchmark is True and not calls
    set_deterministic(True)
    assert calls == [True] and torch.backends.cudnn.benchmark is False and torch.backends.cudnn.deterministic is True
    assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == CUBLAS_WORKSPACE


def test_tensorboard_event_files_hold_the_log_and_the_learning_rate(demo_input, work):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    extra = ["train.epochs=2", "train.tensorboard=true"]
    run(demo_input, work, extra)
    exp = experiment(work, extra)
    assert exp.root == experiment(work, ["train.epochs=2"]).root  # runtime-only: not part of the fold's identity
    events = EventAccumulator(str(exp.fold_dir(0)), size_guidance={"scalars": 0, "images": 0}).Reload()
    tags = events.Tags()
    log = pd.read_csv(exp.log_csv(0))
    for column in ("train_loss", "val_bce", "score_05", "score_best", "lr", "seconds"):
        values = [event.value for event in events.Scalars(f"epoch/{column}")]
        assert np.allclose(values, log[column], rtol=1e-4), column
    train_set = load_train(InputLayout(demo_input))
    steps = len(fold_data(train_set, read_folds(work, train_set.ids)["fold"].to_numpy(), 0, False).fit.images) // 8
    assert len(events.Scalars("step/lr")) == 2 * steps
    assert {"curves", "validation overlays (threshold 0.5)"} <= set(tags["images"])


def test_tensorboard_missing_is_one_note(demo_input, work, monkeypatch, capsys):
    import builtins
    real_import = builtins.__import__

    def no_tensorboard(name, *args, **kwargs):
        if name.startswith("torch.utils.tensorboard"):
            raise ImportError("TensorBoard logging requires TensorBoard version 1.15 or above")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_tensorboard)
    run(demo_input, work, ["train.epochs=1", "train.tensorboard=true"])
    out = capsys.readouterr().out
    assert out.count("note: train.tensorboard needs the tensorboard package") == 1
    assert not list(experiment(work, ["train.epochs=1"]).fold_dir(0).glob("events.out.tfevents*"))


def test_a_resumed_run_is_bit_identical_to_an_uninterrupted_one(demo_input, work, tmp_path, monkeypatch):
    """Stopped after epoch 1 (only its files survive: a new Trainer resumes from last.pt), the run ends with
    the log and the weights of a run that never stopped: the training state is the whole state."""
    extra = ["train.epochs=3", "train.deterministic=true", "train.ema=0.5"]
    try:
        interrupted_run(demo_input, work, monkeypatch, extra)
        run(demo_input, work, extra, resume=True)
        again = WorkLayout(tmp_path / "again", n_folds=3)
        folds.main(["--input", str(demo_input), "--workdir", str(again.root), "--n-folds", "3"])
        run(demo_input, again, extra)
    finally:
        torch.use_deterministic_algorithms(False)
    resumed, straight = experiment(work, extra), experiment(again, extra)
    drop_seconds = lambda text: [line.rsplit(",", 1)[0] for line in text.splitlines()]  # noqa: E731
    assert drop_seconds(resumed.log_csv(0).read_text()) == drop_seconds(straight.log_csv(0).read_text())
    for checkpoint in ("best_checkpoint", "last_checkpoint"):
        a, b = (load_checkpoint(getattr(exp, checkpoint)(0)) for exp in (resumed, straight))
        assert all(torch.equal(a["model"][key], b["model"][key]) for key in a["model"])


def test_swa_averages_the_last_epochs_and_is_best_pt_only_when_it_validates_better(demo_input, work, capsys):
    extra = ["train.epochs=3", "train.swa_epochs=2"]
    score = run(demo_input, work, extra)
    exp = experiment(work, extra)
    log = pd.read_csv(exp.log_csv(0))
    swa = log["swa_score"].iloc[-1]
    assert log["swa_score"].iloc[:-1].isna().all() and 0 <= swa <= 1
    assert score == pytest.approx(max(swa, log["score_best"].max()))  # the saver keeps the better of the two
    said = capsys.readouterr().out
    assert f"fold 0: SWA of the last 2 epochs: mAP {swa:.4f}" in said
    assert load_checkpoint(exp.best_checkpoint(0))["score"] == pytest.approx(score)


def test_swa_resumes_with_its_average(demo_input, work, monkeypatch):
    extra = ["train.epochs=3", "train.swa_epochs=2"]
    with monkeypatch.context() as patch:
        interrupt_after(patch, 2)  # the first averaged epoch is done and saved
        with pytest.raises(KeyboardInterrupt):
            run(demo_input, work, extra)
    saved = load_checkpoint(experiment(work, extra).last_checkpoint(0))["swa"]
    assert int(saved["n_averaged"]) == 1
    run(demo_input, work, extra, resume=True)
    assert not pd.isna(pd.read_csv(experiment(work, extra).log_csv(0))["swa_score"].iloc[-1])


@pytest.mark.parametrize("overrides, words", [(["train.epochs=3", "train.swa_epochs=3"], "swa_epochs \\(3\\) must be below"),
                                              (["train.swa_epochs=1", "train.ema=0.9"], "use one of them")])
def test_swa_settings_that_cannot_work_are_refused(overrides, words):
    with pytest.raises(PipelineError, match=words):
        tiny(overrides)
