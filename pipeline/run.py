"""The whole pipeline: mosaic -> folds -> train (all folds) -> predict -> tune -> submit (what `bash run.sh` runs).

    python -m pipeline.run [--demo] [--config FILE] [--input DIR] [--workdir DIR] [--only STAGE | --from STAGE]
                           [--force] [--kaggle] [--keep-last] [--wheels DIR] [-- key=value ...]
    tgs-salt run ...                                    # the same, as the installed command
    from pipeline.run import run; run(["--demo"])       # from a notebook cell (returns the exit status)

Default config: default.yaml (GPU recipe) with a GPU, cpu-long.yaml (cpu.yaml trained twice as long)
without; no data in input/ and no --input: the demo on generated data. Each stage says whether its outputs are
up to date, stale (and what changed) or missing, and redoes only what is not up to date; training resumes
interrupted folds and never reuses folds trained otherwise. Overrides after `--` that change training make a
new experiment, <config>-<digest>. In a Kaggle kernel (/kaggle/working exists, or --kaggle): the submission is
also /kaggle/working/submission.csv, and the resume checkpoints (last.pt) of finished folds are removed unless
--keep-last. Standard library only at the top: it installs what is missing (pipeline.deps) before any
stage runs.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from .lib import children, paths
from .lib.ensembles import is_ensemble, load_ensemble
from .lib.errors import PipelineError
from .lib.lock import lock_workdir, release_all

STAGES = ("mosaic", "folds", "train", "predict", "tune", "submit")


class StageFailed(Exception):
    """A stage exited non-zero (it has said why); the run stops with its exit status."""

    def __init__(self, code: int):
        super().__init__(code)
        self.code = code


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="run", description=__doc__.splitlines()[0])
    p.add_argument("--demo", action="store_true", help="generated demo data and a tiny model")
    p.add_argument("--config", help="the experiment's YAML, or a shipped one's name (default: by hardware)")
    p.add_argument("--input", help=f"Kaggle data folder (default: ${paths.INPUT_ENV} or input/)")
    p.add_argument("--workdir", help=f"where folds/, experiments/, submissions/ go (default: ${paths.WORKDIR_ENV})")
    which = p.add_mutually_exclusive_group()
    which.add_argument("--only", choices=STAGES, metavar="STAGE", help="run just one stage")
    which.add_argument("--from", dest="start", choices=STAGES, metavar="STAGE", help="start at a stage")
    p.add_argument("--force", action="store_true", help="redo stages that are up to date (never re-splits)")
    p.add_argument("--kaggle", action="store_true", help="kernel mode (automatic where /kaggle/working exists)")
    p.add_argument("--keep-last", action="store_true", help="in kernel mode, keep finished folds' last.pt")
    p.add_argument("--wheels", help="install missing packages from this folder of wheels, offline")
    p.add_argument("overrides", nargs="*", help="section.key=value config overrides (after --)")
    return p


def parse(argv: list[str]) -> argparse.Namespace:
    """The flags; everything after `--` is an override (run.sh's form), as are bare key=value words."""
    head, tail = (argv[:argv.index("--")], argv[argv.index("--") + 1:]) if "--" in argv else (argv, [])
    p = parser()
    for stage in _stage_words(head):
        p.error(f"unknown stage '{stage}'; stages: {' '.join(STAGES)}")
    args = p.parse_args(head)
    args.overrides = [*args.overrides, *tail]
    return args


def _stage_words(head: list[str]) -> list[str]:
    """The values of --only/--from that are no stage (argparse's own message would list them differently)."""
    return [value for flag, value in zip(head, head[1:]) if flag in ("--only", "--from") and value not in STAGES]


def call(command: list[str], capture: bool = False) -> str:
    """Run one command; its output goes to ours (through Python's streams when they are not the process's
    own, as in a notebook). Non-zero exit: StageFailed. The child ends with this process (lib/children.py):
    when it is killed, and when it is interrupted (then the child is stopped before the interrupt goes on)."""
    forward = capture or not _real_stdout()
    proc = children.start(command, stdout=subprocess.PIPE if forward else None,
                          stderr=subprocess.STDOUT if forward and not capture else None, text=True)
    out = []
    try:
        for line in proc.stdout if forward else []:
            out.append(line)
            if not capture:
                sys.stdout.write(line)
                sys.stdout.flush()
        code = proc.wait()
    except BaseException:
        children.stop(proc)
        raise
    if code:
        raise StageFailed(code)
    return "".join(out)


def _real_stdout() -> bool:
    try:
        return sys.stdout is sys.__stdout__ and sys.stdout.fileno() == 1
    except (AttributeError, OSError, ValueError):
        return False


def module(name: str, *args) -> list[str]:
    return [sys.executable, "-m", f"pipeline.{name}", *map(str, args)]


def wanted(args: argparse.Namespace, stage: str) -> bool:
    if args.only:
        return stage == args.only
    return not args.start or STAGES.index(stage) >= STAGES.index(args.start)


def gpu_count() -> int:
    """The GPUs torch can run on here, asked in a child (this process never starts CUDA); a GPU the installed
    torch has no kernels for ends the run with the child's one line, before any stage."""
    return int(call(module("status", "--gpus"), capture=True).strip())


def kernel_mode(args: argparse.Namespace) -> bool:
    return args.kaggle or paths.KAGGLE_WORKING.is_dir()


def has_data(folder: Path) -> bool:
    return paths.InputLayout(folder).holds_data()


def choose_input(args: argparse.Namespace, kernel: bool) -> tuple[Path, bool]:
    """The data folder, and whether it is the demo's (generated here)."""
    given = args.input or os.environ.get(paths.INPUT_ENV)
    if kernel and not given and not args.demo:
        from .lib.kaggle_kernel import find_competition
        found = find_competition(paths.KAGGLE_INPUT)
        if found is not None:
            return found, False
    if args.demo or (not given and not has_data(paths.input_dir())):
        if not args.demo:
            print(f"no Kaggle data in {paths.input_dir()}/ (see input/README.md): running the demo on generated "
                  "data instead")
        return Path(args.workdir) / "demo-input" if args.workdir else paths.home() / "demo" / "input", True
    return paths.input_dir(given), False


def choose_workdir(args: argparse.Namespace, kernel: bool, demo: bool) -> Path:
    if args.workdir or os.environ.get(paths.WORKDIR_ENV):
        return paths.work_dir(args.workdir)
    if demo:
        return paths.home() / "demo"
    return paths.KAGGLE_WORKING if kernel else paths.work_dir()


# the best 5-fold CV within twice cpu.yaml's wall time on 2 cores (docs/results.md, session of 2026-12-07)
CPU_RECIPE = "cpu-long"


def choose_config(args: argparse.Namespace, demo: bool, gpus: int) -> str:
    if demo:
        return str(paths.CONFIG_DIR / "demo.yaml")
    if args.config:
        found = paths.config_file(args.config)
        if not found.is_file():
            raise PipelineError(f"config {args.config} does not exist; shipped configs: "
                                f"{', '.join(sorted(p.stem for p in paths.CONFIG_DIR.glob('*.yaml')))}")
        return str(found)
    name, why = (("default", f"{gpus} GPU(s): the GPU recipe") if gpus else
                 (CPU_RECIPE, "no GPU: the CPU recipe, cpu.yaml trained twice as long (--config cpu for the "
                              "short one, --config default for the GPU one)"))
    print(f"no --config given; {why}, {paths.CONFIG_DIR / (name + '.yaml')}")
    return str(paths.CONFIG_DIR / f"{name}.yaml")


def lock(workdir: Path) -> None:
    try:
        workdir.mkdir(parents=True, exist_ok=True)
        probe = workdir / ".write-probe"
        probe.touch()
        probe.unlink()
    except OSError:
        raise PipelineError(f"cannot write the work folder {workdir}; pass --workdir DIR (or set "
                            f"{paths.WORKDIR_ENV}) to a writable folder") from None
    lock_workdir(workdir)  # the stages below inherit it through the environment


def train_command(gpus: int) -> list[str]:
    """One process, or with several GPUs one per GPU (torchrun), each training its share of the folds."""
    if gpus > 1:
        return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={gpus}",
                "-m", "pipeline.train"]
    return module("train")


