"""The Kaggle kernel's script (standard library only: it runs before anything is installed).

`python -m pipeline.bundle` writes this file's source, followed by the settings chosen when bundling, as the
kernel's code file. In the kernel it finds its attached datasets by what they hold, not by a fixed mount
path (Kaggle has mounted them as /kaggle/input/<slug> and in deeper folders): the wheels dataset by the
project's wheel, the competition data by sample_submission.csv beside train.csv and train.zip or train/,
weights files by name. The project wheel there must be the one bundled with this script (its sha256 is in
the settings): a dataset version older or newer than the kernel is one line. Then, with no network: the
project from its wheel, what the image lacks from the
same folder (`pipeline.deps --wheels`), the config written to /kaggle/working, and `pipeline.run --kaggle`,
which leaves /kaggle/working/submission.csv.
"""
from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

INPUT = Path("/kaggle/input")
WORKING = Path("/kaggle/working")
WHEEL_GLOB = "tgs_salt_pipeline-*.whl"
DEPTH = 4  # how far below /kaggle/input an attached dataset's files may lie


def folders(root: Path, depth: int = DEPTH):
    """`root` and the folders below it, breadth first, at most `depth` levels down."""
    level = [root]
    for _ in range(depth + 1):
        yield from level
        level = sorted(child for folder in level if folder.is_dir() for child in _subfolders(folder))


def _subfolders(folder: Path) -> list[Path]:
    try:
        return [child for child in folder.iterdir() if child.is_dir() and not child.name.startswith(".")]
    except OSError:
        return []


def is_competition(folder: Path) -> bool:
    return ((folder / "sample_submission.csv").is_file() and (folder / "train.csv").is_file()
            and ((folder / "train.zip").is_file() or (folder / "train").is_dir()))


def find_competition(root: Path = INPUT) -> Path | None:
    """The folder holding the TGS competition files, wherever Kaggle mounted it."""
    return next((folder for folder in folders(root) if is_competition(folder)), None)


def find_wheels(root: Path = INPUT) -> Path | None:
    """The attached wheels dataset: the folder holding the project's own wheel."""
    return next((folder for folder in folders(root) if any(folder.glob(WHEEL_GLOB))), None)


def find_file(name: str, root: Path = INPUT) -> Path | None:
    return next((folder / name for folder in folders(root) if (folder / name).is_file()), None)


def fail(message: str) -> None:
    print(f"error: {message}", file=sys.stderr, flush=True)
    sys.exit(2)


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def bundled_wheel(wheels: Path, expected: dict) -> Path:
    """The attached project wheel that is the one this kernel was bundled with (name and sha256)."""
    found = sorted(wheels.glob(WHEEL_GLOB))
    same = [path for path in found if sha256(path) == expected["sha256"]]
    if not same:
        fail(f"the attached wheels dataset ({wheels}) holds {', '.join(p.name for p in found)}, not the project "
             f"wheel this kernel was bundled with ({expected['name']}, sha256 {expected['sha256'][:12]}); push "
             "both again with `python -m pipeline.bundle --push` (it adds a dataset version and waits until it "
             "is ready), or attach the dataset's latest version")
    return same[0]


def install(wheels: Path, own: Path) -> None:
    """The project from its wheel, then what the image lacks, from the attached folder alone."""
    pip = [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-index"]
    for command in ([*pip, "--no-deps", str(own)],
                    [sys.executable, "-m", "pipeline.deps", "--wheels", str(wheels)]):
        print("$", " ".join(command), flush=True)
        if subprocess.run(command).returncode:
            fail(f"installing from {wheels} failed (above); rebuild the wheels dataset with `python -m "
                 "pipeline.bundle` for this kernel's Python and attach the new version")


def write_config(settings: dict) -> Path:
    """The experiment's resolved config, with any bundled weights file pointed at where it is mounted."""
    import yaml  # installed by now (the image has it)
    config = yaml.safe_load(settings["config"])
    weights = settings.get("weights")
    if weights:
        found = find_file(weights)
        if found is None:
            fail(f"weights file {weights} is in none of the attached datasets under {INPUT}; attach the weights "
                 "dataset made by `python -m pipeline.bundle --weights`")
        config.setdefault("model", {})["encoder_weights"] = str(found)
    path = WORKING / f"{settings['name']}.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def main(settings: dict) -> None:
    wheels = find_wheels()
    if wheels is None:
        fail(f"no attached dataset under {INPUT} holds the project's wheel ({WHEEL_GLOB}); attach the wheels "
             "dataset made by `python -m pipeline.bundle`")
    competition = find_competition()
    if competition is None:
        fail(f"the competition data is not under {INPUT}; add the competition tgs-salt-identification-challenge "
             "to the kernel's inputs")
    install(wheels, bundled_wheel(wheels, settings["wheel"]))
    config = write_config(settings)
    command = [sys.executable, "-m", "pipeline.run", "--kaggle", "--config", str(config), "--input",
               str(competition), "--workdir", str(WORKING), "--wheels", str(wheels)]
    print("$", " ".join(command), flush=True)
    os.chdir(WORKING)
    sys.exit(subprocess.run(command).returncode)
