"""The base of every configuration model."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Frozen(BaseModel):
    """Immutable, and an unknown key is an error, not a silent no-op."""

    model_config = ConfigDict(frozen=True, extra="forbid")
