"""Training and predicting over several processes and devices (torchrun with the gloo backend on CPU): folds
shared out over ranks, a fold trained by a DDP group, a failed rank, devices and threads per rank."""
import os
import subprocess
import sys
import threading

import numpy as np
import pandas as pd
import pytest
import torch

from pipeline import predict, train
from pipeline.lib.checkpoints import load_checkpoint
from pipeline.lib.config import load_config
from pipeline.lib.distributed import Rank, fold_members, spread
from pipeline.lib.models import build_model
from pipeline.lib.paths import CONFIG_DIR, REPO
from pipeline.lib.probs import load_probs
from pipeline.lib.store import read_json
from tests.tiny_training import TINY, experiment


def torchrun(work, demo_input, *extra):
    """`torchrun --nproc_per_node=2 -m pipeline.train --fold all` on the CPU (2 processes, 1 thread each)."""
    env = {**os.environ, "TGS_LOCKED_WORKDIR": str(work.root.resolve())}  # this test process holds the lock
    return subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                           "-m", "pipeline.train", "--config", str(CONFIG_DIR / "demo.yaml"), "--fold", "all",
                           "--resume", "--input", str(demo_input), "--workdir", str(work.root), *TINY, *extra],
                          capture_output=True, text=True, cwd=REPO, env=env, timeout=600)


@pytest.mark.slow
def test_torchrun_ranks_share_the_folds(demo_input, work):
    result = torchrun(work, demo_input, "train.epochs=1")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "rank 0 of 2 on cpu: fold 0, fold 2" in result.stdout and "rank 1 of 2 on cpu: fold 1" in result.stdout
    exp = experiment(work, ["train.epochs=1"])
    assert all(exp.done_marker(fold).exists() for fold in range(3))


@pytest.mark.slow
def test_torchrun_trains_one_fold_with_ddp_when_processes_outnumber_folds(demo_input, work):
    result = torchrun(work, demo_input, "train.epochs=2", "--fold", "1")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "rank 0 of 2 on cpu: fold 1 (DDP, process 1 of 2)" in result.stdout
    assert "rank 1 of 2 on cpu: fold 1 (DDP, process 2 of 2)" in result.stdout
    exp = experiment(work, ["train.epochs=2"])
    assert read_json(exp.done_marker(1))["processes"] == 2 and not exp.done_marker(0).exists()
    assert pd.read_csv(exp.log_csv(1))["epoch"].tolist() == [0, 1]  # one log, written by the leader
    assert result.stdout.count("fold 1 epoch 2/2") == 1
    best = load_checkpoint(exp.best_checkpoint(1))
    model = build_model(load_config(CONFIG_DIR / "demo.yaml", TINY + ["train.epochs=2"]).model, 1, pretrained=False)
    model.load_state_dict(best["model"])  # the leader's weights, saved unwrapped from DDP


@pytest.mark.parametrize("world, folds, expected", [(2, 1, [[0, 1]]), (3, 2, [[0, 2], [1]]), (4, 2, [[0, 2], [1, 3]])])
def test_processes_beyond_the_folds_join_a_fold_group(world, folds, expected):
    assert fold_members(world, folds) == expected


@pytest.mark.slow
def test_a_failed_rank_stops_the_job(demo_input, work):
    exp = experiment(work, ["train.epochs=2"])
    exp.fold_dir(1).mkdir(parents=True)
    exp.last_checkpoint(1).write_bytes(b"damaged")  # rank 1's only fold cannot resume
    result = torchrun(work, demo_input, "train.epochs=2")
    assert result.returncode != 0
    assert f"checkpoint {exp.last_checkpoint(1)} is damaged" in result.stderr
    assert not exp.done_marker(1).exists()


@pytest.mark.parametrize("world, expected", [(1, [[0, 1, 2, 3, 4]]), (2, [[0, 2, 4], [1, 3]]), (5, [[f] for f in range(5)]),
                                             (7, [[0], [1], [2], [3], [4], [], []])])
def test_ranks_take_every_fold_once(world, expected):
    assert [Rank(r, world).share([0, 1, 2, 3, 4]) for r in range(world)] == expected


def test_each_rank_gets_its_gpu_and_a_share_of_the_cores(monkeypatch, gpu_machine):
    monkeypatch.setenv("RANK", "3")
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("LOCAL_RANK", "1")
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    rank = Rank.from_env()
    assert rank == Rank(3, 4, 1, 2)
    gpu_machine(["Tesla T4", "Tesla T4"])
    chosen = []
    monkeypatch.setattr(torch.cuda, "set_device", chosen.append)
    assert rank.device() == torch.device("cuda", 1) and chosen == [torch.device("cuda", 1)]
    threads = torch.get_num_threads()
    monkeypatch.setattr(os, "cpu_count", lambda: 4)
    try:
        rank.limit_threads()
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(threads)


def test_spread_deals_items_over_devices_in_threads_and_keeps_their_order():
    seen, both_started = [], threading.Barrier(2, timeout=30)

    def work(item, device):
        seen.append((item, device, threading.get_ident()))
        if item < 2:
            both_started.wait()  # the first items of both devices run at the same time, or this times out
        return item * 10

    assert spread([0, 1, 2, 3, 4], ["gpu0", "gpu1"], work) == [0, 10, 20, 30, 40]
    assert sorted((item, device) for item, device, _ in seen) == [
        (0, "gpu0"), (1, "gpu1"), (2, "gpu0"), (3, "gpu1"), (4, "gpu0")]
    assert len({thread for *_, thread in seen}) == 2


@pytest.mark.slow
def test_predict_over_two_devices_equals_one(demo_input, work, monkeypatch):
    extra = ["train.epochs=1"]
    train.main(["--config", str(CONFIG_DIR / "demo.yaml"), "--fold", "all", "--input", str(demo_input),
                "--workdir", str(work.root), *TINY, *extra])
    args = ["--config", str(CONFIG_DIR / "demo.yaml"), "--input", str(demo_input), "--workdir", str(work.root),
            *TINY, *extra]
    predict.main(args)
    exp = experiment(work, extra)
    one = load_probs(exp.test_probs)
    used = []
    monkeypatch.setattr(predict, "local_devices", lambda: [torch.device("cpu"), torch.device("cpu")])
    monkeypatch.setattr(predict, "spread", lambda items, devices, work: used.append(len(devices)) or spread(
        items, devices, work))
    predict.main(args + ["--force"])
    two = load_probs(exp.test_probs)
    assert used == [2]
    assert np.abs(two.levels.astype(int) - one.levels.astype(int)).max() <= 1  # sums in another order
    assert np.allclose(two.salt_prob, one.salt_prob, atol=1e-6) if one.salt_prob is not None else two.salt_prob is None
