"""The project's dependencies as data (standard library only: read before anything is installed).

One list: pyproject.toml's `dependencies` and `optional-dependencies`. An installed copy (the wheel, no
pyproject.toml beside the package) reads the same list from its distribution's metadata, made from it.
"""
from __future__ import annotations

import importlib.metadata
import re
from dataclasses import dataclass
from pathlib import Path

DIST = "tgs-salt-pipeline"  # the distribution's name (pyproject.toml)
REPO = Path(__file__).resolve().parents[2]  # the checkout; for an installed copy, its site-packages
PYPROJECT = REPO / "pyproject.toml"
# distributions whose module is not their name with '-' as '_' (deps looks for the module: an image's
# opencv-python provides cv2 as well as the headless build does)
MODULES = {"opencv-python-headless": "cv2", "scikit-learn": "sklearn", "pyyaml": "yaml"}
OPTIONAL = {"weights"}  # extras whose failed install is a note, not an error
DEFAULT_EXTRAS = ("weights",)  # what `pipeline.deps` installs besides the core


@dataclass(frozen=True)
class Requirement:
    text: str  # as pip takes it: 'timm>=0.9.2'
    name: str  # the canonical distribution name: 'timm'
    extra: str | None = None  # the optional-dependencies group, None for the core

    @property
    def module(self) -> str:
        return MODULES.get(self.name, self.name.replace("-", "_"))

    @property
    def floor(self) -> str | None:
        match = re.search(r">=\s*([0-9][0-9.]*)", self.text)
        return match.group(1) if match else None

    @property
    def optional(self) -> bool:
        return self.extra in OPTIONAL


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def parse(text: str, extra: str | None = None) -> Requirement:
    """'name[x]>=1.0; extra == "weights"' -> its pip text (without the marker), name and extra."""
    spec, _, marker = text.partition(";")
    found = re.search(r"""extra\s*==\s*["']([^"']+)["']""", marker)
    name = re.match(r"\s*([A-Za-z0-9_.-]+)", spec).group(1)
    return Requirement(spec.strip(), canonical(name), found.group(1) if found else extra)


def read_toml(path: Path) -> dict:
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10: pip's own copy of tomli reads the same
        from pip._vendor import tomli as tomllib
    with open(path, "rb") as fh:
        return tomllib.load(fh)


def all_requirements() -> list[Requirement]:
    """Every requirement, the core's and each extra's, from pyproject.toml or the installed metadata."""
    if PYPROJECT.is_file():
        project = read_toml(PYPROJECT)["project"]
        out = [parse(text) for text in project["dependencies"]]
        return out + [parse(text, extra) for extra, texts in project.get("optional-dependencies", {}).items()
                      for text in texts]
    return [parse(text) for text in importlib.metadata.requires(DIST) or []]


def requirements(extras=DEFAULT_EXTRAS) -> list[Requirement]:
    """The core's requirements and those of the given extras."""
    return [req for req in all_requirements() if req.extra is None or req.extra in extras]


def extras() -> list[str]:
    return sorted({req.extra for req in all_requirements() if req.extra})
