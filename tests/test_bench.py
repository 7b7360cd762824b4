"""The benchmark's comparison of CPU prediction precisions on an experiment's trained folds."""
import copy
import json

import pytest

from pipeline.lib.errors import PipelineError
from pipeline.lib.paths import CONFIG_DIR, InputLayout


@pytest.mark.slow
def test_precisions_are_compared_on_the_trained_folds(demo_input, tmp_path):
    from pipeline import bench, folds, train
    folds.main(["--input", str(demo_input), "--workdir", str(tmp_path), "--n-folds", "2"])
    tiny = tmp_path / "tiny.yaml"
    tiny.write_text(f"base: {CONFIG_DIR / 'demo.yaml'}\ndata:\n  n_folds: 2\n"
                    "model:\n  decoder_channels: [16, 16, 8, 8, 8]\n  empty_head: true\n"
                    "train:\n  epochs: 1\n  batch_size: 8\n")
    where = ["--input", str(demo_input), "--workdir", str(tmp_path)]
    out = tmp_path / "bench.json"
    train.main(["--config", str(tiny), "--fold", "0", *where])
    with pytest.raises(PipelineError, match="fold 1 of 'tiny' is not trained"):
        bench.main(["--trained", str(tiny), "--out", str(out), *where])
    train.main(["--config", str(tiny), "--fold", "1", *where])
    bench.main(["--trained", str(tiny), "--out", str(out), *where])
    result = json.loads(out.read_text())
    assert result["experiment"] == "tiny"
    for precision in ("float32", "bf16"):
        assert result[precision]["views_per_s"] > 0 and 0 <= result[precision]["cv_tuned_mAP"] <= 1


def tiny_config(tmp_path, extra: str = ""):
    tiny = tmp_path / "tiny.yaml"
    tiny.write_text(f"base: {CONFIG_DIR / 'demo.yaml'}\nmodel:\n  decoder_channels: [16, 16, 8, 8, 8]\n"
                    "  empty_head: true\n  encoder_weights: imagenet\n"
                    "train:\n  epochs: 3\n  switch_epoch: 2\n  batch_size: 8\n  deep_supervision: true\n" + extra)
    return tiny


@pytest.mark.slow
def test_the_training_step_benchmark_times_and_profiles_each_phase(demo_input, tmp_path, capsys):
    """`bench --train-step`: the real Trainer step of each loss phase, images/s and where the time goes."""
    from pipeline import bench
    out = tmp_path / "step.json"
    bench.main(["--train-step", str(tiny_config(tmp_path)), "--input", str(demo_input), "--steps", "1",
                "--levers", "encoder BatchNorm frozen", "--out", str(out)])
    result = json.loads(out.read_text())
    assert result["matmul_2048_fp32_gflops"] > 0 and sorted(result["options"]) == ["as configured",
                                                                                 "encoder BatchNorm frozen"]
    for option in result["options"].values():
        assert set(option) == {"overrides", "first loss", "after switch"}
        for phase in ("first loss", "after switch"):
            assert option[phase]["images_per_s"] > 0
            assert 99 <= sum(option[phase]["profile_percent"].values()) <= 101
            assert option[phase]["profile_percent"]["convolution backward"] > 0
    table = capsys.readouterr().out
    assert "| as configured | after switch |" in table and "convolution backward" in table
    with pytest.raises(PipelineError, match="no lever 'fast'; valid: "):
        bench.main(["--train-step", str(tiny_config(tmp_path)), "--levers", "fast"])


