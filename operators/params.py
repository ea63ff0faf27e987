"""Base model for every configuration block: unknown keys are errors that name the key."""

from pydantic import BaseModel, ConfigDict


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")
