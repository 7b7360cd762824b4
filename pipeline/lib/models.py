"""Models by name: any smp architecture and encoder, wrapped to return (mask logits, head logit)."""
from __future__ import annotations

import warnings

import segmentation_models_pytorch as smp
import torch
from torch import nn
from torch.nn import functional as F
from torch.nn.utils.fusion import fuse_conv_bn_weights

from . import names
from .errors import PipelineError
from .names import TAKES_DECODER_CHANNELS, implemented
from .start_weights import StartWeights, resolve

ARCHS = {name: getattr(smp, name) for name in names.ARCHS}  # smp's classes, by their names

class EncoderNames:
    """smp's own encoders, and `tu-<model>` for any timm model (smp's timm-universal encoder)."""

    def __init__(self):
        self.own = smp.encoders.get_encoder_names()

    def __contains__(self, name) -> bool:
        if name in self.own:
            return True
        import timm
        return isinstance(name, str) and name.startswith("tu-") and name[3:] in timm.list_models()

    def __iter__(self):
        return iter([*self.own, "tu-<a timm model> (e.g. tu-tf_efficientnet_lite0)"])


ENCODERS = EncoderNames()
ATTENTION = implemented(names.ATTENTION, {"none": None, "scse": "scse"})  # as smp names decoder attention
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


def build_model(model, in_channels: int, pretrained: bool = True, encoder_bn: str = "train") -> SaltNet:
    """The network a `model` config section describes (names already checked by the config).
    `pretrained=False` skips the encoder's start weights: for a model whose weights come from a checkpoint.
    `encoder_bn` (`train.encoder_bn`): `fused` folds the encoder's BatchNorm layers into its convolutions."""
    kwargs = dict(encoder_name=model.encoder, classes=1, encoder_weights=None, in_channels=3)
    if model.arch in TAKES_DECODER_CHANNELS:
        kwargs["decoder_channels"] = list(model.decoder_channels)
    if ATTENTION[model.attention]:
        kwargs["decoder_attention_type"] = ATTENTION[model.attention]
    if model.empty_head:
        kwargs["aux_params"] = {"classes": 1, "dropout": 0.2}
    net = smp_net(model.arch, kwargs)
    weights = model.encoder_weights if pretrained else "none"
    start = resolve(model.encoder, weights, net.encoder.state_dict())
    if start:
        load_encoder_weights(net, model.encoder, start)
        print(f"start weights: {start.source}", flush=True)
    set_in_channels(net.encoder, in_channels, pretrained=start is not None)
    if encoder_bn == "fused":
        fuse_encoder_batch_norm(net.encoder, in_channels)
    return SaltNet(net, model.hypercolumn, start.source if start else RANDOM_START)


def hold_encoder_batch_norm(model: SaltNet, how: str) -> None:
    """`train.encoder_bn` after `model.train()`: `affine` keeps the encoder's BatchNorm statistics at their
    start (ImageNet) values, its layers running as in evaluation, so no batch statistics are computed or
    back-propagated through; their scale and shift still train. `frozen` fixes the scale and shift too, as it
    does for any layer `fused` could not fold (one that follows no convolution)."""
    if how == "train":
        return
    for module in model.net.encoder.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.eval()
            module.requires_grad_(how == "affine")


