"""An ensemble is a config: member configs (shipped names or files, each with its own overrides) whose
probabilities are averaged fold by fold, then tuned and submitted as one experiment named by the file.

    # pipeline/configs/ensembles/cpu-two-seeds.yaml
    ensemble:
      combine: mean                  # or weighted: weights tuned on out-of-fold predictions (lib/blend.py)
      members:
        - config: cpu.yaml
        - config: cpu.yaml
          overrides: [train.seed=1]

`bash run.sh --config ENSEMBLE` trains each member's missing folds and predicts it (each member is an
experiment of its own, reused by any other ensemble or run that names it), then averages them
(`submit --experiments`), tunes the decision and the neighbour rules on the averaged out-of-fold set and
writes one submission. Members on different splits are refused.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .blend import COMBINE
from .config import load_config, read_yaml
from .errors import PipelineError
from .paths import checked_name, config_file


@dataclass(frozen=True)
class Member:
    config: str  # a shipped config's name or a file (relative to the ensemble's file, else as config_file finds it)
    overrides: tuple[str, ...] = ()

    def name(self) -> str:
        return load_config(self.config, list(self.overrides), encoder=False).name


@dataclass(frozen=True)
class Ensemble:
    name: str
    members: tuple[Member, ...]
    combine: str = "mean"

    def member_names(self) -> list[str]:
        return [member.name() for member in self.members]


def is_ensemble(path: str | Path) -> bool:
    """Whether a config file (by name or path) describes an ensemble: its top level holds `ensemble`."""
    found = config_file(path)
    return found.is_file() and "ensemble" in read_yaml(found)


def load_ensemble(path: str | Path) -> Ensemble:
    """The ensemble a file describes, checked: at least two members, each config found and valid, no member
    twice, one split for all; each problem is one line naming the file and the key."""
    found = config_file(path)
    raw = read_yaml(found)
    where = f"ensemble {found}"
    if set(raw) != {"ensemble"} or not isinstance(raw["ensemble"], dict):
        raise PipelineError(f"{where}: the file holds `ensemble:` alone (members, combine); found {sorted(raw)}")
    body = raw["ensemble"]
    unknown = sorted(set(body) - {"members", "combine"})
    if unknown:
        raise PipelineError(f"{where}: ensemble.{unknown[0]} is not a key; valid: members, combine")
    if body.get("combine", "mean") not in COMBINE:
        raise PipelineError(f"{where}: ensemble.combine = {body['combine']!r}; valid: {', '.join(COMBINE)}")
    members = tuple(member_of(item, found, where, n) for n, item in enumerate(body.get("members") or []))
    if len(members) < 2:
        raise PipelineError(f"{where}: ensemble.members lists {len(members)} config(s); an ensemble needs two or more")
    ensemble = Ensemble(checked_name(found.stem, f" (the file name of {found})"), members, body.get("combine", "mean"))
    check_members(ensemble, where)
    return ensemble


def member_of(item, path: Path, where: str, n: int) -> Member:
    if not isinstance(item, dict) or not isinstance(item.get("config"), str) or set(item) - {"config", "overrides"}:
        raise PipelineError(f"{where}: ensemble.members[{n}] must be {{config: FILE, overrides: [key=value, ...]}}")
    overrides = item.get("overrides") or []
    if not isinstance(overrides, list) or not all(isinstance(o, str) for o in overrides):
        raise PipelineError(f"{where}: ensemble.members[{n}].overrides must be a list of key=value strings")
    beside = path.parent / item["config"]
    return Member(str(beside) if beside.is_file() else item["config"], tuple(overrides))


def check_members(ensemble: Ensemble, where: str) -> None:
    configs = [load_config(m.config, list(m.overrides), encoder=False) for m in ensemble.members]
    names = [config.name for config in configs]
    twice = sorted({name for name in names if names.count(name) > 1})
    if twice:
        raise PipelineError(f"{where}: member {twice[0]} is listed twice (the same config and training overrides)")
    if ensemble.name in names:
        raise PipelineError(f"{where}: the ensemble's name {ensemble.name} is also a member's; rename the file")
    splits = sorted({(c.data.n_folds, c.data.split) for c in configs})
    if len(splits) > 1:
        raise PipelineError(f"{where}: members on different splits ({', '.join(f'{k} folds by {s}' for k, s in splits)}); "
                            "only members on one split (data.n_folds, data.split) can be averaged")
