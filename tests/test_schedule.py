"""The per-step schedule: warm-up, cosine cycles, and a snapshot step at the true end of every cycle."""
import pytest
import torch

from pipeline.lib.config import TrainConfig
from pipeline.lib.schedule import Schedule


def lrs(train: TrainConfig, steps_per_epoch: int) -> tuple[Schedule, list[float]]:
    schedule = Schedule.of(train, steps_per_epoch)
    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=train.lr)
    scheduler = schedule.scheduler(optimizer, train.min_lr)
    out = []
    for step in range(schedule.total_steps):
        scheduler.step_update(step)
        out.append(optimizer.param_groups[0]["lr"])
    return schedule, out


@pytest.mark.parametrize("epochs, cycles, warmup", [(5, 2, 0), (5, 2, 1), (9, 2, 1), (10, 3, 0), (10, 3, 1), (7, 3, 0)])
@pytest.mark.parametrize("steps_per_epoch", [7, 10])
def test_every_cycle_ends_on_its_lowest_step_and_restarts_after(epochs, cycles, warmup, steps_per_epoch):
    train = TrainConfig(epochs=epochs, cycles=cycles, warmup_epochs=warmup, lr=1.0, min_lr=0.01)
    schedule, lr = lrs(train, steps_per_epoch)
    ends = schedule.cycle_ends()
    assert len(ends) == cycles and ends[-1] <= schedule.total_steps and len(set(ends)) == cycles
    assert schedule.total_steps - ends[-1] < cycles  # at most a few leftover steps, at min_lr
    start = schedule.warmup_steps
    for end in ends:
        cycle = lr[start:end]
        assert cycle[0] == pytest.approx(1.0) and min(cycle) == cycle[-1] < 0.05  # peak -> bottom, within
        if end < schedule.total_steps:
            assert lr[end] < 0.05 if end == ends[-1] else lr[end] == pytest.approx(1.0)  # then a restart
        start = end
    if warmup:
        head = lr[:schedule.warmup_steps]
        assert head == sorted(head) and head[0] == pytest.approx(0.01)  # linear warm-up from min_lr


def test_ends_need_not_fall_on_epoch_boundaries():
    """5 epochs of 7 steps in 2 cycles: the first cycle ends mid-epoch, at step 17 (of 35)."""
    schedule = Schedule.of(TrainConfig(epochs=5, cycles=2, warmup_epochs=0), 7)
    assert schedule.cycle_ends() == [17, 34] and schedule.total_steps == 35
