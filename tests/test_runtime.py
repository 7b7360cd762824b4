"""Registries of the runtime (optimisers, mixed precision), subnormal floats, and random state across machines."""
import subprocess
import sys

import pytest
import torch

from pipeline.lib import distributed, names, runtime
from pipeline.lib.config import TrainConfig
from pipeline.lib.paths import REPO


@pytest.mark.parametrize("name", list(runtime.OPTIMIZERS))
def test_every_optimizer_builds_and_steps(name):
    model = torch.nn.Linear(3, 1)
    optimizer = runtime.make_optimizer(TrainConfig(optimizer=name, lr=0.1), model)
    before = model.weight.detach().clone()
    model(torch.ones(4, 3)).sum().backward()
    optimizer.step()
    assert optimizer.param_groups[0]["lr"] == 0.1 and not torch.equal(before, model.weight)


@pytest.mark.parametrize("amp", list(names.AMP))
def test_cpus_always_train_in_float32(amp):
    precision = runtime.Precision.training(amp, torch.device("cpu"))
    with precision.autocast():
        out = torch.nn.Linear(4, 4)(torch.ones(2, 4))
    assert out.dtype == torch.float32 and precision.name == "none" and not precision.scaled


@pytest.mark.parametrize("cpu_precision, amx, expected", [
    ("auto", True, "bf16"), ("auto", False, "none"), ("bf16", False, "bf16"), ("float32", True, "none")])
def test_cpu_prediction_runs_bf16_where_amx_makes_it_faster(monkeypatch, cpu_precision, amx, expected):
    monkeypatch.setattr(runtime, "has_amx", lambda: amx)
    cpu = torch.device("cpu")
    precision = runtime.Precision.inference("auto", cpu_precision, cpu)
    assert precision.name == expected
    with precision.autocast():
        out = torch.nn.Linear(4, 4)(torch.ones(2, 4))
    assert out.dtype == (torch.bfloat16 if expected == "bf16" else torch.float32)


def test_gpu_prediction_follows_train_amp_whatever_the_cpu_setting(monkeypatch):
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (7, 5))
    for cpu_precision in names.CPU_PRECISIONS:
        assert runtime.Precision.inference("auto", cpu_precision, torch.device("cuda")).name == "fp16"
        assert runtime.Precision.inference("none", cpu_precision, torch.device("cuda")).name == "none"


@pytest.mark.parametrize("probe", [None, lambda: True, lambda: False])
def test_amx_probe_is_a_plain_answer_even_without_torchs_private_probe(monkeypatch, probe):
    if probe is None:
        monkeypatch.delattr(torch.cpu, "_is_amx_tile_supported", raising=False)
    else:
        monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", probe, raising=False)
    assert runtime.has_amx() is (probe is not None and probe())


def test_listing_the_gpus_changes_no_setting(monkeypatch, gpu_machine):
    """`status` lists the devices to record the precision predict would use; that alone must not switch
    cuDNN's kernel timing on (predict and training do, when they run on GPUs)."""
    gpu_machine(["Tesla T4", "Tesla T4"])
    monkeypatch.setattr(torch.backends.cudnn, "benchmark", False)
    assert distributed.local_devices() == [torch.device("cuda", 0), torch.device("cuda", 1)]
    assert torch.backends.cudnn.benchmark is False
    distributed.tune_kernels()
    assert torch.backends.cudnn.benchmark is True


@pytest.mark.parametrize("saved_gpus, gpus_now", [(2, 1), (1, 2), (2, 0)])
def test_gpu_random_state_resumes_on_another_gpu_count(monkeypatch, saved_gpus, gpus_now):
    restored = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: gpus_now > 0)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: gpus_now)
    monkeypatch.setattr(torch.cuda, "set_rng_state", lambda state, index: restored.append(index))
    runtime.restore_cuda_rng([torch.zeros(8, dtype=torch.uint8)] * saved_gpus)
    assert restored == list(range(min(saved_gpus, gpus_now)))


@pytest.mark.parametrize("capability, expected", [((6, 0), "fp16"), ((7, 5), "fp16"), ((8, 0), "bf16"), ((9, 0), "bf16")])
def test_auto_precision_follows_the_gpus_compute_capability(monkeypatch, capability, expected):
    """P100 (6.0) and T4 (7.5) get fp16 with a grad scaler, Ampere and newer bf16; a CPU none."""
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)
    cuda, cpu = torch.device("cuda"), torch.device("cpu")
    assert runtime.Precision.training("auto", cuda).name == expected
    assert runtime.Precision.training("auto", cuda).scaled is (expected == "fp16")  # fp16 scales the loss
    assert runtime.Precision.training("fp16", cuda).name == "fp16"  # an explicit choice stands
    assert runtime.Precision.training("auto", cpu).name == runtime.Precision.training("bf16", cpu).name == "none"


FLUSH_CHECK = """
import torch
from pipeline import train  # everything a stage imports, before the stage runs
from pipeline.lib.cli import run_stage
torch.set_num_threads(2)
def main(argv):
    tiny = torch.full((1 << 22,), 1e-39)  # subnormal; large enough to be split over the threads
    print(int((tiny * 1.0 != 0).sum()))
{run}
"""


@pytest.mark.slow
@pytest.mark.skipif(not torch.set_flush_denormal(False), reason="this CPU cannot flush subnormals")
@pytest.mark.parametrize("run, flushed", [("run_stage(main)", True), ("main(None)", False)])
def test_stages_count_subnormals_as_zero_on_every_thread(run, flushed):
    """Subnormal arithmetic is many times slower on x86; every thread of a stage must flush them."""
    out = subprocess.run([sys.executable, "-c", FLUSH_CHECK.format(run=run)], capture_output=True, text=True,
                         cwd=REPO, check=True).stdout
    assert (int(out.split()[-1]) == 0) is flushed
