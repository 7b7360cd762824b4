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


def library_graph() -> dict[str, set[str]]:
    """Each library module and the library modules it imports, at the top or inside a function."""
    return {path.stem: {name.split(".")[1] for name in imported(path) if name.count(".") >= 1} - {path.stem}
            for path in LIBRARY}


def test_the_library_has_no_import_cycle():
    graph, done, path = library_graph(), set(), []

    def visit(module):
        assert module not in path, "import cycle: " + " -> ".join(path[path.index(module):] + [module])
        if module in done:
            return
        path.append(module)
        for other in sorted(graph.get(module, ())):
            visit(other)
        path.pop()
        done.add(module)

    for module in sorted(graph):
        visit(module)


# the names of files and folders the pipeline writes: spelled in paths.py alone
FILE_NAMES = ("done.json", "tune.json", "predict.json", "submit.json", "last.pt", "best.pt", "log.csv",
              "oof_probs.npz", "test_probs.npz", "config.yaml")
FOLDER_NAMES = ("experiments", "submissions")


def code_strings(tree) -> list[ast.Constant]:
    """The strings a module's code holds (f-strings' fixed parts too), less docstrings and argparse help."""
    skip = {id(node.body[0].value) for node in ast.walk(tree) if isinstance(
        node, (ast.Module, ast.FunctionDef, ast.ClassDef)) and node.body and isinstance(node.body[0], ast.Expr)}
    skip |= {id(kw.value) for node in ast.walk(tree) if isinstance(node, ast.Call) for kw in node.keywords
             if kw.arg == "help"}
    skip |= {id(part) for node in ast.walk(tree) if id(node) in skip and isinstance(node, ast.JoinedStr)
             for part in node.values}
    return [node for node in ast.walk(tree) if isinstance(node, ast.Constant)
            and isinstance(node.value, str) and id(node) not in skip]


def hand_built_names(path) -> list[str]:
    """File names in a module's code (`"fold_*/done.json"`), and folder names used as path parts (`root /
    "experiments"`, `f"{root}/submissions/"`; a dictionary key of the same spelling is no path)."""
    tree = ast.parse(path.read_text())
    path_parts = {id(side) for node in ast.walk(tree) if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div)
                  for side in (node.left, node.right)}
    found = []
    for node in code_strings(tree):
        text = node.value
        if any(re.search(rf"(^|[/*])\.?{re.escape(name)}($|/)", text) for name in FILE_NAMES) or any(
                re.search(rf"/{name}(/|$)|^{name}/", text) or (text == name and id(node) in path_parts)
                for name in FOLDER_NAMES):
            found.append(text)
    return found


@pytest.mark.parametrize("module", sorted((REPO / "pipeline").rglob("*.py")),
                         ids=lambda p: p.relative_to(REPO / "pipeline").as_posix())
def test_file_names_are_spelled_in_paths_only(module):
    if module.name == "paths.py":
        return
    spelled = hand_built_names(module)
    assert not spelled, f"{module.name} builds file names by hand: {spelled}; ask lib/paths.py"


def test_the_file_name_check_sees_what_it_should(tmp_path):
    sample = tmp_path / "sample.py"
    sample.write_text('"""done.json in a docstring is fine"""\nimport argparse\n'
                      'argparse.ArgumentParser().add_argument("--x", help="resumes from last.pt")\n'
                      'a = root / "experiments" / name / "tune.json"\nb = root.glob("fold_*/done.json")\n'
                      'c = f"{root}/submissions/{name}.csv"\nd = "the tune.json of an experiment"\n'
                      'e = record.get("submissions", [])\n')
    assert sorted(hand_built_names(sample)) == ["/submissions/", "experiments", "fold_*/done.json", "tune.json"]
