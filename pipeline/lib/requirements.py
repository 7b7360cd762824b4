"""requirements.txt as data (standard library only: read before anything is installed)."""
from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
REQUIREMENTS = REPO / "requirements.txt"


def parse_requirements(path: Path) -> list[tuple[str, str, bool]]:
    """(pip requirement, import name, optional) for each line `requirement  # module [optional]`."""
    out = []
    for line in path.read_text().splitlines():
        requirement, _, comment = line.partition("#")
        if requirement.strip():
            words = comment.split()
            out.append((requirement.strip(), words[0], "optional" in words[1:]))
    return out
