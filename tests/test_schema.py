"""The base of every config section (lib/schema.py): unknown keys are errors, names come from a registry."""
import pytest
from pydantic import ValidationError

from pipeline.lib.schema import Name, Section


LOSSES = {"bce": 1, "dice": 2}


class Example(Section):
    loss: Name(LOSSES) = "bce"
    epochs: int = 1


def test_a_registered_name_passes_and_another_lists_the_valid_ones():
    assert Example(loss="dice").loss == "dice"
    with pytest.raises(ValidationError, match="not a registered name; valid: bce, dice"):
        Example(loss="focal")


def test_an_unknown_key_is_an_error():
    with pytest.raises(ValidationError, match="epoch"):
        Example(epoch=3)
