"""Models by name: any smp architecture and encoder, wrapped to return (mask logits, head logit)."""
from __future__ import annotations

import segmentation_models_pytorch as smp
import torch
from torch import nn
from torch.nn import functional as F

from .errors import PipelineError
from .start_weights import StartWeights, resolve

ARCHS = {"Unet": smp.Unet, "UnetPlusPlus": smp.UnetPlusPlus, "FPN": smp.FPN, "Linknet": smp.Linknet,
         "MAnet": smp.MAnet, "PAN": smp.PAN, "DeepLabV3Plus": smp.DeepLabV3Plus}
ENCODERS = smp.encoders.get_encoder_names()
ATTENTION = {"none": None, "scse": "scse"}  # decoder attention
# which architectures take which options (checked by the config before anything is built)
TAKES_DECODER_CHANNELS = ("Unet", "UnetPlusPlus", "MAnet")
TAKES_ATTENTION = ("Unet", "UnetPlusPlus")
TAKES_HYPERCOLUMN = ("Unet",)  # its decoder blocks run in order, so their outputs are the levels
MIN_SCSE_CHANNELS = 16  # scSE squeezes channels by 16
RANDOM_START = "none (random)"  # the start_source of an encoder without start weights


class SaltNet(nn.Module):
    """An smp model; optionally its mask comes from a hypercolumn of all decoder levels. `start_source` says
    where its encoder's start weights came from (training records it)."""

    def __init__(self, net: nn.Module, hypercolumn: bool, start_source: str = RANDOM_START):
        super().__init__()
        self.net = net
        self.hypercolumn = hypercolumn
        self.start_source = start_source
        if hypercolumn:
            channels = [block.conv2[0].out_channels for block in net.decoder.blocks]
            self.fuse = nn.Sequential(nn.Conv2d(sum(channels), 64, 3, padding=1), nn.ReLU(inplace=True),
                                      nn.Conv2d(64, 1, 1))
            self._levels: list[torch.Tensor] = []
            for block in net.decoder.blocks:
                block.register_forward_hook(self._keep)  # a bound method: a deep copy hooks into the copy

    def _keep(self, _module, _inputs, out: torch.Tensor) -> None:
        self._levels.append(out)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        self._levels = []
        out = self.net(x)
        masks, head = out if isinstance(out, tuple) else (out, None)
        if self.hypercolumn:
            size = x.shape[-2:]
            stack = [F.interpolate(level, size=size, mode="bilinear", align_corners=False) for level in self._levels]
            masks = self.fuse(torch.cat(stack, dim=1))
            self._levels = []
        return masks, head


def build_model(model, in_channels: int, pretrained: bool = True) -> SaltNet:
    """The network a `model` config section describes (names already checked by the config).
    `pretrained=False` skips the encoder's start weights: for a model whose weights come from a checkpoint."""
    kwargs = dict(encoder_name=model.encoder, classes=1, encoder_weights=None, in_channels=3)
    if model.arch in TAKES_DECODER_CHANNELS:
        kwargs["decoder_channels"] = list(model.decoder_channels)
    if ATTENTION[model.attention]:
        kwargs["decoder_attention_type"] = ATTENTION[model.attention]
    if model.empty_head:
        kwargs["aux_params"] = {"classes": 1, "dropout": 0.2}
    net = ARCHS[model.arch](**kwargs)
    weights = model.encoder_weights if pretrained else "none"
    start = resolve(model.encoder, weights, net.encoder.state_dict())
    if start:
        load_encoder_weights(net, model.encoder, start)
        print(f"start weights: {start.source}", flush=True)
    net.encoder.set_in_channels(in_channels, pretrained=start is not None)
    return SaltNet(net, model.hypercolumn, start.source if start else RANDOM_START)


def load_encoder_weights(net: nn.Module, encoder: str, start: StartWeights) -> None:
    """Load what fits by name and shape (a torchvision file has an extra fc); too little is an error."""
    own = net.encoder.state_dict()
    fitting = {k: v for k, v in start.state.items() if k in own and tuple(v.shape) == tuple(own[k].shape)}
    if len(fitting) < len(own) // 2:
        raise PipelineError(f"start weights ({start.source}) do not fit encoder {encoder} "
                            f"(only {len(fitting)} of {len(own)} tensors match); use weights saved from that encoder")
    net.encoder.load_state_dict(fitting, strict=False)
