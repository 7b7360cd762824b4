"""Stage: out-of-fold and test probabilities with flip TTA, averaged over folds.

    python -m pipeline.predict --config pipeline/configs/default.yaml [--input DIR]

For every trained fold: its validation images' probabilities -> experiments/<name>/fold_K/oof_probs.npz,
and all test images' -> averaged over folds into experiments/<name>/test_probs.npz. Each model's
output is averaged over the TTA views (flipped back first); with predict.use_snapshots the fold's
cycle snapshots are averaged instead of its best checkpoint.
"""
from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from . import cli
from .config import load_config
from .data import load_test, load_train
from .dataset import SaltDataset, is_blank
from .errors import PipelineError, run_stage
from .folds import read_folds
from .geometry import TTA, from_canvas, tta_logits
from .models import build_model
from .paths import ExperimentLayout, WorkLayout
from .store import Probs, save_probs, to_levels
from .runtime import autocast, memory_format, pick_device
from .train import check_config


def fold_weights(exp: ExperimentLayout, fold: int, use_snapshots: bool) -> list:
    """The checkpoint files whose predictions are averaged for one fold."""
    if not exp.done_marker(fold).exists():
        raise PipelineError(f"fold {fold} of '{exp.root.name}' is not trained; run "
                            f"`python -m pipeline.train --config ... --fold {fold}` first")
    snapshots = exp.snapshots(fold) if use_snapshots else []
    return snapshots or [exp.best_checkpoint(fold)]


def load_models(config: dict, files: list, device: torch.device) -> list[torch.nn.Module]:
    models = []
    for path in files:
        model = build_model(config)
        try:
            model.load_state_dict(torch.load(path, map_location="cpu", weights_only=False)["model"])
        except RuntimeError:
            raise PipelineError(f"{path} does not fit the model the config describes; the config's model "
                                "section changed after training: restore it or retrain with --force") from None
        models.append(memory_format(model.to(device), config).eval())
    return models


@torch.inference_mode()
def predict_images(models, images, depths, config: dict, device: torch.device, desc: str = "predicting"):
    """Probabilities (N, 101, 101) float32 averaged over models and TTA views, and the head's (N,) or None."""
    tta = config["predict"]["tta"]
    if tta not in TTA:
        raise PipelineError(f"unknown predict.tta '{tta}'; valid: {', '.join(TTA)}")
    loader = DataLoader(SaltDataset(images, depths, config), batch_size=config["predict"]["batch_size"],
                        num_workers=min(2, config["train"]["num_workers"]), pin_memory=device.type == "cuda")
    probs, heads = [], []
    for x, _ in tqdm(loader, desc=desc, leave=False, disable=len(images) < 1000):
        x = memory_format(x.to(device, non_blocking=True), config)
        batch_probs, batch_heads = 0, 0
        for model in models:
            with autocast(config, device):
                p, h = tta_logits(model, x, tta)
            batch_probs = batch_probs + from_canvas(p, config["data"]["input_mode"])[:, 0]
            batch_heads = batch_heads + (h[:, 0] if h is not None else 0)
        probs.append((batch_probs / len(models)).float().cpu().numpy())
        heads.append(batch_heads / len(models) if torch.is_tensor(batch_heads) else None)
    head = None if heads[0] is None else torch.cat(heads).float().cpu().numpy()
    out = np.concatenate(probs)
    if config["data"]["drop_blank"]:
        out[is_blank(images)] = 0  # never trained on blank images: they are predicted empty
    return out, head


def predict(config: dict, layout, work: WorkLayout) -> None:
    exp = work.experiment(config["name"])
    device = pick_device()
    train = load_train(layout, work)
    split = read_folds(work, train.ids)["fold"].to_numpy()
    folds = sorted(set(split))
    files = {fold: fold_weights(exp, fold, config["predict"]["use_snapshots"]) for fold in folds}
    test = load_test(layout, work)
    total, head_total = np.zeros(test.images.shape, np.float32), None
    for fold in folds:
        models = load_models(config, files[fold], device)
        val = split == fold
        probs, head = predict_images(models, train.images[val], train.depths[val], config, device,
                                     f"fold {fold} out-of-fold")
        save_probs(exp.oof_probs(fold), Probs(train.ids[val], to_levels(probs), head))
        probs, head = predict_images(models, test.images, test.depths, config, device, f"fold {fold} test")
        total += probs
        if head is not None:
            head_total = head if head_total is None else head_total + head
        print(f"fold {fold}: {len(files[fold])} model(s), {val.sum()} out-of-fold and {len(test.ids)} test images")
    head_mean = None if head_total is None else head_total / len(folds)
    save_probs(exp.test_probs, Probs(test.ids, to_levels(total / len(folds)), head_mean))
    print(f"wrote {exp.test_probs}")


def main(argv=None) -> None:
    p = cli.parser(__doc__.splitlines()[0])
    p.add_argument("--config", required=True)
    p.add_argument("overrides", nargs="*", help="dotted key=value pairs, e.g. predict.tta=none")
    args = p.parse_args(argv)
    config = load_config(args.config, args.overrides)
    check_config(config)
    layout, work = cli.layouts(args)
    predict(config, layout, work)


if __name__ == "__main__":
    run_stage(main)
