"""Versioned prompt files (``operators/llm/prompts/<name>.yaml``): load, validate, render.

A prompt is data: a system message, a user template with one ``{text}`` slot, the input-token
budget of a chunk, and the output/input length ratio a valid answer must fall in (required, except
for the families in ``UNMEASURED``: ``rating``, whose answers are parsed by ``operators.llm.rating``
instead of measured, ``tpt``, whose thinking's length has nothing to do with its input's, and ``prox``,
whose answers are programs read by ``operators.llm.prox``).
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

PROMPT_DIR = Path(__file__).with_name("prompts")
UNMEASURED = ("rating", "tpt", "prox")


class Prompt(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str
    version: int = Field(ge=1)
    family: str
    max_input_tokens: int = Field(gt=0)
    length_ratio: tuple[float, float] | None = None
    system: str
    user: str

    @field_validator("user")
    @classmethod
    def _one_slot(cls, user: str) -> str:
        if user.count("{text}") != 1:
            raise ValueError("the user template needs exactly one {text} slot")
        return user

    @model_validator(mode="after")
    def _ratio_unless_unmeasured(self) -> Prompt:
        if self.length_ratio is None and self.family not in UNMEASURED:
            raise ValueError("length_ratio is required, except for family " + " or ".join(map(repr, UNMEASURED)))
        return self

    @property
    def ref(self) -> str:
        """``name@version``, as written to ``synth_prompt``."""
        return f"{self.name}@{self.version}"

    def messages(self, text: str) -> list[dict[str, str]]:
        """Chat messages for one chunk (the engine applies the model's chat template)."""
        return [{"role": "system", "content": self.system},
                {"role": "user", "content": self.user.replace("{text}", text)}]


@cache
def load_prompt(name_or_path: str) -> Prompt:
    """A shipped prompt by name (``wrap_easy``), or any YAML file by path."""
    path = Path(name_or_path) if name_or_path.endswith(".yaml") else PROMPT_DIR / f"{name_or_path}.yaml"
    if not path.exists():
        known = ", ".join(sorted(p.stem for p in PROMPT_DIR.glob("*.yaml")))
        raise ValueError(f"unknown prompt {name_or_path!r}; shipped: {known}")
    return Prompt.model_validate(yaml.safe_load(path.read_text()))


def shipped_prompts() -> list[str]:
    return sorted(p.stem for p in PROMPT_DIR.glob("*.yaml"))
