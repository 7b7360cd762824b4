"""Putting the 101x101 tiles back into the seismic sections they were cut from, by matching their edges.

How (after Vicens Gaitan's public kernel, as the 1st and 14th places used it): each side of a tile is
described by its edge row and the row one pixel beyond it, extrapolated (2 x edge - the next row in); the
opposite side of its neighbour should show the same two rows in the other order. Every position is
z-scored over all tiles (sections share a brightness profile across a tile), then every descriptor on its
own (tiles were scaled one by one). A pair is a link when each side is the other's nearest neighbour
(brute-force distances by matrix products, a few seconds for 22,000 tiles), the distance is small and
the ratio test 1 - d1/d2 passes. Links are accepted best first into a grid per mosaic (union by size with
offsets), refusing any that would put two tiles in one cell, break a layout, or set side by side two tiles
whose edge rows do not continue (`seam_fits`).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from functools import cached_property

import numpy as np
import pandas as pd

from .errors import PipelineError
from .geometry import SIZE
from .store import write_text

# neighbour direction: (row step, column step) from a tile to the one on that side
SIDES = {"below": (1, 0), "right": (0, 1)}
CHUNK = 2048  # queries per block of the distance matrix (CHUNK x tiles float32: ~180 MB for 22,000 tiles)


@dataclass(frozen=True)
class MatchSettings:
    # a link's distance between unit descriptors (0: the same rows, 1.41: unrelated); on the competition data
    # the median tile's nearest candidate lies at 0.66. At 0.6 (ratio 0.1) 99.3% of the pairs whose two tiles
    # the 14th place also placed are theirs too; looser settings place more tiles than any top team did
    max_distance: float = 0.6
    min_ratio: float = 0.1  # ratio test: 1 - d1/d2 at least this (d2: the second-nearest)
    min_edge_std: float = 2.0  # an edge flatter than this (grey levels) carries no evidence
    version: int = 1  # bump when the matching changes: mosaic.csv files of another version are stale

    def to_dict(self) -> dict:
        return asdict(self)


def side_rows(tiles: np.ndarray, side: str) -> tuple[np.ndarray, np.ndarray]:
    """For each tile, (the first side's descriptor, the second side's) of a pair along `side`: the tile
    itself as the upper (left) one, and as the lower (right) one. Rows are read along the shared edge."""
    t = tiles.transpose(0, 2, 1) if side == "right" else tiles  # a right neighbour: a neighbour below, transposed
    last, before_last, first, second = (t[:, k].astype(np.float32) for k in (-1, -2, 0, 1))
    upper = np.concatenate([2 * last - before_last, last], axis=1)  # what the next tile should start with
    lower = np.concatenate([first, 2 * first - second], axis=1)  # ... and what it says of the one above
    return upper, lower


def standardise(upper: np.ndarray, lower: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Z-score each position over all tiles (both descriptors alike), then each descriptor by itself."""
    both = np.concatenate([upper, lower])
    mean, std = both.mean(0), both.std(0) + 1e-6
    out = []
    for d in (upper, lower):
        d = (d - mean) / std
        d = d - d.mean(1, keepdims=True)
        out.append(d / (np.linalg.norm(d, axis=1, keepdims=True) + 1e-6))
    return out[0], out[1]


@dataclass
class Nearest:
    """For each tile: its nearest match, the distance to it and to the second nearest."""

    index: np.ndarray
    first: np.ndarray
    second: np.ndarray


