"""Stage: every experiment of the work folder side by side, best CV first.

    python -m pipeline.leaderboard [--workdir W] [--input DIR] [--fetch-lb]

Writes experiments/leaderboard.csv, experiments/leaderboard.md and experiments/report.html (one
self-contained page: the table, sortable by any column, then each experiment's curves, threshold curve,
score per coverage class and worst out-of-fold images). Per experiment: CV tuned and at 0.5, fold mean ± std,
the decision, epochs, training minutes, start weights, precision, its state (what `pipeline.status` says:
up to date, or the first stage that is not and why), what it changed against its config file, and its Kaggle
leaderboard score when known: recorded by `submit --kaggle-message`, filled in by `--fetch-lb` (the kaggle
client, online). Ensembles made by `submit --experiments a,b` are rows too. Reads only, besides its outputs.
"""
from __future__ import annotations

import pandas as pd

from .lib import cli, kaggle_api, leaderboard, report
from .lib.data import load_test, load_train
from .lib.errors import PipelineError
from .lib.fold_data import FoldInputs
from .lib.paths import WorkLayout
from .lib.postprocess import stored_decision
from .lib.records import ensemble_states, experiment_states
from .lib.store import read_json, write_json, write_text
from .lib.submission import sample_ids


class StateReader:
    """Each experiment's stage states, from the data loaded once (on first use)."""

    def __init__(self, layout, work: WorkLayout):
        self.layout, self.work, self.data = layout, work, None

    def loaded(self):
        if self.data is None:
            train, test = load_train(self.layout, self.work), load_test(self.layout, self.work)
            self.data = train, test, sample_ids(self.layout)
        return self.data

    def __call__(self, config, exp):
        train, test, ids = self.loaded()
        if config is None:  # an ensemble: its members are named by its record
            identity = read_json(exp.predict_json).get("identity", {})
            members = [self.work.experiment(n) for n in identity.get("members", {})]
            section = leaderboard.config_of(members[0]).tune if members else None
            if section is None:
                raise PipelineError(f"{exp.predict_json} names no member experiments; make it again with submit --experiments")
            return ensemble_states(exp, members, section, stored_decision(exp), ids, self.work.submission_csv(exp.root.name),
                                   self.work.mosaic_json, identity.get("combine", "mean"))
        inputs = FoldInputs.of(train, WorkLayout(self.work.root, config.data.n_folds, config.data.split))
        return experiment_states(config, inputs, test.digest, stored_decision(exp), ids)


def fetch_lb(work: WorkLayout, names: list[str]) -> None:
    """Leaderboard scores of our recorded submissions, every page of Kaggle's list (the kaggle client)."""
    listed = kaggle_api.list_submissions(kaggle_api.client())
    for name in names:
        path = work.experiment(name).kaggle_submissions_json
        if path.is_file():
            record = read_json(path)
            if leaderboard.match_scores(record.get("submissions", []), listed):
                write_json(path, record)


def main(argv=None) -> None:
    p = cli.parser(__doc__.splitlines()[0])
    p.add_argument("--fetch-lb", action="store_true", help="read leaderboard scores from Kaggle (online; the kaggle client)")
    args = p.parse_args(argv)
    layout, work = cli.layouts(args, lock=False)  # reads only (its own outputs are written atomically)
    names = leaderboard.experiment_names(work)
    if args.fetch_lb:
        fetch_lb(work, names)
    items = leaderboard.entries(work, StateReader(layout, work))
    frame = leaderboard.table(items)
    write_text(work.leaderboard_csv, frame.to_csv(index=False))
    write_text(work.leaderboard_md, report.markdown_table(frame))
    sections = [report.experiment_section(item.name, item.exp.root, item.row["state"]) for item in items]
    write_text(work.report_html, report.page(frame, sections, f"TGS salt experiments in {work.root}"))
    with pd.option_context("display.width", 200, "display.max_columns", 8, "display.max_colwidth", 40):
        shown = frame[["experiment", "cv", "cv_at_0.5", "fold_mean", "fold_std", "lb_public", "state"]]
        print(shown.astype(object).where(shown.notna(), "").to_string(index=False))
    print(f"wrote {work.leaderboard_csv}, {work.leaderboard_md.name} and {work.report_html.name}")


if __name__ == "__main__":
    cli.run_stage(main)
