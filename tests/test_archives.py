"""Competition data as Kaggle gives it: train.zip / test.zip, nested or not, extracted once, all or nothing."""
import shutil
import zipfile

import numpy as np
import pytest

from pipeline.lib import cli
from pipeline.lib.archives import unpacked
from pipeline.lib.data import load_test, load_train
from pipeline.lib.demo_data import make_demo
from pipeline.lib.errors import PipelineError
from pipeline.lib.paths import InputLayout, WorkLayout


def zip_folder(folder, archive, prefix=""):
    with zipfile.ZipFile(archive, "w") as out:
        for path in sorted(folder.rglob("*.png")):
            out.write(path, prefix + path.relative_to(folder).as_posix())


def zipped_input(tmp_path, prefix=False, keep_folders=False):
    """Demo data whose image folders come as train.zip and test.zip (folders inside them with `prefix`)."""
    data = tmp_path / "input"
    make_demo(data, n_train=20, n_test=8, seed=4)
    for part in ("train", "test"):
        zip_folder(data / part, data / f"{part}.zip", f"{part}/" if prefix else "")
        if not keep_folders:
            shutil.rmtree(data / part)
    return data


@pytest.mark.parametrize("prefix", [False, True], ids=["top", "nested"])
def test_zips_read_as_the_unpacked_folders(tmp_path, prefix):
    plain = tmp_path / "plain"
    make_demo(plain, n_train=20, n_test=8, seed=4)
    data = zipped_input(tmp_path, prefix)
    work = WorkLayout(tmp_path / "work")
    layout = unpacked(InputLayout(data), work.unpacked_dir)
    assert layout.train_images.parent.parent == work.unpacked_dir
    ours, theirs = load_train(layout, work), load_train(InputLayout(plain))
    assert ours.digest == theirs.digest  # the data's identity is its pixels, not its files
    assert load_test(layout, work).digest == load_test(InputLayout(plain)).digest


def test_a_zip_is_extracted_once_and_again_when_it_changes(tmp_path, capsys):
    data = zipped_input(tmp_path)
    work = WorkLayout(tmp_path / "work")
    first = unpacked(InputLayout(data), work.unpacked_dir)
    assert capsys.readouterr().out.count("extracting") == 2
    assert unpacked(InputLayout(data), work.unpacked_dir) == first and "extracting" not in capsys.readouterr().out
    with zipfile.ZipFile(data / "test.zip", "a") as out:
        out.writestr("images/extra.png", b"not a png")
    again = unpacked(InputLayout(data), work.unpacked_dir)
    assert again.test_dir != first.test_dir and again.train_dir == first.train_dir
    assert sorted(p.name for p in work.unpacked_dir.iterdir()) == sorted([again.train_dir.name, again.test_dir.name])


