"""experiments/report.html: the leaderboard as one self-contained page (pictures embedded as data URIs, a
few lines of inline script to sort by any column, nothing fetched from the network), then each experiment's
training curves, threshold curve, score per coverage class and worst out-of-fold images."""
from __future__ import annotations

import base64
import html
from pathlib import Path

import pandas as pd

STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.5em; color: #222; }
table { border-collapse: collapse; font-size: 13px; }
th, td { border: 1px solid #ccc; padding: 3px 7px; text-align: left; vertical-align: top; }
th { background: #eef; cursor: pointer; user-select: none; }
th.sorted-asc::after { content: " \\25B2"; } th.sorted-desc::after { content: " \\25BC"; }
tr:nth-child(even) td { background: #fafafa; }
section { margin-top: 2.5em; border-top: 2px solid #99c; }
img { max-width: 100%; margin: 4px 0; border: 1px solid #ddd; }
.problem { color: #a00; }
"""
# sorts the table by the clicked column: numbers as numbers, empty cells last
SCRIPT = """
document.querySelectorAll('#board th').forEach(function (th, col) {
  th.addEventListener('click', function () {
    var body = document.querySelector('#board tbody'), rows = Array.from(body.rows);
    var asc = !th.classList.contains('sorted-asc');
    document.querySelectorAll('#board th').forEach(function (h) { h.className = ''; });
    th.className = asc ? 'sorted-asc' : 'sorted-desc';
    rows.sort(function (a, b) {
      var x = a.cells[col].textContent, y = b.cells[col].textContent;
      if (x === '' || y === '') { return (x === '') - (y === ''); }
      var nx = parseFloat(x), ny = parseFloat(y);
      var order = (!isNaN(nx) && !isNaN(ny)) ? nx - ny : x.localeCompare(y);
      return asc ? order : -order;
    });
    rows.forEach(function (r) { body.appendChild(r); });
  });
});
"""


def markdown_table(frame: pd.DataFrame, code: tuple[str, ...] = ()) -> str:
    """A GitHub table (pandas' to_markdown would need tabulate); empty cells blank, `code` columns in backticks."""
    cells = frame.astype(object).where(frame.notna(), "")
    lines = ["| " + " | ".join(frame.columns) + " |", "|" + "---|" * len(frame.columns)]
    lines += ["| " + " | ".join(f"`{v}`" if c in code else str(v).replace("|", "\\|") for c, v in zip(frame.columns, row))
              + " |" for row in cells.itertuples(index=False)]
    return "\n".join(lines) + "\n"


def embedded(png: Path) -> str:
    data = base64.b64encode(png.read_bytes()).decode()
    return f'<img alt="{html.escape(png.name)}" src="data:image/png;base64,{data}">'


def board_table(frame: pd.DataFrame) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in frame.columns)
    cells = frame.astype(object).where(frame.notna(), "")
    rows = "".join("<tr>" + "".join(f"<td>{_link(c, v)}</td>" for c, v in zip(frame.columns, row)) + "</tr>"
                   for row in cells.itertuples(index=False))
    return f'<table id="board"><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>'


def _link(column: str, value) -> str:
    text = html.escape(str(value))
    return f'<a href="#exp-{text}">{text}</a>' if column == "experiment" else text


def experiment_section(name: str, root: Path, state: str) -> str:
    pictures = [*sorted(root.glob("fold_*/curves.png")), root / "threshold_curve.png", root / "coverage_scores.png",
                root / "val_overlays.png"]
    shown = "".join(f"<h4>{html.escape(p.relative_to(root).as_posix())}</h4>{embedded(p)}" for p in pictures
                    if p.is_file())
    note = "" if state == "up to date" else f'<p class="problem">{html.escape(state)}</p>'
    return (f'<section id="exp-{html.escape(name)}"><h2>{html.escape(name)}</h2>{note}'
            f'{shown or "<p>no pictures yet (train, predict and tune it first)</p>"}</section>')


def page(frame: pd.DataFrame, sections: list[str], title: str) -> str:
    return (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
            f'<style>{STYLE}</style></head><body><h1>{html.escape(title)}</h1>'
            f'<p>Click a column to sort. CV: out-of-fold mAP under the tuned decision; lb: Kaggle scores of the '
            f'latest scored submission.</p>{board_table(frame)}{"".join(sections)}<script>{SCRIPT}</script>'
            f'</body></html>\n')
