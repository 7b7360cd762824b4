"""Submitting to the competition through the kaggle CLI, and the record of each submission.

What a submission needs is checked before anything is done (the CLI on PATH, credentials where the CLI
looks for them, www.kaggle.com reachable); without one, one line says what is missing. Each submission is
recorded in experiments/<name>/kaggle_submissions.json: when, the file and its digest, the message (the
experiment, its CV and decision) and what the CLI answered; a leaderboard score read later joins it there.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import time
from pathlib import Path

from .errors import PipelineError
from .network import answers
from .paths import ExperimentLayout
from .store import read_json, write_json

COMPETITION = "tgs-salt-identification-challenge"
HOST = "www.kaggle.com"


def config_dir() -> Path:
    """Where the kaggle CLI reads its credentials (its own rule: $KAGGLE_CONFIG_DIR, ~/.kaggle, XDG)."""
    if os.environ.get("KAGGLE_CONFIG_DIR"):
        return Path(os.environ["KAGGLE_CONFIG_DIR"])
    home = Path.home() / ".kaggle"
    if home.exists():
        return home
    return Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config") / "kaggle"


def has_credentials() -> bool:
    env = os.environ
    if env.get("KAGGLE_API_TOKEN") or (env.get("KAGGLE_USERNAME") and env.get("KAGGLE_KEY")):
        return True
    return any((config_dir() / name).is_file() for name in ("kaggle.json", "access_token"))


def reachable(host: str = HOST) -> bool:
    return answers(host)


def missing_for_submit() -> str | None:
    """What stops a submission here, in words; None when nothing does."""
    if shutil.which("kaggle") is None:
        return "the kaggle CLI is not installed (pip install kaggle, or python -m pipeline.deps --extras kaggle)"
    if not has_credentials():
        return (f"no Kaggle credentials (set KAGGLE_API_TOKEN, or put access_token or kaggle.json in {config_dir()}; "
                "Kaggle > Settings > API)")
    if not reachable():
        return f"{HOST} cannot be reached (offline); submit the CSV from a machine with internet"
    return None


def message(name: str, cv: float | None, decision, text: str) -> str:
    cv_text = f"CV {cv:.4f}" if cv is not None else "CV untuned"
    cut = "" if decision.empty_cut is None else f", head cut {decision.empty_cut:.2f}"
    return f"{name}: {cv_text}, threshold {decision.threshold:.3f}, min area {decision.min_area}{cut}" + (
        f" - {text}" if text else "")


def submit_csv(csv: Path, text: str) -> str:
    """Send `csv` with the message `text`; the CLI's answer. A refusal is one line with the CLI's words."""
    result = kaggle_cli(["submit", "-c", COMPETITION, "-f", str(csv), "-m", text],
                        f"for {csv}: {{}}; check your credentials and the competition's rules page")
    return " ".join((result.stdout + result.stderr).split())[-300:]


def kaggle_cli(args: list[str], failure: str) -> subprocess.CompletedProcess:
    """`kaggle competitions ARGS`; a non-zero exit is one line: `failure` with the CLI's last words in {}."""
    result = subprocess.run(["kaggle", "competitions", *args], capture_output=True, text=True)
    if result.returncode:
        answer = " ".join((result.stdout + result.stderr).split())[-300:] or "no answer"
        raise PipelineError(f"kaggle competitions {args[0]} failed " + failure.format(answer))
    return result


def record(exp: ExperimentLayout, csv: Path, text: str, cv: float | None, decision, answer: str) -> None:
    path = exp.kaggle_submissions_json
    entries = read_json(path)["submissions"] if path.is_file() else []
    entries.append({"time": time.strftime("%Y-%m-%d %H:%M:%S"), "file": str(csv), "message": text,
                    "sha1": hashlib.sha1(csv.read_bytes()).hexdigest(), "cv_score": cv,
                    "decision": decision.to_dict(), "answer": answer})
    write_json(path, {"submissions": entries})


def list_submissions() -> str:
    """`kaggle competitions submissions -v`: CSV with ref, fileName, date, description, status, publicScore,
    privateScore (the CLI's submission_fields)."""
    return kaggle_cli(["submissions", COMPETITION, "-v"], "({})").stdout