def fuse_encoder_batch_norm(encoder: nn.Module, in_channels: int) -> None:
    """Each BatchNorm that follows a convolution, folded into it at its current statistics, scale and shift
    (torch's fuse_conv_bn_weights): the convolution gains a bias, the layer becomes its activation (timm's
    BatchNormAct2d) or nothing. Measured on the CPU recipe (docs/results.md): 1.00-1.16x the step, 0.016 lower
    fold-0 mAP, so not adopted there.
    The pairs are found by order of registration, so the encoder's output is checked to be unchanged."""
    # its own generator: the probe leaves the seeded stream training draws from untouched
    probe = torch.randn(2, in_channels, 64, 64, generator=torch.Generator().manual_seed(0))
    before = evaluated(encoder, probe)
    for parent in list(encoder.modules()):
        previous = None
        for name, child in list(parent.named_children()):
            if (isinstance(child, nn.modules.batchnorm._BatchNorm) and isinstance(previous, nn.Conv2d)
                    and previous.out_channels == child.num_features):
                setattr(parent, name, fold_into(previous, child))
            previous = child
    after = evaluated(encoder, probe)
    if any(not torch.allclose(a, b, rtol=1e-3, atol=1e-3) for a, b in zip(before, after)):
        raise PipelineError("train.encoder_bn fused: this encoder's BatchNorm layers do not follow their "
                            "convolutions in order, so they cannot be folded; use train.encoder_bn=affine")


def fold_into(conv: nn.Conv2d, norm: nn.Module) -> nn.Module:
    """`norm` folded into `conv`'s weight and bias; returns what stays of `norm`: its dropout and activation."""
    conv.weight, conv.bias = fuse_conv_bn_weights(conv.weight, conv.bias, norm.running_mean, norm.running_var,
                                                  norm.eps, norm.weight, norm.bias)
    conv.bias.requires_grad_(conv.weight.requires_grad)  # torch makes a new bias without grad
    return nn.Sequential(*[m for m in (getattr(norm, "drop", None), getattr(norm, "act", None)) if m is not None])


def evaluated(encoder: nn.Module, x: torch.Tensor) -> list[torch.Tensor]:
    """The encoder's features for `x` in evaluation mode; its own mode is kept."""
    mode = encoder.training
    with torch.no_grad():
        out = [feature.clone() for feature in encoder.eval()(x)]
    encoder.train(mode)
    return out


def smp_net(arch: str, kwargs: dict) -> nn.Module:
    """smp's network; its deprecation of an encoder name (smp 0.6: the `timm-` ports) becomes one note naming
    the replacement, printed where a model is built (folds trained on the old name still load)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", DeprecationWarning)
        net = ARCHS[arch](**kwargs)
    for warning in caught:
        if issubclass(warning.category, DeprecationWarning) and kwargs["encoder_name"].startswith("timm-"):
            print(f"note: smp deprecates encoder {kwargs['encoder_name']} and will remove it; new experiments should use "
                  f"{kwargs['encoder_name'].replace('timm-', 'tu-', 1)} (cpu.yaml does)", flush=True)
        else:
            warnings.warn_explicit(warning.message, warning.category, warning.filename, warning.lineno)
    return net


def set_in_channels(encoder: nn.Module, in_channels: int, pretrained: bool) -> None:
    """The encoder's first convolution fitted to `in_channels` (pretrained: its RGB filters folded together).
    smp's timm-universal encoder has no set_in_channels of its own; smp's helper patches it the same way."""
    if hasattr(encoder, "set_in_channels"):
        encoder.set_in_channels(in_channels, pretrained=pretrained)
    elif in_channels != 3:
        from segmentation_models_pytorch.encoders._utils import patch_first_conv
        patch_first_conv(encoder, in_channels, pretrained=pretrained)
        if list(encoder.out_channels)[0] == 3:  # the identity level smp's decoders read is the input itself
            encoder._out_channels = [in_channels, *list(encoder.out_channels)[1:]]


def load_encoder_weights(net: nn.Module, encoder: str, start: StartWeights) -> None:
    """Load what fits by name and shape (a torchvision file has an extra fc); too little is an error."""
    own = net.encoder.state_dict()
    fitting = {k: v for k, v in start.state.items() if k in own and tuple(v.shape) == tuple(own[k].shape)}
    if len(fitting) < len(own) // 2:
        raise PipelineError(f"start weights ({start.source}) do not fit encoder {encoder} "
                            f"(only {len(fitting)} of {len(own)} tensors match); use weights saved from that encoder")
    net.encoder.load_state_dict(fitting, strict=False)
