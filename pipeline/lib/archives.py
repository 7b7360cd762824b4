"""Competition data as Kaggle gives it: its one download zip, train.zip / test.zip beside the CSVs, or the
unpacked folders.

`tgs-salt-identification-challenge.zip` (what `kaggle competitions download -c ...` saves), alone in the
input folder, has its CSVs and inner zips (or image folders) extracted once into the cache like the inner
zips below, and the data is read from there.

A zip holds `images/` (and for train `masks/`) at its top or one folder down (`train/images/...`). It is
checked and extracted once into the work folder's cache (`cache/input/<part>-<content digest>/`), named by
its content (each member's name, size and CRC from the zip's directory), so an unchanged zip is reused and a
changed one is extracted anew; the input folder is never written. Only the images the CSVs list are taken.
Each process extracts into a folder of its own, and renames it into place when every member has been read
and CRC-checked, with the list of what it holds (its manifest) written last: the rename is the only step
processes share, and a cache folder is used only when its manifest lists exactly what is wanted, so two
runs unpacking at once, or a killed one, never leave a folder that is used half-filled.
Limits, each one line naming the zip and the member: a member larger than any real file (an image over
1 MB, a CSV over 64 MB, an inner zip over 2 GB), more than 4 GB in all, encryption, or a compression method
Python's zipfile cannot read (Deflate64 among them).
When the unpacked folder lies beside its zip, the two must hold the same files (checked once per content).
The data's identity is its pixels (lib/data.py), whichever form it came in.
"""
from __future__ import annotations

import csv
import hashlib
import os
import re
import shutil
import tempfile
import zipfile
import zlib
from dataclasses import replace
from pathlib import Path

from .errors import PipelineError
from .paths import InputLayout, manifest_of

FOLDERS = {"train": ("images", "masks"), "test": ("images",)}  # what each archive must hold
OUTER = re.compile(r"^(?:[^/]+/)?(?P<key>(?:train|depths|sample_submission)\.csv|(?:train|test)\.zip|"
                   r"(?:train|test)/(?:images|masks)/[^/]+\.png)$")  # what is taken from the download zip
MEMBER = re.compile(r"^(?:(?P<prefix>[^/]+)/)?(?P<folder>images|masks)/(?P<name>[^/]+\.png)$")
REDOWNLOAD = "re-download it (kaggle competitions download -c tgs-salt-identification-challenge)"
MB = 2 ** 20
LARGEST = {".png": MB, ".csv": 64 * MB, ".zip": 2048 * MB}  # far above any real member of each kind
TOTAL = 4096 * MB
READABLE = {zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA}
LISTS = {"train": "train_csv", "test": "sample_submission_csv"}  # the CSV whose ids each part's images are


def unpacked(layout: InputLayout, cache: Path) -> InputLayout:
    """The layout to read images from: each part's folder in the input as it is, or its zip extracted into
    `cache` (checked against the folder when both are there)."""
    layout = from_download(layout, cache)
    roots = {}
    for part, archive in layout.zips.items():
        if not archive.is_file():
            continue
        members, content = read_members(archive, FOLDERS[part])
        folder = layout.root / part
        if folder.is_dir():
            check_agree(archive, members, folder, cache / f"agree-{part}-{content}")
        else:
            wanted = listed(members, getattr(layout, LISTS[part]))
            roots[f"{part}_root"] = extract(archive, wanted, cache / f"{part}-{content_digest(wanted)}")
    return replace(layout, **roots)


def from_download(layout: InputLayout, cache: Path) -> InputLayout:
    """The input as it is, or, when it holds only Kaggle's download zip, that zip's files extracted."""
    archive = layout.competition_zip
    if layout.train_csv.is_file() or not archive.is_file():
        return layout
    infos = zip_listing(archive)
    members = {match["key"]: info for info in infos if (match := OUTER.match(info.filename)) and not info.is_dir()}
    images = "train.zip" in members or any(key.startswith("train/") for key in members)
    if "train.csv" not in members or not images:
        raise PipelineError(f"{archive} holds no train.csv and train.zip; it is not the competition's download: "
                            f"{REDOWNLOAD}")
    return InputLayout(extract(archive, checked(archive, members), cache / f"competition-{content_digest(members)}"))


