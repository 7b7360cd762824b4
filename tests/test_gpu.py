"""A GPU the installed torch cannot run is one line before any CUDA work (lib/gpu.py), by mocked devices."""
import pytest
import torch

from pipeline.lib import gpu
from pipeline.lib.distributed import Rank, local_devices
from pipeline.lib.errors import PipelineError


@pytest.mark.parametrize("name, runs", [("Tesla P100-PCIE-16GB", False), ("Tesla T4", True),
                                        ("NVIDIA H100 80GB HBM3", True)])
def test_each_gpu_against_a_cu128_torch(gpu_machine, name, runs):
    gpu_machine([name, name])
    if runs:
        assert gpu.check_gpus() == 2
        return
    with pytest.raises(PipelineError) as refused:
        gpu.check_gpus()
    words = str(refused.value)
    assert "\n" not in words
    for part in ("GPU 0 (Tesla P100-PCIE-16GB, sm_60)", "sm_75, sm_80", "GPU T4 x2 (NvidiaTeslaT4",
                 "CUDA_VISIBLE_DEVICES="):
        assert part in words


@pytest.mark.parametrize("capability, archs, runs", [
    ((6, 0), ["sm_50", "compute_50"], True),     # PTX of an older capability: compiled by the driver
    ((8, 9), ["sm_80"], True),                   # same major, newer minor: binary compatible
    ((8, 0), ["sm_86"], False),                  # a newer minor's code does not run on an older one
    ((10, 0), ["sm_90"], False),                 # another major needs PTX
    ((10, 0), ["sm_90", "compute_90"], True),
    ((9, 0), ["sm_90a"], True), ((10, 0), ["sm_90a"], False),  # arch-specific: that capability alone
])
def test_binary_and_ptx_compatibility(capability, archs, runs):
    assert gpu.runs_on(capability, archs) is runs


def test_every_way_to_a_gpu_asks_first(gpu_machine):
    gpu_machine(["Tesla T4", "Tesla P100-PCIE-16GB"])  # the second GPU is the one torch cannot run
    for ask in (local_devices, Rank(local=0, local_world=2).device):
        with pytest.raises(PipelineError, match="GPU 1 "):
            ask()


def test_a_machine_without_cuda_has_no_gpus(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert gpu.check_gpus() == 0 and local_devices() == [torch.device("cpu")]


def test_the_gpu_check_refuses_a_gpu_torch_cannot_run_and_names_one_it_can(gpu_machine, monkeypatch):
    from pipeline.lib.gpu_check import device_facts
    gpu_machine(["Tesla P100-PCIE-16GB"])
    with pytest.raises(PipelineError, match="sm_60"):
        device_facts(torch.device("cuda", 0))
    gpu_machine(["Tesla T4"])
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda device: type("P", (), {"total_memory": 15 * 2**30}))
    facts = device_facts(torch.device("cuda", 0))
    assert (facts["name"], facts["capability"], facts["bf16"], facts["memory_gb"]) == ("Tesla T4", "7.5", False, 15.0)
