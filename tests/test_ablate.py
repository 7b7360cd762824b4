from pathlib import Path

import pandas as pd

from pipeline.ablate import markdown, summarize
from pipeline.paths import WorkLayout


def test_summary_compares_each_experiment_with_the_first(tmp_path):
    work = WorkLayout(tmp_path)
    for name, scores in {"base": [0.5, 0.6], "scse": [0.55, 0.65, 0.62]}.items():
        path = work.experiment(name).log_csv(0)
        path.parent.mkdir(parents=True)
        pd.DataFrame({"epoch": range(len(scores)), "score_best": scores, "seconds": 30.0}).to_csv(path, index=False)
    table = summarize(work, [Path("c/base.yaml"), Path("c/scse.yaml"), Path("c/untrained.yaml")], 0)
    assert table["experiment"].tolist() == ["base", "scse"]
    assert table["vs_first"].tolist() == [0.0, 0.05] and table["minutes"].tolist() == [1.0, 1.5]
    text = markdown(table)
    assert text.splitlines()[0].startswith("| experiment | val_mAP | vs_first")
    assert "`python -m pipeline.train --config c/scse.yaml --fold 0`" in text
