"""The benchmark's comparison of CPU prediction precisions on an experiment's trained folds."""
import json

import pytest

from pipeline.lib.errors import PipelineError
from pipeline.lib.paths import CONFIG_DIR


def test_precisions_are_compared_on_the_trained_folds(demo_input, tmp_path):
    from pipeline import bench, folds, train
    folds.main(["--input", str(demo_input), "--workdir", str(tmp_path), "--n-folds", "2"])
    tiny = tmp_path / "tiny.yaml"
    tiny.write_text(f"base: {CONFIG_DIR / 'demo.yaml'}\ndata:\n  n_folds: 2\n"
                    "model:\n  decoder_channels: [16, 16, 8, 8, 8]\n  empty_head: true\n"
                    "train:\n  epochs: 1\n  batch_size: 8\n")
    where = ["--input", str(demo_input), "--workdir", str(tmp_path)]
    out = tmp_path / "bench.json"
    train.main(["--config", str(tiny), "--fold", "0", *where])
    with pytest.raises(PipelineError, match="fold 1 of 'tiny' is not trained"):
        bench.main(["--trained", str(tiny), "--out", str(out), *where])
    train.main(["--config", str(tiny), "--fold", "1", *where])
    bench.main(["--trained", str(tiny), "--out", str(out), *where])
    result = json.loads(out.read_text())
    assert result["experiment"] == "tiny"
    for precision in ("float32", "bf16"):
        assert result[precision]["views_per_s"] > 0 and 0 <= result[precision]["cv_tuned_mAP"] <= 1
