"""Stage: measure every stage's speed and print it, and write it as JSON.

    python -m pipeline.bench [--input DIR] [--device cpu|cuda] [--out bench/bench.json] [--steps N]
    python -m pipeline.bench --trained CONFIG [--input DIR] [--workdir DIR]   # float32 vs bf16 on trained folds
    python -m pipeline.bench --gpu-check [--input DIR] [--minutes 8.5] [-- key=value ...]  # first, on any GPU

`--gpu-check` (lib/gpu_check.py): the device, its capability and torch's architectures; default.yaml's real
training step in fp16 and bf16 (where the GPU has it), images/s and peak memory; then fold 0 of default.yaml
on the real training images for the minutes left, each epoch's validation mAP; all in bench/gpu_check.json.

Uses the real data when the input folder has it, else a generated demo set (then load and tune
figures are scaled to the real sizes, and the JSON says so). Ratios between figures of one run are
comparable; absolute times mean something only on the device they were taken on, so the JSON starts with
the device's fp32 matmul speed (2048², GFLOP/s) to compare machines by. On CPUs it also times the ways to
run the CPU recipe's network that were considered for prediction (eager channels-last in float32 and in bf16,
which predict uses on CPUs with AMX tiles; torch.compile; ONNX Runtime). Training throughput is the real
Trainer's step (`Trainer.optimizer_step`: precision, grad scaler, clipping, EMA, deep supervision, image head
and the loss of each phase), on batches its own loader made.
"""
from __future__ import annotations

import argparse
import json
import logging
import resource
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from .lib import paths, rle
from .lib.batches import training_batches
from .lib.cli import run_stage
from .lib.config import load_config
from .lib.cv import tuned_score
from .lib.data import load_test, load_train
from .lib.demo_data import make_demo
from .lib.distributed import ALONE
from .lib.errors import PipelineError
from .lib.fold_data import FoldInputs, Images
from .lib.folds import make_folds, write_folds
from .lib.gpu import check_gpus
from .lib.gpu_check import gpu_check
from .lib.inference import InferenceSettings, Predictor
from .lib.metric import threshold_grid_scores
from .lib.models import build_model
from .lib.mosaic import build
from .lib.paths import CONFIG_DIR, InputLayout, WorkLayout
from .lib.probs import to_levels
from .lib.runtime import Precision, memory_format
from .lib.step_bench import Step, bench_trainer, measure, sync, table
from .lib.store import write_json

REAL_TRAIN, REAL_TEST = 3200, 18800


def timed(fn, repeat: int = 1) -> float:
    """Best of `repeat` wall times of fn(), in seconds."""
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - started)
    return best


# speed levers of the training step, each as the config overrides that turn it on (pipeline.bench --train-step)
# (docs/results.md: which were adopted for cpu.yaml and why the others were not)
LEVERS: dict[str, list[str]] = {
    "cpu.yaml before 0.9 (pad128)": ["data.input_mode=pad128", "train.loss_after={lovasz_symmetric: 1.0}"],
    "canvas 96 (data.input_mode=resize96)": ["data.input_mode=resize96"],
    "canvas 128 (data.input_mode=pad128)": ["data.input_mode=pad128"],
    "encoder BatchNorm statistics fixed": ["train.encoder_bn=affine"],
    "encoder BatchNorm frozen": ["train.encoder_bn=frozen"],
    "encoder BatchNorm fused": ["train.encoder_bn=fused"],
    "torch.compile": ["train.compile=true"],
}


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


def loader_rate(train, config, device: torch.device, batches: int) -> float:
    """Samples/s of the training loader the config trains with (`train.gpu_augment` picks which)."""
    loader = training_batches(config, Images.of(train), device, ALONE, 0)
    loader.set_epoch(0)
    if config.train.gpu_augment:
        next(iter(loader))  # warm-up: the set moves to the device
    sync(device)
    started, seen = time.perf_counter(), 0
    for n, (x, _) in enumerate(loader):
        seen += len(x)
        if n + 1 >= batches:
            break
    sync(device)
    return seen / (time.perf_counter() - started)


