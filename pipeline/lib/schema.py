"""The base of every config section: unknown keys are errors, and a name must come from its registry."""
from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_default=True)


def one_of(registry) -> AfterValidator:
    """A validator that accepts only the names in `registry` (any container with keys), listing them."""
    def check(value):
        if value not in registry:
            raise ValueError(f"not a registered name; valid: {', '.join(map(str, registry))}")
        return value
    return AfterValidator(check)


def Name(registry):  # noqa: N802 - used as a type: Name(LOSSES)
    return Annotated[str, one_of(registry)]
