"""The mosaic: tiles back in place from their edges, the file that records it, the split by mosaic."""
import json

import numpy as np
import pandas as pd
import pytest

from pipeline import folds as folds_stage
from pipeline import mosaic as mosaic_stage
from pipeline.lib.errors import PipelineError
from pipeline.lib.folds import make_folds
from pipeline.lib.mosaic import build, neighbour_pairs, read_mosaics, seams_continue
from pipeline.lib.paths import WorkLayout
from pipeline.lib.records import mosaic_made_from
from tests.conftest import SHARED, needs_shared
from tests.sections import cut, section


def shuffled_sections(seed: int = 0):
    """Two sections (4x6 and 3x3 tiles) and 20 tiles of pure noise, shuffled together."""
    rng = np.random.default_rng(seed)
    tiles, places = [], []
    for number, (rows, cols) in enumerate([(4, 6), (3, 3)]):
        part, cells = cut(section(rows, cols, seed + number))
        tiles.append(part)
        places += [(number, r, c) for r, c in cells]
    noise = rng.integers(0, 256, (20, 101, 101), dtype=np.uint8)
    tiles.append(noise)
    places += [(None, 0, 0)] * len(noise)
    order = rng.permutation(len(places))
    ids = np.array([f"t{k:03d}" for k in range(len(places))])
    return ids, np.concatenate(tiles)[order], [places[k] for k in order]


def test_a_cut_and_shuffled_section_is_put_back_exactly():
    ids, tiles, places = shuffled_sections()
    frame = build(ids, tiles).frame.set_index("id")
    for section_number in (0, 1):
        members = [(i, r, c) for i, (s, r, c) in zip(ids, places) if s == section_number]
        mosaic = {frame.loc[i, "mosaic"] for i, _, _ in members}
        assert len(mosaic) == 1, f"section {section_number} split over mosaics {mosaic}"
        assert all((frame.loc[i, "row"], frame.loc[i, "col"]) == (r, c) for i, r, c in members)
    noise = [i for i, (s, _, _) in zip(ids, places) if s is None]
    assert frame.loc[noise].groupby("mosaic").size().max() == 1  # noise stays alone
    assert sorted(frame.groupby("mosaic").size())[-2:] == [9, 24]


def test_no_cell_holds_two_tiles_and_each_side_has_one_neighbour():
    ids, tiles, _ = shuffled_sections(seed=3)
    frame = build(ids, tiles).frame
    assert not frame.duplicated(["mosaic", "row", "col"]).any()
    pairs = neighbour_pairs(frame)
    assert not pairs.duplicated(["a", "side"]).any() and not pairs.duplicated(["b", "side"]).any()
    assert seams_continue(tiles, ids, frame) == (len(pairs), len(pairs))


def test_tiles_of_another_size_are_one_line():
    with pytest.raises(PipelineError, match="101x101 tiles"):
        build(np.array(["a", "b"]), np.zeros((2, 64, 64), np.uint8))


@pytest.mark.parametrize("text, message", [
    ("id,mosaic,row\na,0,0\n", "integer columns"),
    ("id,mosaic,row,col\na,0,0,0\nb,0,0,0\n", "two tiles in one cell"),
    ("id,mosaic,row,col\na,0,0,0\n", "lacks 1 tile"),
    ("", "not a readable CSV"),
])
def test_a_bad_mosaic_file_is_one_line(tmp_path, text, message):
    path = tmp_path / "mosaic.csv"
    path.write_text(text)
    with pytest.raises(PipelineError, match=message):
        read_mosaics(path, ["a", "b"])


def test_the_stage_writes_the_file_and_its_record_and_knows_other_data(demo_input, tmp_path, capsys):
    work = WorkLayout(tmp_path / "work")
    args = ["--input", str(demo_input), "--workdir", str(work.root)]
    mosaic_stage.main(args)
    assert " of 90 tiles" in capsys.readouterr().out
    frame = pd.read_csv(work.mosaic_csv, dtype={"id": str})
    assert list(frame.columns) == ["id", "mosaic", "row", "col"] and len(frame) == 90
    record = json.loads(work.mosaic_json.read_text())
    mosaic_stage.main(args)
    assert "mosaic: up to date" in capsys.readouterr().out
    assert mosaic_made_from(work, record["identity"]["train_data"])
    with pytest.raises(PipelineError, match="made from other training data"):
        mosaic_made_from(work, "0" * 16)


def test_folds_by_mosaic_keep_each_mosaic_in_one_fold(demo_input, tmp_path):
    work = WorkLayout(tmp_path / "work", split="mosaic")
    io = ["--input", str(demo_input), "--workdir", str(work.root)]
    with pytest.raises(PipelineError, match="mosaic.csv is missing"):
        folds_stage.main([*io, "--split", "mosaic"])
    mosaic_stage.main(io)
    mosaics = pd.read_csv(work.mosaic_csv, dtype={"id": str})
    mosaics["mosaic"], mosaics["col"] = np.arange(len(mosaics)) // 4, np.arange(len(mosaics)) % 4  # rows of four
    mosaics.to_csv(work.mosaic_csv, index=False)
    folds_stage.main([*io, "--split", "mosaic"])
    assert work.folds_csv.name == "folds-mosaic.csv" and not WorkLayout(work.root).folds_csv.exists()
    split = pd.read_csv(work.folds_csv, dtype={"id": str}).merge(mosaics, on="id")
    assert split.groupby("mosaic")["fold"].nunique().max() == 1
    assert split["fold"].nunique() == 5


def test_group_folds_stay_stratified_by_coverage():
    rng = np.random.default_rng(0)
    coverage = rng.random(500) * (rng.random(500) > 0.4)
    frame = make_folds([f"{k:04d}" for k in range(500)], coverage, 5, 42, groups=rng.integers(0, 200, 500))
    empty = frame.groupby("fold")["coverage"].apply(lambda c: (c == 0).mean())
    assert empty.max() - empty.min() < 0.1


@needs_shared
@pytest.mark.slow
def test_the_competition_tiles_make_mosaics_like_the_top_teams(tmp_path):
    from pipeline.lib.data import load_test, load_train
    from pipeline.lib.paths import InputLayout
    layout, work = InputLayout(SHARED), WorkLayout(tmp_path)
    train, test = load_train(layout, work), load_test(layout, work)
    ids, tiles = np.concatenate([train.ids, test.ids]), np.concatenate([train.images, test.images])
    mosaics = build(ids, tiles)
    placed = int(mosaics.sizes[mosaics.sizes > 1].sum())
    assert 0.85 * 5235 <= placed <= 1.15 * 6013  # 1st place: 5,235 tiles; 14th: 6,013
    pairs = neighbour_pairs(mosaics.frame)
    assert (pairs["side"] == "below").mean() > 0.3  # top-bottom links are a real share
    good, total = seams_continue(tiles, ids, mosaics.frame)
    assert good == total