@pytest.mark.parametrize("how", ["affine", "frozen"])
def test_the_encoders_batch_norm_keeps_its_statistics_when_asked(demo_input, tmp_path, how):
    import torch
    from pipeline.lib.config import load_config
    from pipeline.lib.data import load_train
    from pipeline.lib.fold_data import Images
    from pipeline.lib.step_bench import Step, bench_trainer
    config = load_config(tiny_config(tmp_path), [f"train.encoder_bn={how}"], encoder=False)
    train = load_train(InputLayout(demo_input))
    trainer = bench_trainer(config, Images.of(train), torch.device("cpu"))
    norms = [m for m in trainer.nets.model.net.encoder.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    before = [(m.running_mean.clone(), m.weight.detach().clone()) for m in norms]
    Step(trainer, 0)()
    assert all(not m.training for m in norms) and trainer.nets.model.net.decoder.training
    assert all(torch.equal(m.running_mean, mean) for m, (mean, _) in zip(norms, before))
    assert all(torch.equal(m.weight, weight) is (how == "frozen") for m, (_, weight) in zip(norms, before))


def test_fusing_the_encoders_batch_norm_keeps_its_output_and_trains_the_convolutions(demo_input, tmp_path):
    """`train.encoder_bn=fused`: every encoder BatchNorm folded into the convolution before it; the same
    network in evaluation, none left to run in training, and a checkpoint of it loads into a rebuilt one."""
    import torch
    from pipeline.lib.config import load_config
    from pipeline.lib.data import load_train
    from pipeline.lib.fold_data import Images
    from pipeline.lib.models import build_model, fuse_encoder_batch_norm
    from pipeline.lib.step_bench import Step, bench_trainer
    config = load_config(tiny_config(tmp_path), ["train.encoder_bn=fused"], encoder=False)
    plain = build_model(config.model, config.in_channels, pretrained=False).eval()
    for norm in (m for m in plain.net.encoder.modules() if isinstance(m, torch.nn.BatchNorm2d)):
        norm.running_mean.uniform_(-1, 1), norm.running_var.uniform_(0.5, 2), norm.bias.data.uniform_(-1, 1)
    fused = copy.deepcopy(plain)
    fuse_encoder_batch_norm(fused.net.encoder, config.in_channels)
    x = torch.randn(2, config.in_channels, 64, 64)
    with torch.no_grad():
        assert torch.allclose(plain(x)[0], fused(x)[0], atol=1e-4)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in fused.net.encoder.modules())
    rebuilt = build_model(config.model, config.in_channels, pretrained=False, encoder_bn="fused")
    rebuilt.load_state_dict(fused.state_dict())  # strict: the same parameters, the convolutions' biases too
    train = load_train(InputLayout(demo_input))
    trainer = bench_trainer(config, Images.of(train), torch.device("cpu"))
    biases = [m.bias for m in trainer.nets.model.net.encoder.modules() if isinstance(m, torch.nn.Conv2d)]
    before = [b.detach().clone() for b in biases]
    Step(trainer, 0)()
    assert all(b is not None for b in biases) and not all(torch.equal(b, b0) for b, b0 in zip(biases, before))


def test_fusing_refuses_batch_norm_it_cannot_pair_with_its_convolution():
    from torch import nn
    from pipeline.lib.models import fuse_encoder_batch_norm

    class Crossed(nn.Module):  # its BatchNorm is registered after conv_b but normalises conv_a's output
        def __init__(self):
            super().__init__()
            self.conv_a, self.conv_b, self.bn = nn.Conv2d(1, 4, 3), nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4)
            self.bn.running_mean.fill_(0.5)

        def forward(self, x):
            return [self.bn(self.conv_a(x)), self.conv_b(x)]

    with pytest.raises(PipelineError, match="train.encoder_bn fused: .* use train.encoder_bn=affine"):
        fuse_encoder_batch_norm(Crossed(), 1)


def test_encoder_batch_norm_statistics_need_a_pretrained_encoder(tmp_path):
    from pipeline.lib.config import load_config
    with pytest.raises(PipelineError, match="train.encoder_bn affine keeps the encoder's BatchNorm statistics"):
        load_config(tiny_config(tmp_path), ["train.encoder_bn=affine", "model.encoder_weights=none"], encoder=False)


def test_compiling_the_step_is_how_a_run_executes_not_what_it_learns(tmp_path):
    from pipeline.lib.config import load_config
    assert load_config(tiny_config(tmp_path), ["train.compile=true"], encoder=False).name == "tiny"
    assert load_config(tiny_config(tmp_path), ["train.encoder_bn=frozen"], encoder=False).name.startswith("tiny-")