def top_two(block: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per row of a similarity block: the best column, its value and the second-best value (two passes of
    max: far cheaper than a partial sort of every row)."""
    rows = np.arange(len(block))
    best = block.argmax(1)
    first = block[rows, best].copy()
    saved, block[rows, best] = block[rows, best], -np.inf
    second = block.max(1)
    block[rows, best] = saved
    return best, first, second


def nearest_both(upper: np.ndarray, lower: np.ndarray) -> tuple[Nearest, Nearest]:
    """(for each tile, the tile that fits below it; for each tile, the one that fits above it), from one
    pass over the similarity matrix upper @ lower.T in blocks of rows (both are unit vectors: squared
    distance = 2 - 2 x similarity). A tile is never its own neighbour."""
    n = len(upper)
    down = [np.zeros(n, np.int64), np.zeros(n, np.float32), np.zeros(n, np.float32)]
    up = [np.zeros(n, np.int64), np.full(n, -np.inf, np.float32), np.full(n, -np.inf, np.float32)]
    for start in range(0, n, CHUNK):
        block = upper[start:start + CHUNK] @ lower.T
        rows = np.arange(len(block))
        block[rows, start + rows] = -np.inf
        for part, values in zip(down, top_two(block)):
            part[start:start + len(block)] = values
        best, first, second = top_two(block.T)
        better = first > up[1]
        up[2] = np.where(better, np.maximum(up[1], second), np.maximum(up[2], first))
        up[0] = np.where(better, start + best, up[0])
        up[1] = np.where(better, first, up[1])
    dist = lambda sim: np.sqrt(np.maximum(2 - 2 * sim, 0))
    return Nearest(down[0], dist(down[1]), dist(down[2])), Nearest(up[0], dist(up[1]), dist(up[2]))


def links(tiles: np.ndarray, side: str, settings: MatchSettings) -> pd.DataFrame:
    """Accepted pairs along `side`: (a, b, distance) with b below (or right of) a."""
    upper, lower = side_rows(tiles, side)
    flat = (upper[:, SIZE:].std(1) < settings.min_edge_std) | (lower[:, :SIZE].std(1) < settings.min_edge_std)
    upper, lower = standardise(upper, lower)
    down, up = nearest_both(upper, lower)
    a = np.arange(len(tiles))
    b = down.index
    mutual = up.index[b] == a
    close = down.first < settings.max_distance
    ratio = np.minimum(1 - down.first / (down.second + 1e-9), 1 - up.first[b] / (up.second[b] + 1e-9))
    keep = mutual & close & (ratio >= settings.min_ratio) & ~flat & ~flat[b]
    return pd.DataFrame({"a": a[keep], "b": b[keep], "distance": down.first[keep], "side": side})


def all_links(tiles: np.ndarray, settings: MatchSettings = MatchSettings()) -> pd.DataFrame:
    if tiles.ndim != 3 or tiles.shape[1:] != (SIZE, SIZE):
        raise PipelineError(f"the mosaic needs {SIZE}x{SIZE} tiles, got an array of shape {tiles.shape}")
    return pd.concat([links(tiles, side, settings) for side in SIDES], ignore_index=True)


class Grid:
    """Mosaics under construction: each tile's mosaic and cell; a link merges two mosaics (the smaller
    moved into the larger) unless a cell would hold two tiles or two tiles it brings side by side have
    edges that do not continue (`fits(upper_or_left, other, side)`), and joins a mosaic's own tiles only
    where they already sit that way."""

    def __init__(self, n: int, fits):
        self.fits = fits
        self.owner = np.arange(n)
        self.cell = np.zeros((n, 2), np.int64)
        self.members = {k: [k] for k in range(n)}
        self.cells = {k: {(0, 0): k} for k in range(n)}

    def add(self, a: int, b: int, step: tuple[int, int]) -> bool:
        """Place b at a's cell + step; False (and nothing changes) when that contradicts the layout."""
        ma, mb = self.owner[a], self.owner[b]
        offset = self.cell[a] + step - self.cell[b]  # moves b's mosaic into a's frame
        if ma == mb:
            return not offset.any()
        if len(self.members[ma]) < len(self.members[mb]):
            ma, mb, offset = mb, ma, -offset
        moved = {(r + offset[0], c + offset[1]): t for (r, c), t in self.cells[mb].items()}
        if any(cell in self.cells[ma] for cell in moved) or not self.seams_fit(self.cells[ma], moved):
            return False
        for tile in self.members[mb]:
            self.owner[tile] = ma
            self.cell[tile] += offset
        self.cells[ma].update(moved)
        self.members[ma] += self.members.pop(mb)
        del self.cells[mb]
        return True

    def seams_fit(self, cells: dict, moved: dict) -> bool:
        """Every pair of tiles the merge makes neighbours (one from each side) continues across its edge."""
        for (r, c), tile in moved.items():
            for side, (dr, dc) in SIDES.items():
                before, after = cells.get((r - dr, c - dc)), cells.get((r + dr, c + dc))
                if (before is not None and not self.fits(before, tile, side)) or \
                        (after is not None and not self.fits(tile, after, side)):
                    return False
        return True