def test_a_truncated_zip_is_one_line_and_leaves_nothing(tmp_path):
    data = zipped_input(tmp_path)
    raw = (data / "train.zip").read_bytes()
    (data / "train.zip").write_bytes(raw[: len(raw) // 2])
    work = WorkLayout(tmp_path / "work")
    with pytest.raises(PipelineError, match=r"train.zip is not a readable zip .*re-download it"):
        unpacked(InputLayout(data), work.unpacked_dir)
    assert not work.unpacked_dir.exists() or not any(work.unpacked_dir.glob("train-*"))


def test_a_damaged_member_leaves_nothing_half_extracted(tmp_path):
    data = zipped_input(tmp_path)
    raw = bytearray((data / "train.zip").read_bytes())
    with zipfile.ZipFile(data / "train.zip") as opened:
        info = opened.infolist()[3]
    start = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra)
    raw[start + 5] ^= 0xFF  # the member's bytes, not the directory: only a read finds it
    (data / "train.zip").write_bytes(bytes(raw))
    work = WorkLayout(tmp_path / "work")
    with pytest.raises(PipelineError, match=r"train.zip is damaged .*re-download it"):
        unpacked(InputLayout(data), work.unpacked_dir)
    assert not any(work.unpacked_dir.glob("train-*"))


@pytest.mark.parametrize("part, member, lacking", [("test", "pictures/a.png", "images"), ("train", "images/a.png", "masks")])
def test_a_zip_lacking_a_folder_is_one_line(tmp_path, part, member, lacking):
    data = zipped_input(tmp_path)
    with zipfile.ZipFile(data / f"{part}.zip", "w") as out:
        out.writestr(member, b"x")
    with pytest.raises(PipelineError, match=rf"{part}.zip holds no {lacking}/\*.png .*not the competition's {part}.zip"):
        unpacked(InputLayout(data), tmp_path / "cache")


def test_zips_beside_matching_folders_use_the_folders(tmp_path):
    data = zipped_input(tmp_path, keep_folders=True)
    layout = unpacked(InputLayout(data), tmp_path / "cache")
    assert layout.train_dir == data / "train" and layout.test_dir == data / "test"


def test_zips_that_disagree_with_the_folders_beside_them_are_one_line(tmp_path):
    data = zipped_input(tmp_path, keep_folders=True)
    image = sorted((data / "train" / "images").iterdir())[0]
    pixels = np.frombuffer(image.read_bytes(), np.uint8).copy()
    image.write_bytes(bytes(pixels[:-1]) + b"\0")
    with pytest.raises(PipelineError, match=rf"train.zip and .*train/ hold different files \(1, first: images/{image.name}\)"):
        unpacked(InputLayout(data), tmp_path / "cache")
    (data / "test" / "images" / "gone.png").write_bytes(b"x")
    with pytest.raises(PipelineError, match="hold different files"):
        unpacked(InputLayout(data), tmp_path / "cache2")


def test_the_stages_read_zipped_input_and_never_write_it(tmp_path):
    data = zipped_input(tmp_path)
    before = {p: p.stat().st_mtime_ns for p in data.rglob("*")}
    layout, work = cli.layouts(cli.parser("x").parse_args(["--input", str(data), "--workdir", str(tmp_path / "w")]),
                               lock=False)
    assert len(load_train(layout, work).ids) == 20 and len(load_test(layout, work).ids) == 8
    assert {p: p.stat().st_mtime_ns for p in data.rglob("*")} == before


def download_zip(tmp_path, folder="input"):
    """What `kaggle competitions download -c tgs-salt-identification-challenge` saves: one zip holding the
    CSVs, train.zip and test.zip; alone in the input folder."""
    data = zipped_input(tmp_path)
    inbox = tmp_path / folder / "download"
    inbox.mkdir(parents=True)
    with zipfile.ZipFile(InputLayout(inbox).competition_zip, "w") as out:
        for path in sorted(data.iterdir()):
            out.write(path, path.name)
    return inbox


def test_the_competition_download_zip_reads_as_the_unpacked_folders(tmp_path, capsys):
    plain = tmp_path / "plain"
    make_demo(plain, n_train=20, n_test=8, seed=4)
    inbox = download_zip(tmp_path)
    work = WorkLayout(tmp_path / "work")
    layout = unpacked(InputLayout(inbox), work.unpacked_dir)
    assert load_train(layout, work).digest == load_train(InputLayout(plain)).digest
    assert load_test(layout, work).digest == load_test(InputLayout(plain)).digest
    assert layout.sample_submission_csv.is_file() and sorted(p.name for p in inbox.iterdir()) == [
        "tgs-salt-identification-challenge.zip"]  # the input folder is only read
    assert capsys.readouterr().out.count("extracting") == 3
    assert unpacked(InputLayout(inbox), work.unpacked_dir) == layout and "extracting" not in capsys.readouterr().out


def test_run_takes_a_folder_holding_the_download_zip_for_data(tmp_path):
    from pipeline import run
    assert run.has_data(download_zip(tmp_path)) and not run.has_data(tmp_path / "empty")


def test_a_download_zip_without_the_competition_files_is_one_line(tmp_path):
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    with zipfile.ZipFile(InputLayout(inbox).competition_zip, "w") as out:
        out.writestr("readme.txt", "hello")
    with pytest.raises(PipelineError, match="holds no train.csv and train.zip; it is not the competition's download"):
        unpacked(InputLayout(inbox), WorkLayout(tmp_path / "work").unpacked_dir)
