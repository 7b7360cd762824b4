"""Stage: measure every stage's speed and print it, and write it as JSON.

    python -m pipeline.bench [--input DIR] [--device cpu|cuda] [--out bench/bench.json] [--steps N]
    python -m pipeline.bench --trained CONFIG [--input DIR] [--workdir DIR]   # float32 vs bf16 on trained folds

Uses the real data when the input folder has it, else a generated demo set (then load and tune
figures are scaled to the real sizes, and the JSON says so). Ratios between figures of one run are
comparable; absolute times mean something only on the device they were taken on, so the JSON starts with
the device's fp32 matmul speed (2048², GFLOP/s) to compare machines by. On CPUs it also times the ways to
run the CPU recipe's network that were considered for prediction (eager channels-last in float32 and in bf16,
which predict uses on CPUs with AMX tiles; BatchNorm folded; torch.compile; ONNX Runtime).
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

from .lib import paths, rle
from .lib.augment import build_augment
from .lib.config import load_config
from .lib.data import load_test, load_train
from .lib.dataset import SaltDataset
from .lib.demo_data import make_demo
from .lib.device_batches import DeviceBatches
from .lib.errors import PipelineError, run_stage
from .lib.fusion import folded
from .lib.geometry import from_canvas
from .lib.inference import Predictor, tuned_score
from .lib.folds import make_folds, read_folds, write_folds
from .lib.losses import make_loss
from .lib.mosaic import build
from .lib.metric import threshold_grid_scores
from .lib.models import build_model
from .lib.paths import CONFIG_DIR, InputLayout, WorkLayout
from .lib.runtime import autocast, inference_precision, make_optimizer, memory_format
from .lib.store import to_levels, write_json

REAL_TRAIN, REAL_TEST = 3200, 18800


def timed(fn, repeat: int = 1) -> float:
    """Best of `repeat` wall times of fn(), in seconds."""
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - started)
    return best


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def bench_load(layout: InputLayout, cache_root: Path) -> dict:
    work = WorkLayout(cache_root)
    cold = timed(lambda: (load_train(layout, None), load_test(layout, None)))
    load_train(layout, work), load_test(layout, work)  # fill the cache
    cached = timed(lambda: (load_train(layout, work), load_test(layout, work)), repeat=2)
    return {"cold": round(cold, 3), "cached": round(cached, 3)}


def bench_mosaic(tiles: np.ndarray) -> dict:
    """Edge matching and layout of all tiles (a generated set is resized to the real count: the same work)."""
    tiles = tiles if len(tiles) >= REAL_TRAIN + REAL_TEST else np.resize(tiles, (REAL_TRAIN + REAL_TEST, 101, 101))
    ids = np.array([f"{k:05d}" for k in range(len(tiles))])
    started = time.perf_counter()
    mosaics = build(ids, tiles)
    return {"tiles": len(tiles), "seconds": round(time.perf_counter() - started, 2),
            "tiles_placed": int(mosaics.sizes[mosaics.sizes > 1].sum())}


def bench_loader(train, config, batches: int) -> float:
    dataset = SaltDataset(train.images, train.depths, config.data, train.masks, build_augment(config.augment))
    loader = DataLoader(dataset, batch_size=config.train.batch_size, shuffle=True, drop_last=True,
                        num_workers=min(config.train.num_workers, os.cpu_count() or 1))
    started, seen = time.perf_counter(), 0
    for n, (x, _) in enumerate(loader):
        seen += len(x)
        if n + 1 >= batches:
            break
    return seen / (time.perf_counter() - started)


def bench_device_batches(train, config, device: torch.device, batches: int) -> float:
    """The same augmentations done on whole batches on `device` (train.gpu_augment)."""
    loader = DeviceBatches(train.images, train.depths, train.masks, config, device, torch.Generator().manual_seed(0))
    next(iter(loader))
    sync(device)
    started, seen = time.perf_counter(), 0
    for n, (x, _) in enumerate(loader):
        seen += len(x)
        if n + 1 >= batches:
            break
    sync(device)
    return seen / (time.perf_counter() - started)


def bench_model(config, images: np.ndarray, device: torch.device, steps: int) -> dict:
    """Training throughput of the config's model on random 128x128 batches, and flip-TTA inference
    throughput of the inference path (`Predictor`) on `images`."""
    t = config.train
    model = memory_format(build_model(config.model, config.in_channels, pretrained=False).to(device), t.channels_last)
    optimizer, loss_fn = make_optimizer(t, model), make_loss(t.loss)
    x = memory_format(torch.randn(t.batch_size, config.in_channels, 128, 128, device=device), t.channels_last)
    y = (torch.rand(t.batch_size, 1, 101, 101, device=device) > 0.5).float()

    def train_step():
        with autocast(t.amp, device):
            logits, _ = model(x)
            loss = loss_fn(from_canvas(logits.float(), "pad128"), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    model.train()
    train_step()  # warm-up: allocations, cudnn autotuning
    sync(device)
    train_s = timed(lambda: ([train_step() for _ in range(steps)], sync(device)))
    out = {"train_images_per_s": round(steps * t.batch_size / train_s, 1),
           "infer_images_per_s": infer_rate(model, config, device, images),  # the path predict takes
           }
    if device.type == "cpu":  # the setting before channels-last: contiguous tensors, batches of 256
        before = config.model_copy(update={"train": t.model_copy(update={"channels_last": False}),
                                           "predict": config.predict.model_copy(update={"batch_size": 256})})
        out["infer_images_per_s_contiguous_256"] = infer_rate(model.to(memory_format=torch.contiguous_format),
                                                              before, device, images)
    return out


def matmul_gflops(device: torch.device, side: int = 2048) -> float:
    """fp32 matrix-multiply speed: the yardstick that makes times from different machines comparable."""
    a, b = torch.randn(side, side, device=device), torch.randn(side, side, device=device)
    a @ b
    sync(device)
    seconds = timed(lambda: ([a @ b for _ in range(10)], sync(device)), repeat=2)
    return round(10 * 2 * side ** 3 / seconds / 1e9, 1)


class OnnxRunner(torch.nn.Module):
    """A network exported to ONNX and run by ONNX Runtime on the CPU, called like the network."""

    def __init__(self, model: torch.nn.Module, example: torch.Tensor, folder: Path):
        super().__init__()
        import onnxruntime
        path = folder / "model.onnx"
        torch.onnx.export(model, (example.contiguous(),), str(path), input_names=["x"], output_names=["mask", "head"],
                          dynamic_axes={"x": {0: "n"}, "mask": {0: "n"}, "head": {0: "n"}}, dynamo=False)
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = torch.get_num_threads()
        self.session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

    def forward(self, x: torch.Tensor):
        outputs = self.session.run(None, {"x": x.contiguous().numpy()})
        return tuple(torch.from_numpy(out) for out in outputs) + (None,) * (2 - len(outputs))


def inference_options(config, images: np.ndarray) -> dict:
    """Flip-TTA views/s of ways to run the same network on the CPU: eager channels-last in float32 and in
    bf16 (predict's path: bf16 where the CPU has AMX tiles, `predict.cpu_precision`), BatchNorm folded into
    the convolutions, torch.compile, ONNX Runtime (when installed). The network has random weights here;
    docs/results.md has the same comparison on trained checkpoints, with their mAP."""
    model = memory_format(build_model(config.model, config.in_channels, pretrained=False).eval(), True)
    example = memory_format(torch.randn(config.predict.batch_size, config.in_channels, 128, 128), True)
    chosen = inference_precision(config.train.amp, config.predict.cpu_precision, torch.device("cpu"))
    with tempfile.TemporaryDirectory() as tmp:
        ways = {"eager_channels_last": ("float32", lambda: model),
                "eager_channels_last_bf16": ("bf16", lambda: model),
                "bn_folded": ("float32", lambda: folded(model, example)),
                "torch_compile": ("float32", lambda: torch.compile(model)),
                "onnxruntime": ("float32", lambda: OnnxRunner(folded(model, example), example, Path(tmp)))}
        out = {"predict_uses": "eager_channels_last_bf16" if chosen == "bf16" else "eager_channels_last"}
        for name, (precision, make) in ways.items():
            run_as = config.model_copy(update={"predict": config.predict.model_copy(update={"cpu_precision": precision})})
            try:
                out[name] = infer_rate(make(), run_as, torch.device("cpu"), images)
            except Exception as err:  # an option this machine cannot run (no compiler, no onnxruntime)
                out[name] = f"not measured: {type(err).__name__}: {str(err).splitlines()[0][:120]}"
    return out


def infer_rate(model, config, device: torch.device, images: np.ndarray) -> float:
    """Flip-TTA inference throughput of the inference path, counting both views of each image."""
    predictor = Predictor([model], config.model_copy(update={"predict": config.predict.model_copy(
        update={"tta": "hflip"})}), device)
    depths = np.zeros(len(images), np.float32)
    warm = config.predict.batch_size
    predictor(images[:warm], depths[:warm])  # warm-up at the timed batch size (torch.compile compiles per shape)
    seconds = timed(lambda: (predictor(images, depths), sync(device)))
    return round(2 * len(images) / seconds, 1)


def precision_on_trained_folds(config_path: Path, layout: InputLayout, work: WorkLayout) -> dict:
    """CPU prediction in float32 and in bf16 on an experiment's trained folds: views/s (flip TTA, loading
    the checkpoints included) and the k-fold CV mAP under one tuned decision, as `tune` scores it."""
    config = load_config(config_path)
    work = replace(work, n_folds=config.data.n_folds, split=config.data.split)
    train = load_train(layout, work)  # an untrained fold is a one-line error from the first prediction
    split = read_folds(work, train.ids)["fold"].to_numpy()
    out = {"experiment": config.name}
    for precision in ("float32", "bf16"):
        run_as = config.model_copy(update={"predict": config.predict.model_copy(update={"cpu_precision": precision})})
        started = time.perf_counter()
        score = tuned_score(run_as, work, train, split, sorted(set(split.tolist())), torch.device("cpu"))
        out[precision] = {"views_per_s": round(2 * len(split) / (time.perf_counter() - started), 1),
                          "cv_tuned_mAP": score}
    return out


def bench(layout: InputLayout, device: torch.device, steps: int) -> dict:
    real = layout.train_csv.exists()
    result = {"device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
              "data": str(layout.root) if real else "generated demo data", "torch_threads": torch.get_num_threads(),
              "matmul_2048_fp32_gflops": matmul_gflops(device)}
    with tempfile.TemporaryDirectory() as tmp:
        if not real:
            layout = InputLayout(Path(tmp) / "input")
            make_demo(layout.root, n_train=400, n_test=400)
        result["load_seconds"] = bench_load(layout, Path(tmp) / "work")
        work = WorkLayout(Path(tmp) / "work")
        train = load_train(layout, work)
        test_images = load_test(layout, work).images
        test_count = len(test_images)
        result["folds_seconds"] = round(timed(lambda: (write_folds(work, make_folds(
            load_train(layout, work).ids, train.coverage)))), 3)
    if not real:
        result["load_seconds"]["scaled_to_real_size"] = round(result["load_seconds"]["cached"] * (
            REAL_TRAIN + REAL_TEST) / (len(train.ids) + test_count), 3)
    result["mosaic_seconds"] = bench_mosaic(np.concatenate([train.images, test_images]))
    default = load_config(CONFIG_DIR / "default.yaml")
    result["loader_samples_per_s"] = round(bench_loader(train, default, batches=max(steps, 20)), 1)
    result["loader_samples_per_s_device_batches"] = round(bench_device_batches(train, default, device, 40), 1)
    images = np.resize(train.images, (steps * 64, 101, 101))
    for name in ("default", "cpu"):
        result[name] = bench_model(load_config(CONFIG_DIR / f"{name}.yaml"), images, device, steps)
    if device.type == "cpu":
        result["cpu_inference_options_views_per_s_random_weights"] = inference_options(load_config(CONFIG_DIR / "cpu.yaml"), images)
    masks = np.resize(train.masks, (REAL_TRAIN, 101, 101))
    rng = np.random.default_rng(0)
    probs = to_levels(np.clip(masks * 0.7 + rng.random(masks.shape, np.float32) * 0.5, 0, 1))
    result["tune_seconds"] = round(timed(lambda: threshold_grid_scores(probs, masks, np.linspace(0.2, 0.8, 50)),
                                         repeat=2), 3)
    many = np.resize(train.masks, (REAL_TEST, 101, 101))
    result["rle_encode_seconds"] = round(timed(lambda: rle.encode_many(many), repeat=2), 3)
    result["peak_memory_mb"] = {"host": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}
    if device.type == "cuda":
        result["peak_memory_mb"]["gpu"] = round(torch.cuda.max_memory_allocated(device) / 2 ** 20, 1)
    return result


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--input", default=None)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", choices=["cpu", "cuda"])
    p.add_argument("--out", default=None, help="JSON file (default: bench/bench.json, with --trained bench/precision.json)")
    p.add_argument("--steps", type=int, default=None, help="timed steps per model (default: 3 on CPU, 30 on GPU)")
    p.add_argument("--trained", type=Path, default=None, metavar="CONFIG",
                   help="instead: CPU prediction in float32 vs bf16 on this experiment's trained folds (speed, CV mAP)")
    p.add_argument("--workdir", default=None, help="where --trained's experiment was trained (default: as the stages)")
    args = p.parse_args(argv)
    if args.trained:
        result = precision_on_trained_folds(args.trained, InputLayout(paths.input_dir(args.input)),
                                            WorkLayout(paths.work_dir(args.workdir)))
        write_json(Path(args.out or paths.home() / "bench" / "precision.json"), result)
        print(json.dumps(result, indent=2))
        return
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise PipelineError("--device cuda, but torch sees no GPU; use --device cpu")
    steps = args.steps or (30 if device.type == "cuda" else 3)
    result = bench(InputLayout(paths.input_dir(args.input)), device, steps)
    out = Path(args.out or paths.home() / "bench" / "bench.json")
    write_json(out, result)
    print(json.dumps(result, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    run_stage(main)
