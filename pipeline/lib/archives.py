"""Competition data as Kaggle gives it: its one download zip, train.zip / test.zip beside the CSVs, or the
unpacked folders.

`tgs-salt-identification-challenge.zip` (what `kaggle competitions download -c ...` saves), alone in the
input folder, has its CSVs and inner zips (or image folders) extracted once into the cache like the inner
zips below, and the data is read from there.

A zip holds `images/` (and for train `masks/`) at its top or one folder down (`train/images/...`). It is
checked and extracted once into the work folder's cache (`cache/input/<part>-<content digest>/`), named by
its content (each member's name, size and CRC from the zip's directory), so an unchanged zip is reused and a
changed one is extracted anew; the input folder is never written. Extraction goes to a `.partial` folder
renamed into place when every member has been read and CRC-checked: nothing half-extracted is ever used.
When the unpacked folder lies beside its zip, the two must hold the same files (checked once per content).
The data's identity is its pixels (lib/data.py), whichever form it came in.
"""
from __future__ import annotations

import hashlib
import os
import re
import shutil
import zipfile
import zlib
from dataclasses import replace
from pathlib import Path

from .errors import PipelineError
from .paths import InputLayout

FOLDERS = {"train": ("images", "masks"), "test": ("images",)}  # what each archive must hold
OUTER = re.compile(r"^(?:[^/]+/)?(?P<key>(?:train|depths|sample_submission)\.csv|(?:train|test)\.zip|"
                   r"(?:train|test)/(?:images|masks)/[^/]+\.png)$")  # what is taken from the download zip
MEMBER = re.compile(r"^(?:(?P<prefix>[^/]+)/)?(?P<folder>images|masks)/(?P<name>[^/]+\.png)$")
REDOWNLOAD = "re-download it (kaggle competitions download -c tgs-salt-identification-challenge)"


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
            roots[f"{part}_root"] = extract(archive, members, cache / f"{part}-{content}")
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
    return InputLayout(extract(archive, members, cache / f"competition-{content_digest(members)}"))


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
    lacking = [f for f in folders if not any(key.startswith(f + "/") for key in members)]
    if lacking:
        raise PipelineError(f"{archive} holds no {lacking[0]}/*.png (at its top or one folder down); it is not "
                            f"the competition's {archive.name}: {REDOWNLOAD}")
    if len(prefixes) > 1:
        raise PipelineError(f"{archive} holds images in several folders ({', '.join(sorted(map(str, prefixes)))}); "
                            f"{REDOWNLOAD}")
    return members, content_digest(members)


def extract(archive: Path, members: dict[str, zipfile.ZipInfo], target: Path) -> Path:
    """`members` of `archive` under `target` (reused when already there), all or nothing."""
    if target.is_dir():
        return target
    partial = target.with_name(target.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)  # a killed extraction's leftovers
    print(f"extracting {archive} ({len(members)} files) into {target.parent}", flush=True)
    try:
        with zipfile.ZipFile(archive) as opened:
            for key, info in members.items():
                out = partial / key
                out.parent.mkdir(parents=True, exist_ok=True)
                out.write_bytes(opened.read(info))  # checks the member's CRC
    except (zipfile.BadZipFile, zlib.error, EOFError) as err:
        shutil.rmtree(partial, ignore_errors=True)
        raise PipelineError(f"{archive} is damaged ({err}); {REDOWNLOAD}") from None
    except BaseException:  # a full disk, Ctrl-C: nothing half-extracted stays
        shutil.rmtree(partial, ignore_errors=True)
        raise
    for stale in target.parent.glob(f"{target.name.split('-')[0]}-*"):  # earlier contents of this archive
        if stale.is_dir() and stale != partial:
            shutil.rmtree(stale, ignore_errors=True)
    partial.rename(target)
    return target


def check_agree(archive: Path, members: dict[str, zipfile.ZipInfo], folder: Path, marker: Path) -> None:
    """The unpacked `folder` holds exactly the zip's files, byte for byte (CRC); checked once per content
    of both, remembered by `marker`."""
    on_disk = sorted(f"{sub}/{name}" for sub in ("images", "masks") if (folder / sub).is_dir()
                     for name in os.listdir(folder / sub) if name.endswith(".png"))
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