def assemble(ids: np.ndarray, found: pd.DataFrame, tiles: np.ndarray) -> pd.DataFrame:
    """The layout (id, mosaic, row, col) of the links `found`, taken best first. Mosaics are numbered by
    size, largest first; rows and columns start at 0 in each; a tile in no mosaic is a mosaic of one."""
    grid = Grid(len(ids), lambda a, b, side: bool(seam_fits(*seams(tiles, np.array([a]), np.array([b]), side))))
    ordered = found.sort_values("distance", kind="stable")
    for a, b, side in zip(ordered["a"], ordered["b"], ordered["side"]):
        grid.add(int(a), int(b), SIDES[side])  # refused links change nothing
    owners = pd.Series(grid.owner)
    sizes = owners.map(owners.value_counts())
    # largest first, ties by the smallest id in them, so the numbering does not depend on the order of ids
    first_id = pd.Series(ids).groupby(owners.to_numpy()).transform("min")
    order = pd.DataFrame({"owner": owners, "size": sizes, "first": first_id}).drop_duplicates("owner")
    order = order.sort_values(["size", "first"], ascending=[False, True])
    number = dict(zip(order["owner"], range(len(order))))
    frame = pd.DataFrame({"id": ids, "mosaic": owners.map(number).to_numpy(),
                          "row": grid.cell[:, 0], "col": grid.cell[:, 1]})
    frame[["row", "col"]] -= frame.groupby("mosaic")[["row", "col"]].transform("min").to_numpy()
    return frame.sort_values(["mosaic", "row", "col"], kind="stable").reset_index(drop=True)


def neighbour_pairs(layout: pd.DataFrame) -> pd.DataFrame:
    """Every pair of tiles the layout puts side by side: (a, b, side) with b below or right of a."""
    cells = layout.set_index(["mosaic", "row", "col"])["id"]
    parts = []
    for side, (dr, dc) in SIDES.items():
        shifted = pd.MultiIndex.from_arrays([layout["mosaic"], layout["row"] + dr, layout["col"] + dc])
        found = cells.reindex(shifted).to_numpy()
        has = pd.notna(found)
        parts.append(pd.DataFrame({"a": layout["id"].to_numpy()[has], "b": found[has].astype(str), "side": side}))
    return pd.concat(parts, ignore_index=True)