def test_progressive_resizing_trains_the_early_epochs_on_the_small_canvas(tmp_path):
    """train.early_input_mode for the first train.early_epochs; later epochs, validation and prediction on
    the data's canvas."""
    import numpy as np
    import torch
    from pipeline.lib.batches import training_batches
    from pipeline.lib.config import load_config
    from pipeline.lib.distributed import ALONE
    from pipeline.lib.fold_data import Images
    config = load_config(tiny_config(tmp_path), ["train.early_input_mode=resize96", "train.early_epochs=2"],
                         encoder=False)
    rng = np.random.default_rng(0)
    fit = Images(np.arange(16).astype(str), rng.integers(0, 255, (16, 101, 101), dtype=np.uint8),
                 np.zeros(16, np.float32), rng.random((16, 101, 101)) > 0.5)
    for gpu_augment in (False, True):
        run_as = config.model_copy(update={"train": config.train.model_copy(update={"gpu_augment": gpu_augment})})
        batches = training_batches(run_as, fit, torch.device("cpu"), ALONE, 0)
        sides = []
        for epoch in range(3):
            batches.set_epoch(epoch)
            sides.append((batches.input_mode, next(iter(batches))[0].shape[-1]))
        assert sides == [("resize96", 96), ("resize96", 96), ("pad128", 128)]


@pytest.mark.parametrize("overrides, message", [
    (["train.early_epochs=2"], "early_input_mode and early_epochs go together"),
    (["train.early_input_mode=resize96"], "early_input_mode and early_epochs go together"),
    (["train.early_input_mode=resize96", "train.early_epochs=3"], r"early_epochs \(3\) below epochs \(3\)"),
])
def test_progressive_resizing_is_checked_whole(tmp_path, overrides, message):
    from pipeline.lib.config import load_config
    with pytest.raises(PipelineError, match=message):
        load_config(tiny_config(tmp_path), overrides, encoder=False)


@pytest.mark.slow
def test_the_gpu_check_runs_its_parts_within_the_budget_on_a_cpu(demo_input, tmp_path, capsys):
    """`bench --gpu-check` with tiny settings on generated data: the device, the training step, fold 0 per epoch."""
    from pipeline import bench
    out = tmp_path / "gpu_check.json"
    bench.main(["--gpu-check", "--device", "cpu", "--minutes", "0.5", "--steps", "1", "--input", str(demo_input),
                "--out", str(out), "--", "model.decoder_channels=[16,16,16,16,16]", "train.batch_size=8"])
    report = json.loads(out.read_text())
    assert report["device"]["device"] == "cpu" and report["matmul_2048_fp32_gflops"] > 0
    assert report["train_step"]["none"]["images_per_s"] > 0
    fold0 = report["fold0"]
    assert fold0["epochs"] and all(0 <= row["score_best"] <= 1 for row in fold0["epochs"])
    assert 2 <= fold0["epochs_planned"] and report["seconds"] < 0.5 * 60 + 20
    assert "fold 0 epoch 1/" in capsys.readouterr().out


@pytest.mark.parametrize("epochs", [2, 3, 7, 30, 80, 200])
def test_the_gpu_check_shrinks_the_schedule_to_a_valid_one(epochs):
    from pipeline.lib.config import load_config
    from pipeline.lib.gpu_check import fitted
    config = load_config("default.yaml", fitted("default.yaml", [], epochs))
    assert config.train.epochs == min(epochs, 80) and config.model.encoder_weights == "none"


def test_the_gpu_check_times_the_precisions_the_gpu_has():
    from pipeline.lib.gpu_check import precisions
    assert precisions({"device": "cuda", "bf16": True}) == ["fp16", "bf16"]  # an H100
    assert precisions({"device": "cuda", "bf16": False}) == ["fp16"]  # a T4
    assert precisions({"device": "cpu"}) == ["none"]