def bench_model(config, train, images: np.ndarray, device: torch.device, steps: int) -> dict:
    """Training throughput of the config's Trainer step (each loss phase) and flip-TTA inference throughput
    of the inference path (`Predictor`) on `images`."""
    trainer = bench_trainer(config, Images.of(train), device)
    t = config.train
    out = {"train_images_per_s": Step(trainer, 0).images_per_s(steps)}
    if t.switch_epoch is not None:
        out["train_images_per_s_after_switch"] = Step(trainer, t.switch_epoch).images_per_s(steps)
    model = trainer.nets.evaluated
    out["infer_images_per_s"] = infer_rate(model, InferenceSettings.of(config, device), images)
    if device.type == "cpu":  # the setting before channels-last: contiguous tensors, batches of 256
        before = InferenceSettings.of(config, device).but(channels_last=False, batch_size=256)
        out["infer_images_per_s_contiguous_256"] = infer_rate(model.to(memory_format=torch.contiguous_format),
                                                              before, images)
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
    bf16 (predict's path: bf16 where the CPU has AMX tiles, `predict.cpu_precision`), torch.compile, ONNX
    Runtime (when installed). The network has random weights here; docs/results.md has the same comparison
    on trained checkpoints, with their mAP (and BatchNorm folded into the convolutions, no faster)."""
    model = build_model(config.model, config.in_channels, pretrained=False, encoder_bn=config.train.encoder_bn)
    model = memory_format(model.eval(), True)
    example = memory_format(torch.randn(config.predict.batch_size, config.in_channels, 128, 128), True)
    cpu = torch.device("cpu")
    settings = InferenceSettings.of(config, cpu)
    as_float32, as_bf16 = settings.but(precision=Precision("none", "cpu")), settings.but(precision=Precision("bf16", "cpu"))
    with tempfile.TemporaryDirectory() as tmp:
        ways = {"eager_channels_last": (as_float32, lambda: model),
                "eager_channels_last_bf16": (as_bf16, lambda: model),
                "torch_compile": (as_float32, lambda: torch.compile(model)),
                "onnxruntime": (as_float32, lambda: OnnxRunner(model, example, Path(tmp)))}
        out = {"predict_uses": "eager_channels_last_bf16" if settings.precision.name == "bf16" else "eager_channels_last"}
        for name, (run_as, make) in ways.items():
            try:
                out[name] = infer_rate(make(), run_as, images)
            except Exception as err:  # an option this machine cannot run (no compiler, no onnxruntime)
                out[name] = f"not measured: {type(err).__name__}: {str(err).splitlines()[0][:120]}"
    return out


def infer_rate(model, settings: InferenceSettings, images: np.ndarray) -> float:
    """Flip-TTA inference throughput of the inference path, counting both views of each image."""
    predictor = Predictor([model], settings.but(tta="hflip"))
    depths = np.zeros(len(images), np.float32)
    warm = settings.batch_size
    predictor(images[:warm], depths[:warm])  # warm-up at the timed batch size (torch.compile compiles per shape)
    seconds = timed(lambda: (predictor(images, depths), sync(settings.device)))
    return round(2 * len(images) / seconds, 1)


def precision_on_trained_folds(config_path: Path, layout: InputLayout, work: WorkLayout) -> dict:
    """CPU prediction in float32 and in bf16 on an experiment's trained folds: views/s (flip TTA, loading
    the checkpoints included) and the k-fold CV mAP under one tuned decision, as `tune` scores it."""
    config = load_config(config_path)
    inputs = FoldInputs.load(layout, replace(work, n_folds=config.data.n_folds, split=config.data.split))
    out = {"experiment": config.name}
    for precision in ("float32", "bf16"):
        run_as = config.model_copy(update={"predict": config.predict.model_copy(update={"cpu_precision": precision})})
        started = time.perf_counter()
        score = tuned_score(inputs, run_as, inputs.folds, torch.device("cpu"))["tuned_mAP"]  # untrained fold: one line
        out[precision] = {"views_per_s": round(2 * len(inputs.split) / (time.perf_counter() - started), 1),
                          "cv_tuned_mAP": score}
    return out


def train_step(config_path: Path, layout: InputLayout, device: torch.device, steps: int, levers: list[str]) -> dict:
    """The training step of a config and of each lever on top, timed and profiled in one process."""
    # torch.compile's C++ build notes that a CUDA build has no CUDA runtime here: true, and of no consequence
    logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)
    unknown = [name for name in levers if name not in LEVERS]
    if unknown:
        raise PipelineError(f"--levers: no lever {unknown[0]!r}; valid: {', '.join(LEVERS) or 'none yet'}")
    with tempfile.TemporaryDirectory() as tmp:
        if not layout.train_csv.exists():
            layout = InputLayout(Path(tmp) / "input")
            make_demo(layout.root, n_train=400, n_test=10)
        images = Images.of(load_train(layout, None))
    result = {"device": device_name(device), "matmul_2048_fp32_gflops": matmul_gflops(device),
              "torch_threads": torch.get_num_threads(), "config": str(config_path), "images": len(images)}
    options = {"as configured": []} | {name: LEVERS[name] for name in levers}
    result["options"] = {name: {"overrides": overrides, **measure(load_config(config_path, overrides), images, device,
                                                                   steps)} for name, overrides in options.items()}
    return result


def device_name(device: torch.device) -> str:
    return torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"


def bench(layout: InputLayout, device: torch.device, steps: int) -> dict:
    real = layout.train_csv.exists()
    result = {"device": device_name(device),
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
    on_device = default.model_copy(update={"train": default.train.model_copy(update={"gpu_augment": True})})
    result["loader_samples_per_s"] = round(loader_rate(train, default, device, batches=max(steps, 20)), 1)
    result["loader_samples_per_s_device_batches"] = round(loader_rate(train, on_device, device, 40), 1)
    images = np.resize(train.images, (steps * 64, 101, 101))
    for name in ("default", "cpu"):
        result[name] = bench_model(load_config(CONFIG_DIR / f"{name}.yaml"), train, images, device, steps)
    if device.type == "cpu":
        result["cpu_inference_options_views_per_s_random_weights"] = inference_options(load_config(CONFIG_DIR / "cpu.yaml"), images)
    return {**result, **bench_after_training(train.masks, device)}


def bench_after_training(masks: np.ndarray, device: torch.device) -> dict:
    """Tuning and encoding at the real sizes, and the run's peak memory."""
    masks = np.resize(masks, (REAL_TRAIN, 101, 101))
    rng = np.random.default_rng(0)
    probs = to_levels(np.clip(masks * 0.7 + rng.random(masks.shape, np.float32) * 0.5, 0, 1))
    result = {"tune_seconds": round(timed(lambda: threshold_grid_scores(probs, masks, np.linspace(0.2, 0.8, 50)),
                                          repeat=2), 3)}
    many = np.resize(masks, (REAL_TEST, 101, 101))
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
    p.add_argument("--train-step", type=Path, default=None, metavar="CONFIG",
                   help="instead: the training step of this config and of its speed levers, timed and profiled")
    p.add_argument("--levers", default="all", help="with --train-step: lever names, comma-separated, all or none")
    p.add_argument("--gpu-check", action="store_true",
                   help="instead: the first check on a GPU machine (device, training step, fold 0 for --minutes)")
    p.add_argument("--config", default="default.yaml", help="with --gpu-check: the config it trains")
    p.add_argument("--minutes", type=float, default=8.5, help="with --gpu-check: the whole check's budget")
    p.add_argument("overrides", nargs="*", help="with --gpu-check: config overrides (after --)")
    args = p.parse_args(argv)
    if args.gpu_check:
        gpu_check_main(args)
        return
    if args.train_step:
        train_step_main(args)
        return
    if args.trained:
        result = precision_on_trained_folds(args.trained, InputLayout(paths.input_dir(args.input)),
                                            WorkLayout(paths.work_dir(args.workdir)))
        write_json(Path(args.out or WorkLayout(paths.home()).precision_json), result)
        print(json.dumps(result, indent=2))
        return
    device = chosen_device(args.device)
    steps = args.steps or (30 if device.type == "cuda" else 3)
    result = bench(InputLayout(paths.input_dir(args.input)), device, steps)
    out = Path(args.out or WorkLayout(paths.home()).bench_json)
    write_json(out, result)
    print(json.dumps(result, indent=2))
    print(f"wrote {out}")


