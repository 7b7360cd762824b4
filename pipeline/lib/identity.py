"""What an artifact was made from, so that a stage can tell "up to date" from "stale: <what changed>".

Every artifact records an identity: a small dict of named parts, each either a digest (the training data:
ids, decoded images, masks and depths; the test data; the split's content; an upstream artifact's record)
or a config section as plain data. A stage compares the recorded identity with the one it would make now;
`changes` names every part that differs (for config sections, down to the key and both values).
"""
from __future__ import annotations

import hashlib
import json

import numpy as np

from .compat import ADDED_KEYS

DIGEST_CHARS = 16
# train settings that say how a run executes, not what it learns: a fold may resume under other values
RUNTIME_KEYS = ("amp", "num_workers", "channels_last", "resume_every", "tensorboard", "deterministic", "compile")


def digest(*parts) -> str:
    """A short hex digest of arrays, strings and JSON-able values, in order."""
    h = hashlib.sha1()
    for part in parts:
        if isinstance(part, np.ndarray):
            array = np.ascontiguousarray(part)
            h.update(f"{array.dtype.str}{array.shape}".encode())
            h.update(array.view(np.uint8).reshape(-1) if array.dtype != object else str(array.tolist()).encode())
        elif isinstance(part, bytes):
            h.update(part)
        else:
            h.update(json.dumps(part, sort_keys=True, default=str).encode())
        h.update(b"\x00")
    return h.hexdigest()[:DIGEST_CHARS]


def training_sections(config) -> dict:
    """The config sections a trained fold depends on, less the runtime-only train keys."""
    sections = {name: getattr(config, name).model_dump(mode="json") for name in ("data", "model", "augment", "train")}
    sections["model"].pop("encoder_weights")  # a path is not what it holds: records.fold_identity adds the content
    for key in RUNTIME_KEYS:
        sections["train"].pop(key)
    for name, keys in ADDED_KEYS.items():
        for key, before in keys.items():
            if sections[name][key] == before:
                sections[name].pop(key)
    return sections


def flatten(value, prefix: str = "") -> dict:
    """{"train": {"lr": 1}} -> {"train.lr": 1}; lists and scalars are leaves."""
    if not isinstance(value, dict):
        return {prefix: value}
    out = {}
    for key, inner in value.items():
        out.update(flatten(inner, f"{prefix}.{key}" if prefix else str(key)))
    return out


def changes(recorded: dict, now: dict) -> list[str]:
    """What differs between two identities, in words: "split", "train.lr 0.001 -> 0.01", ..."""
    out = []
    for part in sorted(set(recorded) | set(now)):
        old, new = recorded.get(part), now.get(part)
        if old == new:
            continue
        if isinstance(old, dict) and isinstance(new, dict):
            flat_old, flat_new = flatten(old, part if part != "config" else ""), flatten(new, part if part != "config" else "")
            out += [f"{key} {flat_old.get(key, '(unset)')} -> {flat_new.get(key, '(unset)')}"
                    for key in sorted(set(flat_old) | set(flat_new)) if flat_old.get(key) != flat_new.get(key)]
        else:
            out.append(part.replace("_", " "))
    return out


def describe(changed: list[str], most: int = 3) -> str:
    shown = ", ".join(changed[:most])
    return shown + (f" and {len(changed) - most} more" if len(changed) > most else "")
