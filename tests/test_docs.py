"""The front page and the docs stay true to the code: every command they show exists and takes the flags
written beside it, every link leads somewhere, the module table names exactly the modules in the tree, and
the README stays a front page."""
import contextlib
import importlib
import io
import re

import pytest

from pipeline.lib.config import load_config
from pipeline.lib.paths import REPO

PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
COMMAND = re.compile(r"python -m pipeline\.([a-z_]+)\b([^`\n|]*)")
RUN_SH = re.compile(r"bash run\.sh([^`\n|#]*)")


def commands() -> list[tuple[str, str, str]]:
    """(page, module, what follows the module name) for every `python -m pipeline.X ...` and `bash run.sh ...`."""
    found = []
    for page in PAGES:
        text = page.read_text()
        found += [(page.name, module, rest) for module, rest in COMMAND.findall(text)]
        found += [(page.name, "run", rest) for rest in RUN_SH.findall(text)]
    return found


def flags(rest: str) -> list[str]:
    """The --flags written after a command, up to a bare `--` (overrides follow it) or a comment."""
    words = re.split(r"#|&&|;| then ", rest)[0].split()
    words = words[:words.index("--")] if "--" in words else words
    return sorted({re.sub(r"[\[\]=,.;:)]+.*$", "", w.lstrip("[")) for w in words if w.lstrip("[").startswith("--")})


def help_text(module: str) -> str:
    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit):
        main = importlib.import_module(f"pipeline.{module}").main
        main(["--help"])
    return out.getvalue()


HELP = {}


@pytest.mark.parametrize("page, module, rest", commands(), ids=lambda v: v if len(v) < 40 else v[:40])
def test_every_command_in_the_docs_exists_and_takes_its_flags(page, module, rest):
    assert (REPO / "pipeline" / f"{module}.py").is_file(), f"{page}: pipeline.{module} is no module"
    text = HELP.setdefault(module, help_text(module))
    unknown = [flag for flag in flags(rest) if flag not in text]
    assert not unknown, f"{page}: `python -m pipeline.{module}` has no {unknown}"


def test_the_readme_is_a_front_page():
    assert len((REPO / "README.md").read_text().splitlines()) <= 150


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_link_leads_to_a_file(page):
    targets = re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", page.read_text())
    missing = [t for t in targets if not t.startswith("http") and not (page.parent / t).exists()]
    assert not missing, f"{page.name} links to {missing}"


def test_the_module_table_names_exactly_the_modules_in_the_tree():
    text = (REPO / "docs" / "development.md").read_text()
    table = "\n".join(line for line in text.splitlines() if line.startswith("| `"))
    named = set(re.findall(r"`lib/(\w+)\.py`", table))
    named |= {f"stage.{m}" for m in re.findall(r"`(?:pipeline/)?(\w+)\.py`", table)}
    tree = {p.stem for p in (REPO / "pipeline" / "lib").glob("*.py") if p.stem != "__init__"}
    tree |= {f"stage.{p.stem}" for p in (REPO / "pipeline").glob("*.py") if p.stem != "__init__"}
    assert not tree - named, f"docs/development.md's module table lacks {sorted(tree - named)}"
    assert not named - tree - {"stage.pyproject"}, f"it names modules that are gone: {sorted(named - tree)}"


def test_the_readme_config_example_loads(tmp_path):
    block = re.search(r"```yaml\n(.*?)```", (REPO / "README.md").read_text(), re.S).group(1)
    path = tmp_path / "my.yaml"
    path.write_text(block)
    config = load_config(path)
    assert config.name == "my" and config.train.epochs == 20
