import pytest
import torch

from pipeline.lib.losses import LOSSES, dice, lovasz, lovasz_symmetric, make_loss


def as_batch(values):
    return torch.tensor(values, dtype=torch.float32).reshape(1, 1, 1, -1)


def test_dice_by_hand():
    # p = 0.5 everywhere; |P∩T| = 1, |P| = 2, |T| = 2: 1 - (2 + 1) / (2 + 2 + 1) = 0.4
    assert dice(torch.zeros(1, 1, 2, 2), as_batch([1, 0, 1, 0]).reshape(1, 1, 2, 2)).item() == pytest.approx(0.4)


def test_lovasz_hinge_by_hand():
    # errors 1 - s*y = [0.5, 1.5]; sorted [1.5 (bg), 0.5 (fg)]; Jaccard steps [0.5, 0.5] -> 1.0
    assert lovasz(as_batch([0.5, 0.5]), as_batch([1, 0])).item() == pytest.approx(1.0)
    # a confident correct prediction has no hinge error
    assert lovasz(as_batch([2.0, -2.0]), as_batch([1, 0])).item() == pytest.approx(0.0)


def test_symmetric_lovasz_by_hand():
    # the flipped problem (logits [-0.5, -0.5], targets [0, 1]) costs 1.5, so the mean is 1.25
    assert lovasz_symmetric(as_batch([0.5, 0.5]), as_batch([1, 0])).item() == pytest.approx(1.25)


def test_lovasz_is_per_image():
    logits = torch.cat([as_batch([0.5, 0.5]), as_batch([2.0, -2.0])])
    target = torch.cat([as_batch([1, 0]), as_batch([1, 0])])
    assert lovasz(logits, target).item() == pytest.approx(0.5)


def test_weighted_sum():
    logits, target = torch.randn(2, 1, 8, 8), (torch.rand(2, 1, 8, 8) > 0.5).float()
    combined = make_loss({"dice": 2.0, "lovasz": 0.5})(logits, target)
    assert combined.item() == pytest.approx(2 * dice(logits, target).item() + 0.5 * lovasz(logits, target).item(),
                                            rel=1e-5)


@pytest.mark.parametrize("name", list(LOSSES))
def test_every_loss_is_finite_differentiable_and_prefers_the_truth(name):
    target = torch.zeros(2, 1, 8, 8)
    target[0, 0, 2:6, 2:6] = 1
    right = (target * 2 - 1) * 4  # confident and correct
    wrong = -right
    logits = torch.zeros(2, 1, 8, 8, requires_grad=True)
    loss = make_loss({name: 1.0})
    value = loss(logits, target)
    value.backward()
    assert torch.isfinite(value) and logits.grad.abs().sum() > 0
    assert loss(right, target) < value < loss(wrong, target)


@pytest.mark.parametrize("name", list(LOSSES))
def test_counted_images_equal_the_loss_of_those_images_alone(name):
    """Deep supervision counts images by weight instead of selecting them (no GPU-to-host sync)."""
    torch.manual_seed(0)
    logits, target = torch.randn(4, 1, 8, 8), (torch.rand(4, 1, 8, 8) > 0.6).float()
    weight = torch.tensor([1.0, 0.0, 1.0, 0.0])
    loss = make_loss({name: 1.0})
    assert loss(logits, target, weight).item() == pytest.approx(loss(logits[[0, 2]], target[[0, 2]]).item(), rel=1e-5)
    assert loss(logits, target, torch.ones(4)).item() == pytest.approx(loss(logits, target).item(), rel=1e-5)
    none = torch.zeros(4)
    logits.requires_grad_(True)
    value = loss(logits, target, none)
    value.backward()
    assert value.item() == pytest.approx(0.0, abs=1e-6) and torch.isfinite(logits.grad).all()


def test_lovasz_with_elu_plus_one_still_pulls_pixels_that_are_right():
    """elu + 1 for the hinge's ReLU: errors below the margin (-1 here) weigh e^-1, not 0."""
    import math
    from pipeline.lib.losses import lovasz_elu, lovasz_symmetric_elu
    assert lovasz_elu(as_batch([2.0, -2.0]), as_batch([1, 0])).item() == pytest.approx(math.exp(-1))
    assert lovasz(as_batch([2.0, -2.0]), as_batch([1, 0])).item() == pytest.approx(0.0)
    assert lovasz_symmetric_elu(as_batch([2.0, -2.0]), as_batch([1, 0])).item() == pytest.approx(math.exp(-1))
