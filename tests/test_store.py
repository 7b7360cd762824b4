"""Artifacts written atomically and durably (lib/store.py)."""
from pipeline.lib import store


def test_an_artifact_is_flushed_before_its_name_and_its_folder_after(tmp_path, monkeypatch):
    """After a power cut a record names either the old file or the whole new one, never an empty one."""
    flushed = []
    monkeypatch.setattr(store, "fsync", lambda path: flushed.append((str(path), (tmp_path / "r.json").exists())))
    store.write_json(tmp_path / "r.json", {"a": 1})
    (temporary, renamed_yet), (folder, renamed_then) = flushed
    assert temporary.startswith(str(tmp_path / ".r.json.")) and not renamed_yet
    assert folder == str(tmp_path) and renamed_then
    assert [p.name for p in tmp_path.iterdir()] == ["r.json"]


def test_a_failed_write_leaves_the_old_artifact(tmp_path):
    store.write_text(tmp_path / "a.txt", "old")
    try:
        with store.atomic_path(tmp_path / "a.txt") as tmp:
            tmp.write_text("half")
            raise OSError(28, "No space left on device")
    except OSError:
        pass
    assert (tmp_path / "a.txt").read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["a.txt"]