def zip_listing(archive: Path) -> list[zipfile.ZipInfo]:
    try:
        with zipfile.ZipFile(archive) as opened:
            return opened.infolist()
    except (zipfile.BadZipFile, OSError, EOFError) as err:
        raise PipelineError(f"{archive} is not a readable zip (truncated or damaged: {err}); {REDOWNLOAD}") from None


def content_digest(members: dict[str, zipfile.ZipInfo]) -> str:
    """A zip's content by its directory: each member's name, size and CRC."""
    listing = "".join(f"{key}|{info.file_size}|{info.CRC}\n" for key, info in sorted(members.items()))
    return hashlib.sha1(listing.encode()).hexdigest()[:16]


def read_members(archive: Path, folders: tuple[str, ...]) -> tuple[dict[str, zipfile.ZipInfo], str]:
    """The zip's PNGs as {"images/<id>.png": member}, and a digest of its content; a damaged zip or one
    lacking a folder is one line."""
    members, prefixes = {}, set()
    for info in zip_listing(archive):
        match = MEMBER.match(info.filename)
        if match and not info.is_dir():
            prefixes.add(match["prefix"])
            members[f"{match['folder']}/{match['name']}"] = info
    checked(archive, members)
    lacking = [f for f in folders if not any(key.startswith(f + "/") for key in members)]
    if lacking:
        raise PipelineError(f"{archive} holds no {lacking[0]}/*.png (at its top or one folder down); it is not "
                            f"the competition's {archive.name}: {REDOWNLOAD}")
    if len(prefixes) > 1:
        raise PipelineError(f"{archive} holds images in several folders ({', '.join(sorted(map(str, prefixes)))}); "
                            f"{REDOWNLOAD}")
    return members, content_digest(members)


def checked(archive: Path, members: dict[str, zipfile.ZipInfo]) -> dict[str, zipfile.ZipInfo]:
    """`members`, once none is too large, encrypted or compressed in a way zipfile cannot read."""
    for key, info in members.items():
        where = f"{archive} member {info.filename}"
        if info.file_size > LARGEST[Path(key).suffix]:
            raise PipelineError(f"{where} is {info.file_size / MB:.0f} MB, larger than any file of the competition; "
                                f"{REDOWNLOAD}")
        if info.flag_bits & 0x1:
            raise PipelineError(f"{where} is encrypted; {REDOWNLOAD}")
        if info.compress_type not in READABLE:
            raise PipelineError(f"{where} is compressed with method {info.compress_type}, which Python's zipfile "
                                f"cannot read; unzip it with another tool, or {REDOWNLOAD}")
    if sum(info.file_size for info in members.values()) > TOTAL:
        raise PipelineError(f"{archive} would unpack to more than {TOTAL // MB} MB; {REDOWNLOAD}")
    return members


def listed(members: dict[str, zipfile.ZipInfo], csv_path: Path) -> dict[str, zipfile.ZipInfo]:
    """The members whose id the CSV lists (all of them when the CSV cannot be read: the stages say why)."""
    try:
        with open(csv_path, newline="") as stream:
            ids = {row[0] for row in csv.reader(stream) if row}
    except (OSError, UnicodeDecodeError, csv.Error):
        return members
    return {key: info for key, info in members.items() if key.split("/", 1)[1][:-4] in ids}


def manifest_text(members: dict[str, zipfile.ZipInfo]) -> str:
    return "".join(f"{key}|{info.file_size}|{info.CRC}\n" for key, info in sorted(members.items()))


def complete(folder: Path, manifest: str) -> bool:
    try:
        return manifest_of(folder).read_text() == manifest
    except OSError:
        return False


