"""``<output>/manifest.json``: the shards in training order (files, tokens, documents, phase), tokens and
documents per source kind / prompt / language / quality label, per phase, the tokenizer, seed and format."""

from __future__ import annotations

from jobs.export.recipe import ExportRecipe
from operators.io.ledger import read_entries
from operators.io.storage import Storage, join


def _add(total: dict, counts: dict) -> None:
    for group, values in counts.items():
        for value, (docs, tokens) in values.items():
            entry = total.setdefault(group, {}).setdefault(value, {"documents": 0, "tokens": 0})
            entry["documents"] += docs
            entry["tokens"] += tokens


def manifest(storage: Storage, recipe: ExportRecipe, plan: dict, tokenizer: dict) -> dict:
    """Built from the shards' ledger entries (metadata only)."""
    ledger = join(recipe.output, "_ledger", "shards")
    shards, groups, phases = [], {}, {}
    entries = read_entries(storage, [join(ledger, f"{planned['name']}.json") for planned in plan["shards"]])
    for planned, entry in zip(plan["shards"], entries, strict=True):
        files = [uri.rsplit("/", 1)[-1] for uri in entry["outputs"].values()]
        shards.append({"name": planned["name"], "files": files, "phase": planned["phase"],
                       "tokens": entry["tokens"], "documents": entry["documents"]})
        _add(groups, entry["counts"])
        phase = phases.setdefault(planned["phase"], {"name": planned["phase"], "tokens": 0, "documents": 0,
                                                     "shards": []})
        phase["tokens"] += entry["tokens"]
        phase["documents"] += entry["documents"]
        phase["shards"].append(planned["name"])
    tokens = sum(s["tokens"] for s in shards)
    for phase in phases.values():
        phase["fraction"] = round(phase["tokens"] / tokens, 4) if tokens else 0.0
    return {"format": recipe.format, "dtype": tokenizer["dtype"], "seed": recipe.seed,
            "shard_tokens": recipe.shard_tokens, "weights": recipe.weights, "eos": recipe.eos,
            "tokenizer": {k: tokenizer[k] for k in ("name", "sha256", "vocab_size", "eos_id", "engine")},
            "curriculum": recipe.curriculum.model_dump() if recipe.curriculum else None,
            "inputs": plan["inputs"], "shards": shards, "documents": sum(s["documents"] for s in shards),
            "tokens": tokens,
            "phases": list(phases.values()), **{g: dict(sorted(v.items())) for g, v in sorted(groups.items())}}
