"""Which kind of document a row is, from its ``synth_task``: the table the mixture manifest and the export share."""

from __future__ import annotations

KINDS = {"rephrase": "rephrased", "rewrite": "rewritten", "refine": "refined", "think": "thought"}


def kind_of(task: str | None) -> str:
    """``rephrase`` -> ``rephrased`` ...; a real document (no task, ``none``, or one the table lacks) -> ``real``."""
    return KINDS.get(task, "real") if task else "real"
