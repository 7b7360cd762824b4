import numpy as np
import pytest

from pipeline.lib import rle


def test_known_strings_are_column_major_and_one_indexed():
    mask = np.zeros((101, 101), bool)
    assert rle.encode(mask) == ""
    mask[0, 0] = mask[1, 0] = True  # first two pixels of the first column
    mask[0, 1] = True  # first pixel of the second column is pixel 102
    assert rle.encode(mask) == "1 2 102 1"
    full = np.ones((101, 101), bool)
    assert rle.encode(full) == "1 10201"


def test_decode_known_string():
    mask = rle.decode("1 2 102 1")
    assert mask.sum() == 3 and mask[0, 0] and mask[1, 0] and mask[0, 1]
    assert not rle.decode("").any()
    assert rle.decode("10201 1")[100, 100]


def test_round_trip_random_masks():
    rng = np.random.default_rng(0)
    masks = rng.random((20, 101, 101)) < rng.random((20, 1, 1))
    codes = rle.encode_many(masks)
    assert codes == [rle.encode(m) for m in masks]
    for mask, code in zip(masks, codes):
        assert (rle.decode(code) == mask).all()


def test_run_touching_end_of_column_continues_into_next():
    mask = np.zeros((101, 101), bool)
    mask[100, 0] = mask[0, 1] = True  # pixels 101 and 102 are one run
    assert rle.encode(mask) == "101 2"


@pytest.mark.parametrize("code", ["1 x", "1 2 3", "0 5", "5 0", "10 2 5 1", "10200 5"])
def test_malformed_strings_are_rejected(code):
    with pytest.raises(ValueError):
        rle.decode(code)
