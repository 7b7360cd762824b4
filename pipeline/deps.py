"""Install what the pipeline needs and the active Python environment lacks (standard library only).

    python -m pipeline.deps [--tests]

Each line of requirements.txt names a pip requirement and, after `#`, the module it provides. Only
requirements whose module cannot be found are installed, in one pip call; an installed torch is
pinned so that pip picks a torchvision built for it instead of replacing torch (Kaggle's GPU images
ship torch; a fresh machine gets the registry's newest build).
"""
from __future__ import annotations

import argparse
import importlib.metadata
import importlib.util
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def parse_requirements(path: Path) -> list[tuple[str, str]]:
    """(pip requirement, import name) for each line `requirement  # module`."""
    pairs = []
    for line in path.read_text().splitlines():
        requirement, _, module = line.partition("#")
        if requirement.strip():
            pairs.append((requirement.strip(), module.strip()))
    return pairs


def missing(pairs: list[tuple[str, str]]) -> list[str]:
    return [req for req, module in pairs if importlib.util.find_spec(module) is None]


def torch_pin() -> str | None:
    try:
        return importlib.metadata.version("torch").split("+")[0]
    except importlib.metadata.PackageNotFoundError:
        return None


def install(requirements: list[str]) -> None:
    command = [sys.executable, "-m", "pip", "install", "--disable-pip-version-check", *requirements]
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as constraints:
        pin = torch_pin()
        if pin:
            constraints.write(f"torch=={pin}\n")
    command += ["-c", constraints.name]
    print("installing:", " ".join(requirements), flush=True)
    result = subprocess.run(command)
    Path(constraints.name).unlink()
    if result.returncode:
        sys.exit(f"error: pip could not install {' '.join(requirements)}; install them by hand and retry")


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tests", action="store_true", help="also what the test suite needs")
    args = p.parse_args(argv)
    files = [REPO / "requirements.txt"] + ([REPO / "tests" / "requirements.txt"] if args.tests else [])
    todo = [req for f in files for req in missing(parse_requirements(f))]
    if todo:
        install(todo)


if __name__ == "__main__":
    main()
