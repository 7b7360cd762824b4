"""BatchNorm folding (a measured inference option, `pipeline.bench`): the same function, or no change."""
import pytest
import torch
from torch import nn

from pipeline.lib.config import load_config
from pipeline.lib.fusion import close, folded
from pipeline.lib.models import ARCHS, build_model
from pipeline.lib.paths import CONFIG_DIR


def trained_statistics(model: nn.Module) -> nn.Module:
    """BatchNorm layers with statistics far from their initial 0/1, as after training."""
    generator = torch.Generator().manual_seed(0)
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.copy_(torch.randn(module.num_features, generator=generator))
            module.running_var.copy_(torch.rand(module.num_features, generator=generator) + 0.5)
            module.weight.data.copy_(torch.randn(module.num_features, generator=generator))
    return model.eval()


def batchnorms(model):
    return sum(isinstance(module, nn.BatchNorm2d) for module in model.modules())


@pytest.mark.parametrize("arch", sorted(ARCHS))
def test_folding_keeps_every_architectures_output(arch):
    torch.manual_seed(0)  # random weights and probe: the same every run (the suite's earlier tests move the RNG)
    config = load_config(CONFIG_DIR / "demo.yaml", [f"model.arch={arch}", "model.empty_head=true"])
    model = trained_statistics(build_model(config.model, 1, pretrained=False))
    x = torch.randn(2, 1, 128, 128)
    fast = folded(model, x)
    assert fast is not model and batchnorms(fast) < batchnorms(model) and batchnorms(model) > 0
    with torch.no_grad():
        for want, got in zip(model(x), fast(x)):
            assert close(want, got)


class Misordered(nn.Module):
    """Registers a conv and then a BatchNorm that is applied to another conv's output."""

    def __init__(self):
        super().__init__()
        self.first, self.norm, self.second = nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.Conv2d(1, 4, 3, padding=1)

    def forward(self, x):
        return self.first(x) + self.norm(self.second(x)), None


def test_a_network_registered_out_of_order_is_left_as_it_is():
    model = trained_statistics(Misordered())
    assert folded(model, torch.randn(2, 1, 16, 16)) is model
