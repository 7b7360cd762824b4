from pathlib import Path

import pandas as pd
import pytest

from pipeline.ablate import markdown, summarize
from pipeline.lib.paths import WorkLayout


def test_summary_compares_each_experiment_with_the_first(tmp_path):
    work = WorkLayout(tmp_path)
    for name, scores in {"base": [0.5, 0.6], "scse": [0.55, 0.65, 0.62]}.items():
        path = work.experiment(name).log_csv(0)
        path.parent.mkdir(parents=True)
        pd.DataFrame({"epoch": range(len(scores)), "score_best": scores, "seconds": 30.0}).to_csv(path, index=False)
    table = summarize(work, [Path("c/base.yaml"), Path("c/scse.yaml"), Path("c/untrained.yaml")], [0],
                      {"base": {"tuned_mAP": 0.7, "lost_empty": 0.05, "lost_under_10%": 0.15, "lost_10%_up": 0.1},
                       "scse": {"tuned_mAP": 0.72, "lost_empty": 0.05, "lost_under_10%": 0.13, "lost_10%_up": 0.1}})
    assert table["experiment"].tolist() == ["base", "scse"]
    assert table["vs_first"].tolist() == [0.0, 0.02] and table["minutes"].tolist() == [1.0, 1.5]
    assert table["train_val_mAP"].tolist() == [0.6, 0.65]
    text = markdown(table)
    assert text.splitlines()[0].startswith("| experiment | tuned_mAP | vs_first | lost_empty | lost_under_10% |")
    assert table["lost_under_10%"].tolist() == [0.15, 0.13]
    assert "`python -m pipeline.train --config c/scse.yaml --fold 0`" in text


@pytest.mark.slow
def test_ablate_trains_scores_and_writes_the_table(demo_input, tmp_path):
    from pipeline import ablate, folds
    from pipeline.lib.paths import CONFIG_DIR
    folds.main(["--input", str(demo_input), "--workdir", str(tmp_path), "--n-folds", "3"])
    tiny = tmp_path / "tiny.yaml"
    tiny.write_text(f"base: {CONFIG_DIR / 'demo.yaml'}\nmodel:\n  decoder_channels: [16, 16, 8, 8, 8]\n"
                    "  empty_head: true\ntrain:\n  epochs: 1\n  batch_size: 8\n")
    ablate.main([str(tiny), "--fold", "0,2", "--input", str(demo_input), "--workdir", str(tmp_path)])
    text = (tmp_path / "experiments" / "ablations.md").read_text()
    header, row = text.splitlines()[0].split(" | "), text.splitlines()[2].split(" | ")
    assert row[0] == "| tiny" and 0 <= float(row[1]) <= 1
    lost = [float(row[header.index(f"lost_{group}")]) for group in ("empty", "under_10%", "10%_up")]
    assert all(value >= 0 for value in lost) and sum(lost) == pytest.approx(1 - float(row[1]), abs=2e-4)
    assert "--fold 0,2`" in row[-1]
    assert not WorkLayout(tmp_path).experiment("tiny").fold_dir(1).exists()  # only the folds asked for


def test_summary_needs_every_fold_and_averages_them(tmp_path):
    work = WorkLayout(tmp_path)
    for fold, scores in {0: [0.5, 0.6], 1: [0.7, 0.8]}.items():
        path = work.experiment("base").log_csv(fold)
        path.parent.mkdir(parents=True)
        pd.DataFrame({"score_best": scores, "seconds": 60.0}).to_csv(path, index=False)
    table = summarize(work, [Path("base.yaml")], [0, 1], {"base": {"tuned_mAP": 0.75}}, "all")
    assert table["train_val_mAP"].tolist() == [0.7] and table["minutes"].tolist() == [4.0]
    assert table["command"].iloc[0].endswith("--fold all")
    assert summarize(work, [Path("base.yaml")], [0, 1, 2]).empty


def test_configs_on_different_splits_are_refused(tmp_path):
    from pipeline import ablate
    from pipeline.lib.errors import PipelineError
    from pipeline.lib.paths import CONFIG_DIR
    other = tmp_path / "five.yaml"
    other.write_text(f"base: {CONFIG_DIR / 'demo.yaml'}\ndata:\n  n_folds: 5\n")
    with pytest.raises(PipelineError, match=r"one split, but their data.n_folds / data.split differ \(3 by coverage, 5 by coverage\)"):
        ablate.main([str(CONFIG_DIR / "demo.yaml"), str(other), "--workdir", str(tmp_path)])