def stages(args, config: str, io: list[str], gpus: int, overrides: list[str], last: str = "submit") -> None:
    """The stages of one experiment (`config` with `overrides`), from the mosaic to `last`."""
    forced = ["--force"] if args.force else []
    if wanted(args, "mosaic"):  # seconds; the mosaic split and the neighbour rules read it
        stage("mosaic", module("mosaic", *io, *forced))
    if wanted(args, "folds"):  # written once per number of folds: --force never rewrites it
        stage("folds", module("folds", "--config", config, *io, *overrides))
    if wanted(args, "train"):
        stage("train", [*train_command(gpus), "--config", config, "--fold", "all", "--resume", *io, *forced,
                        *overrides])
    for name in STAGES[STAGES.index("predict"):STAGES.index(last) + 1]:  # each redoes only what is stale
        if wanted(args, name):
            stage(name, module(name, "--config", config, *io, *forced, *overrides))


def ensemble_stages(args, config: str, io: list[str], gpus: int) -> None:
    """An ensemble config (lib/ensembles.py): each member through predict, as its own run would take it,
    then the members averaged, tuned and submitted as the ensemble."""
    if args.overrides:
        raise PipelineError(f"{config} is an ensemble: overrides go into its members (ensemble.members[N]."
                            "overrides), not on the command line")
    for member in load_ensemble(config).members:
        print(f"\n=== member: {member.config} {' '.join(member.overrides)} ===", flush=True)
        print(call(module("status", "--config", member.config, "--check-encoder", "--member", *io,
                          *member.overrides),
                   capture=True), end="", flush=True)
        stages(args, member.config, io, gpus, list(member.overrides), last="predict")
    if wanted(args, "tune") or wanted(args, "submit"):
        stage("ensemble", module("submit", "--config", config, *io, *(["--force"] if args.force else [])))