def extract(archive: Path, members: dict[str, zipfile.ZipInfo], target: Path) -> Path:
    """`members` of `archive` under `target` (reused when its manifest lists them), all or nothing."""
    manifest = manifest_text(members)
    if complete(target, manifest):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    print(f"extracting {archive} ({len(members)} files) into {target.parent}", flush=True)
    own = Path(tempfile.mkdtemp(prefix=f"{target.name}.partial-{os.getpid()}-", dir=target.parent))
    try:
        unpack(archive, members, own)
        manifest_of(own).write_text(manifest)
        swap_in(own, target, manifest)
    finally:  # a failure, a full disk, Ctrl-C, or another process's rename first: this one's folder goes
        shutil.rmtree(own, ignore_errors=True)
    remove_stale(target)
    return target


def unpack(archive: Path, members: dict[str, zipfile.ZipInfo], folder: Path) -> None:
    try:
        with zipfile.ZipFile(archive) as opened:
            for key, info in members.items():
                out = folder / key
                out.parent.mkdir(parents=True, exist_ok=True)
                with opened.open(info) as source, open(out, "wb") as sink:  # streamed; checks the CRC at the end
                    shutil.copyfileobj(source, sink, MB)
    except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError, RuntimeError) as err:
        raise PipelineError(f"{archive} is damaged ({err}); {REDOWNLOAD}") from None


def swap_in(own: Path, target: Path, manifest: str) -> None:
    """Rename `own` to `target`; when another process got there first with the same content, its folder
    stays; an incomplete folder there (an older version's) is replaced."""
    try:
        own.rename(target)
        return
    except OSError:  # `target` exists and is not empty
        if complete(target, manifest):
            return
    aside = target.with_name(f"{target.name}.old-{os.getpid()}")
    target.rename(aside)
    own.rename(target)
    shutil.rmtree(aside, ignore_errors=True)


def remove_stale(target: Path) -> None:
    """Earlier contents of this archive, and folders of extractions whose process is gone."""
    kind = target.name.split("-")[0]
    for other in target.parent.glob(f"{kind}-*"):
        owner = re.search(r"\.(?:partial|old)-(\d+)", other.name)
        if other == target or not other.is_dir() or (owner and alive(int(owner[1]))):
            continue
        shutil.rmtree(other, ignore_errors=True)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


def png_names(folder: Path) -> list[str]:
    """The PNG files' names in `folder`; a name that is not UTF-8 (no competition file's) is one line."""
    names = [name for name in os.listdir(folder) if name.endswith(".png")]
    for name in names:
        try:
            name.encode("utf-8")
        except UnicodeEncodeError:
            raise PipelineError(f"{folder} holds a file whose name is not UTF-8 "
                                f"({name.encode('utf-8', 'surrogateescape')!r}); remove or rename it") from None
    return names


def check_agree(archive: Path, members: dict[str, zipfile.ZipInfo], folder: Path, marker: Path) -> None:
    """The unpacked `folder` holds exactly the zip's files, byte for byte (CRC); checked once per content
    of both, remembered by `marker`."""
    on_disk = sorted(f"{sub}/{name}" for sub in ("images", "masks") if (folder / sub).is_dir()
                     for name in png_names(folder / sub))
    stamp = hashlib.sha1("".join(f"{key}|{(folder / key).stat().st_size}|{(folder / key).stat().st_mtime_ns}\n"
                                 for key in on_disk).encode()).hexdigest()[:16]
    marker = marker.with_name(f"{marker.name}-{stamp}")
    if marker.exists():
        return
    differ = sorted(set(on_disk) ^ set(members))
    differ = differ or [key for key in on_disk if zlib.crc32((folder / key).read_bytes()) != members[key].CRC]
    if differ:
        raise PipelineError(f"{archive} and {folder}/ hold different files ({len(differ)}, first: {differ[0]}); "
                            f"remove one of them, or re-download both")
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.touch()
