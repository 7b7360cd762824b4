"""Every registry's names, readable without the libraries behind them.

The config checks names against these, so reading a config, `status` and a config error load neither
torch, smp nor albumentations. The module that implements a registry builds its table on the same names
(`implemented` refuses a table that differs), so this one list says what exists. Encoders are the one
registry we do not own: smp's and timm's names, checked against the installed libraries
(`models.encoder_error`) by the stages that build models.
"""
from __future__ import annotations

# reflect-pad 101->128 | resize to 202, pad to 256 | resize to 96, no padding (geometry.MODES)
INPUT_MODES = ("pad128", "resize256", "resize96")
TTA = ("none", "hflip")  # geometry.TTA
CHANNELS = ("gray", "depth", "coord")  # input planes: gray, plus optionally depth and/or the row coordinate
GPU_AUGMENTATIONS = ("hflip", "affine", "brightness_contrast")  # what train.gpu_augment does on the device
LOSSES = ("bce", "dice", "lovasz", "lovasz_symmetric", "focal", "lovasz_elu", "lovasz_symmetric_elu")  # losses.LOSSES
ENCODER_BN = ("train", "affine", "frozen", "fused")  # the encoder's BatchNorm: trained | statistics fixed | all fixed
# | folded into the convolution before it (whose weight and bias train)
NEIGHBOUR_RULES = ("between", "carry_down", "carry_up", "empty_below_full", "fill_holes")  # applied in this order
OPTIMIZERS = ("adam", "adamw", "sgd")  # runtime.OPTIMIZERS
AMP = ("auto", "bf16", "fp16", "none")  # mixed precision on GPUs; auto resolves per device (runtime.Precision)
CPU_PRECISIONS = ("auto", "bf16", "float32")  # prediction on a CPU; auto: bf16 where the CPU has AMX tiles

ARCHS = ("Unet", "UnetPlusPlus", "FPN", "Linknet", "MAnet", "PAN", "DeepLabV3Plus")  # smp's, by its class names
ATTENTION = ("none", "scse")  # decoder attention
# which architectures take which options (checked by the config before anything is built)
TAKES_DECODER_CHANNELS = ("Unet", "UnetPlusPlus", "MAnet")
TAKES_ATTENTION = ("Unet", "UnetPlusPlus")
TAKES_HYPERCOLUMN = ("Unet",)  # its decoder blocks run in order, so their outputs are the levels
MIN_SCSE_CHANNELS = 16  # scSE squeezes channels by 16


def implemented(names: tuple, table: dict) -> dict:
    """`table` (a registry's implementations), once checked to hold exactly `names` in their order."""
    if tuple(table) != tuple(names):
        raise RuntimeError(f"registry implements {list(table)} but pipeline/lib/names.py lists {list(names)}")
    return table