def stage(name: str, command: list[str]) -> None:
    print(f"\n== {name} ==", flush=True)
    call(command)


def prune_resume_checkpoints(exp: paths.ExperimentLayout) -> None:
    """Kernel mode: a finished fold's last.pt (weights and optimiser state, only for resuming) goes, so the
    kernel's output holds best.pt and the snapshots alone."""
    freed = 0
    for fold in exp.folds_on_disk():
        last = exp.last_checkpoint(fold)
        if exp.done_marker(fold).is_file() and last.exists():
            freed += last.stat().st_size
            last.unlink()
    if freed:
        print(f"kernel mode: removed the finished folds' last.pt ({freed / 2**20:.0f} MB; --keep-last keeps them)")


def publish_submission(csv: Path) -> None:
    """Kernel mode: the submission also where Kaggle's "Submit" looks for it."""
    target = paths.kaggle_submission()
    if csv.resolve() == target.resolve():
        return
    partial = target.with_name(".submission.csv.partial")
    shutil.copyfile(csv, partial)
    partial.replace(target)
    print(f"kernel mode: {target} is {csv.name}")


def summary(work: paths.WorkLayout, name: str, started: float) -> None:
    tune_json = work.experiment(name).tune_json
    if tune_json.is_file():
        record = json.loads(tune_json.read_text())
        print(f"\nCV mAP {record['cv_score']:.4f} on {record['images']} out-of-fold images")
    csv = work.submission_csv(name)
    if csv.is_file():
        print(f"submission: {csv}")
    print(f"wall time: {time.monotonic() - started:.0f} s")


def pipeline(args: argparse.Namespace) -> None:
    started = time.monotonic()
    kernel = kernel_mode(args)
    call(module("deps", *(["--wheels", args.wheels] if args.wheels else [])))
    data, demo = choose_input(args, kernel)
    work = choose_workdir(args, kernel, demo)
    if demo:
        call(module("demo", "--out", data))
    config = choose_config(args, demo, gpus := gpu_count())
    lock(work)
    io = ["--input", str(data), "--workdir", str(work)]
    name = call(module("status", "--config", config, "--name", *args.overrides), capture=True).strip()
    if is_ensemble(config):
        ensemble_stages(args, config, io, gpus)
    else:
        print(call(module("status", "--config", config, "--check-encoder", *io, *args.overrides), capture=True),
              end="", flush=True)  # what is up to date
        stages(args, config, io, gpus, args.overrides)
    layout = paths.WorkLayout(work)
    exp = layout.experiment(name)
    if kernel and not args.keep_last:
        prune_resume_checkpoints(exp)
    csv = layout.submission_csv(name)
    if kernel and csv.is_file() and exp.submit_json.is_file():
        publish_submission(csv)
    summary(layout, name, started)


def run(argv: list[str] | None = None) -> int:
    """The whole pipeline (see the module's doc); returns the exit status, for a notebook cell."""
    try:
        pipeline(parse(sys.argv[1:] if argv is None else list(argv)))
        return 0
    except StageFailed as failed:
        return failed.code
    except PipelineError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    finally:
        release_all()


def main(argv: list[str] | None = None) -> None:
    sys.exit(run(argv))


if __name__ == "__main__":
    main()