def correlation(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    x = x - x.mean(-1, keepdims=True)
    y = y - y.mean(-1, keepdims=True)
    return (x * y).sum(-1) / (np.sqrt((x * x).sum(-1) * (y * y).sum(-1)) + 1e-9)


def seams(tiles: np.ndarray, a: np.ndarray, b: np.ndarray, side: str) -> tuple[np.ndarray, np.ndarray]:
    """(across, within) per pair: the correlation of the two rows that meet at the shared edge, and the
    lower of each tile's own correlation between its edge row and the next one in. A real continuation
    correlates across the seam about as well as inside either tile; two unrelated edges do not (~0)."""
    A, B = tiles[a], tiles[b]
    if side == "right":
        A, B = A.transpose(0, 2, 1), B.transpose(0, 2, 1)
    rows = lambda t, k: t[:, k].astype(np.float32)
    across = correlation(rows(A, -1), rows(B, 0))
    within = np.minimum(correlation(rows(A, -1), rows(A, -2)), correlation(rows(B, 0), rows(B, 1)))
    return across, within


def seams_continue(tiles: np.ndarray, ids: np.ndarray, layout: pd.DataFrame) -> tuple[int, int]:
    """(pairs whose shared edge continues, all neighbour pairs), checked on the pixels (`seam_fits`): across
    the seam the rows correlate at least 0.5, or within 0.2 of how the rows inside the tiles do."""
    index = pd.Series(np.arange(len(ids)), index=ids)
    pairs = neighbour_pairs(layout)
    good = 0
    for side, part in pairs.groupby("side"):
        across, within = seams(tiles, index[part["a"]].to_numpy(), index[part["b"]].to_numpy(), str(side))
        good += int(seam_fits(across, within).sum())
    return good, len(pairs)


def seam_fits(across: np.ndarray, within: np.ndarray) -> np.ndarray:
    return (across >= 0.5) | (across >= within - 0.2)


@dataclass(frozen=True)
class Mosaics:
    """Where every tile lies: `frame` (id, mosaic, row, col), one row per tile."""

    frame: pd.DataFrame

    @cached_property
    def strips(self) -> list[np.ndarray]:
        """Every run of vertically adjacent tiles in a mosaic column, top to bottom, as rows of `frame`."""
        frame = self.frame.assign(position=np.arange(len(self.frame)))
        frame = frame[frame.groupby("mosaic")["id"].transform("size") > 1]
        out = []
        for _, column in frame.sort_values(["mosaic", "col", "row"]).groupby(["mosaic", "col"], sort=False):
            cut = np.flatnonzero(np.diff(column["row"].to_numpy()) != 1) + 1
            out += [part for part in np.split(column["position"].to_numpy(), cut) if len(part) > 1]
        return out

    @property
    def sizes(self) -> pd.Series:
        return self.frame.groupby("mosaic").size()

    def cells(self, mosaic: int) -> pd.DataFrame:
        return self.frame[self.frame["mosaic"] == mosaic]

    def with_neighbour_in(self, ids, among, pairs: pd.DataFrame) -> int:
        """How many of `ids` have a 4-neighbour in `among` (test tiles with a training neighbour); `pairs`:
        the layout's neighbour pairs."""
        ids, among = set(ids), set(among)
        touching = {a for a, b in zip(pairs["a"], pairs["b"]) if b in among} | \
                   {b for a, b in zip(pairs["a"], pairs["b"]) if a in among}
        return len(touching & ids)

    def summary(self, train_ids) -> dict:
        sizes = self.sizes
        placed = sizes[sizes >= 2]
        largest = self.cells(int(sizes.idxmax()))
        pairs = neighbour_pairs(self.frame)
        test_ids = set(self.frame["id"]) - set(train_ids)
        return {"tiles": int(len(self.frame)), "tiles_placed": int(placed.sum()), "mosaics": int(len(placed)),
                "largest": {"tiles": int(len(largest)), "rows": int(largest["row"].max() + 1),
                            "cols": int(largest["col"].max() + 1)},
                "neighbour_pairs": {str(k): int(v) for k, v in pairs["side"].value_counts().items()},
                "test_with_train_neighbour": self.with_neighbour_in(test_ids, train_ids, pairs),
                "test_tiles": len(test_ids)}


def build(ids: np.ndarray, tiles: np.ndarray, settings: MatchSettings = MatchSettings()) -> Mosaics:
    return Mosaics(assemble(np.asarray(ids, str), all_links(tiles, settings), tiles))


def canvas(cells: pd.DataFrame, tile_of, fill, dtype) -> np.ndarray:
    """One mosaic as one array: `tile_of(id)` (an image or mask) at each tile's cell; empty cells hold `fill`."""
    rows, cols = int(cells["row"].max()) + 1, int(cells["col"].max()) + 1
    out = np.full((rows * SIZE, cols * SIZE), fill, dtype)
    for tile, r, c in zip(cells["id"], cells["row"], cells["col"]):
        out[r * SIZE:(r + 1) * SIZE, c * SIZE:(c + 1) * SIZE] = tile_of(tile)
    return out


COLUMNS = ["id", "mosaic", "row", "col"]


def write_mosaics(path, mosaics: Mosaics) -> None:
    write_text(path, mosaics.frame[COLUMNS].to_csv(index=False))


def read_mosaics(path, needed_ids) -> Mosaics:
    """mosaic.csv, checked: its columns, one row per tile, no cell holding two tiles, every needed id."""
    fix = "rebuild it with `python -m pipeline.mosaic --force`"
    try:
        frame = pd.read_csv(path, dtype={"id": str})
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, ValueError) as err:
        raise PipelineError(f"{path} is not a readable CSV ({' '.join(str(err).split())[:100]}); {fix}") from None
    if list(frame.columns) != COLUMNS or not all(pd.api.types.is_integer_dtype(frame[c]) for c in COLUMNS[1:]):
        raise PipelineError(f"{path} needs the integer columns {', '.join(COLUMNS[1:])} after id; {fix}")
    if frame["id"].duplicated().any() or frame.duplicated(COLUMNS[1:]).any():
        raise PipelineError(f"{path} places a tile twice or two tiles in one cell; {fix}")
    missing = set(needed_ids) - set(frame["id"])
    if missing:
        raise PipelineError(f"{path} lacks {len(missing)} tile(s) of this data (first: {sorted(missing)[0]}); "
                            f"it was made from other data: {fix}")
    return Mosaics(frame)


def layers(mosaics: Mosaics, mosaic: int, images: dict, truth: dict, pred: dict | None = None,
           before: dict | None = None) -> dict:
    """Canvases of one mosaic for its picture, from id -> array maps: the images, the training masks (a tile
    without one is a test tile), optionally the predicted masks and those before the neighbour rules."""
    cells = mosaics.cells(mosaic)
    blank = np.zeros((SIZE, SIZE), bool)
    mask_of = lambda masks: canvas(cells, lambda tile: masks.get(tile, blank), False, bool)
    out = {"image": canvas(cells, images.__getitem__, 0, np.uint8), "empty": canvas(cells, lambda t: blank, True, bool),
           "is_test": canvas(cells, lambda tile: np.full((SIZE, SIZE), tile not in truth), False, bool),
           "truth": mask_of(truth)}
    if pred is not None:
        out["pred"] = mask_of(pred)
    if before is not None:
        earlier = mask_of(before)
        out["added"], out["removed"] = out["pred"] & ~earlier, earlier & ~out["pred"]
    return out
