"""The architecture as the layout shows it: stages call the library, never each other; the library never
calls a stage; each constant is defined once."""
import ast
import re

import pytest

from pipeline.lib.paths import REPO

STAGES = sorted(p.stem for p in (REPO / "pipeline").glob("*.py") if p.stem != "__init__")
LIBRARY = sorted((REPO / "pipeline" / "lib").glob("*.py"))


def imported(path) -> set[str]:
    """Names of the pipeline modules a file imports (relative imports resolved to 'stage' or 'lib.x')."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level:
            base = ("lib." if path.parent.name == "lib" else "") if node.level == 1 else ""
            module = base + (node.module or "")
            names.update({module} if node.module else {base + alias.name for alias in node.names})
    return names


@pytest.mark.parametrize("stage", STAGES)
def test_a_stage_imports_no_other_stage(stage):
    uses = imported(REPO / "pipeline" / f"{stage}.py")
    assert not uses & set(STAGES), f"pipeline/{stage}.py imports stage(s) {uses & set(STAGES)}"


@pytest.mark.parametrize("module", LIBRARY, ids=lambda p: p.stem)
def test_the_library_imports_no_stage(module):
    assert all(name.startswith("lib.") for name in imported(module)), imported(module)


def test_the_image_side_is_defined_once():
    defined = [p for p in (REPO / "pipeline").rglob("*.py") if re.search(r"^SIZE\s*=", p.read_text(), re.M)]
    assert [p.relative_to(REPO).as_posix() for p in defined] == ["pipeline/lib/geometry.py"]
