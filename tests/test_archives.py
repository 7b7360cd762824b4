"""Competition data as Kaggle gives it: train.zip / test.zip, nested or not, extracted once, all or nothing."""
import os
import shutil
import subprocess
import sys
import zipfile

import numpy as np
import pytest

from pipeline.lib import cli
from pipeline.lib.archives import unpacked
from pipeline.lib.data import load_test, load_train
from pipeline.lib.demo_data import make_demo
from pipeline.lib.errors import PipelineError
from pipeline.lib.paths import REPO, InputLayout, WorkLayout, manifest_of


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
        out.writestr("images/extra.png", b"not a png")  # an id no CSV lists: never unpacked
    assert unpacked(InputLayout(data), work.unpacked_dir) == first and not (first.test_images / "extra.png").exists()
    listed = next(first.test_images.glob("*.png"))
    with zipfile.ZipFile(data / "test.zip") as old:
        kept = {info.filename: old.read(info) for info in old.infolist()}
    kept[f"images/{listed.name}"] += b"\0"  # a listed image changed
    with zipfile.ZipFile(data / "test.zip", "w") as out:
        for name, body in kept.items():
            out.writestr(name, body)
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


def patch_headers(archive, local: int, central: int, value: int):
    """Set a two-byte field of every member's local header and central directory entry (offsets in each)."""
    raw = bytearray(archive.read_bytes())
    for signature, offset in ((b"PK\x03\x04", local), (b"PK\x01\x02", central)):
        start = raw.find(signature)
        while start >= 0:
            raw[start + offset:start + offset + 2] = value.to_bytes(2, "little")
            start = raw.find(signature, start + 4)
    archive.write_bytes(bytes(raw))


@pytest.mark.parametrize("damage, words", [
    (lambda a: zipfile.ZipFile(a, "a").writestr("images/huge.png", b"\0" * (2 * 2 ** 20)), "is 2 MB, larger than any"),
    (lambda a: patch_headers(a, 6, 8, 1), "is encrypted"),  # the general purpose flag's bit 0
    (lambda a: patch_headers(a, 8, 10, 9), "compressed with method 9, which Python's zipfile cannot read"),
])
def test_a_zip_member_beyond_the_limits_is_one_line_naming_it(tmp_path, damage, words):
    data = zipped_input(tmp_path)
    damage(data / "test.zip")
    work = WorkLayout(tmp_path / "work")
    with pytest.raises(PipelineError, match=rf"test.zip member .*{words}"):
        unpacked(InputLayout(data), work.unpacked_dir)
    assert not work.unpacked_dir.exists() or not any(work.unpacked_dir.glob("test-*"))


def test_a_zip_unpacking_past_the_total_cap_is_refused(tmp_path, monkeypatch):
    monkeypatch.setattr("pipeline.lib.archives.TOTAL", 1000)
    data = zipped_input(tmp_path)
    with pytest.raises(PipelineError, match="train.zip would unpack to more than"):
        unpacked(InputLayout(data), WorkLayout(tmp_path / "work").unpacked_dir)


def test_a_cache_folder_without_its_manifest_is_not_used(tmp_path):
    """A half-filled folder (another process's, or an older version's) is never read as the data."""
    data = zipped_input(tmp_path)
    work = WorkLayout(tmp_path / "work")
    whole = unpacked(InputLayout(data), work.unpacked_dir)
    count = len(list(whole.test_images.iterdir()))
    next(whole.test_images.iterdir()).unlink()
    manifest_of(whole.test_dir).unlink()
    again = unpacked(InputLayout(data), work.unpacked_dir)
    assert again == whole and len(list(again.test_images.iterdir())) == count
    assert sorted(p.name for p in work.unpacked_dir.iterdir()) == sorted([whole.train_dir.name, whole.test_dir.name])


@pytest.mark.slow
def test_two_runs_unpacking_together_leave_every_member(tmp_path):
    """`status` reads without the work folder's lock and unpacks: two at once once left 18 of 20 members."""
    data = tmp_path / "input"
    make_demo(data, n_train=300, n_test=900, seed=4)
    for part in ("train", "test"):
        zip_folder(data / part, data / f"{part}.zip")
        shutil.rmtree(data / part)
    where = ["--input", str(data), "--workdir", str(tmp_path / "work")]
    status = [sys.executable, "-m", "pipeline.status", "--config", "demo.yaml", *where]
    runs = [subprocess.Popen(status, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for _ in range(2)]
    assert all(run.wait(timeout=300) == 0 for run in runs), [run.stderr.read() for run in runs]
    made = subprocess.run([sys.executable, "-m", "pipeline.folds", *where], cwd=REPO, capture_output=True, text=True)
    assert made.returncode == 0, made.stderr
    layout = unpacked(InputLayout(data), WorkLayout(tmp_path / "work").unpacked_dir)
    assert len(list(layout.train_images.glob("*.png"))) == 300 and len(list(layout.test_images.glob("*.png"))) == 900
    assert not list(layout.test_dir.parent.glob("*.partial-*"))


@pytest.mark.parametrize("zipped", [True, False], ids=["beside its zip", "unpacked only"])
def test_a_file_name_that_is_not_utf8_is_one_line(tmp_path, zipped):
    data = zipped_input(tmp_path, keep_folders=True)
    if not zipped:
        (data / "train.zip").unlink()
    os.close(os.open(os.path.join(bytes(data / "train" / "images"), b"\xff\xfe.png"), os.O_CREAT | os.O_WRONLY))
    work = WorkLayout(tmp_path / "work")
    with pytest.raises(PipelineError, match=r"train/images holds a file whose name is not UTF-8 \(b'\\xff\\xfe.png'\)"):
        load_train(unpacked(InputLayout(data), work.unpacked_dir), work)