def chosen_device(name: str) -> torch.device:
    """`--device`: a GPU only when torch sees one it has kernels for (else one line)."""
    if name == "cuda" and not check_gpus():
        raise PipelineError("--device cuda, but torch sees no GPU; use --device cpu")
    return torch.device(name)


def gpu_check_main(args) -> None:
    device = chosen_device(args.device)
    out = Path(args.out or WorkLayout(paths.home()).gpu_check_json)
    report = gpu_check(args.config, args.overrides, paths.input_dir(args.input), device, args.minutes,
                       args.steps or (20 if device.type == "cuda" else 3), matmul_gflops, out)
    print(json.dumps(report, indent=2))
    print(f"wrote {out}")


def train_step_main(args) -> None:
    device = chosen_device(args.device)
    levers = list(LEVERS) if args.levers == "all" else [] if args.levers == "none" else args.levers.split(",")
    result = train_step(args.train_step, InputLayout(paths.input_dir(args.input)), device,
                        args.steps or (30 if device.type == "cuda" else 5), levers)
    out = Path(args.out or WorkLayout(paths.home()).train_step_json)
    write_json(out, result)
    print(table({name: {k: v for k, v in option.items() if k != "overrides"} for name, option in result["options"].items()}))
    print(f"matmul {result['matmul_2048_fp32_gflops']} GFLOP/s (2048², fp32), {result['torch_threads']} threads; wrote {out}")


if __name__ == "__main__":
    run_stage(main)
