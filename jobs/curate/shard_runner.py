"""Runs whole shards in one process: the recipe's operators are loaded once, then one shard per call."""

from __future__ import annotations

from jobs.common.node import current_node
from jobs.curate.recipe import Recipe
from operators.io.layout import Layout
from operators.io.shard import process_shard
from operators.io.storage import Storage, full
from operators.pipeline import Chain
from operators.registry import build
from operators.schema import output_schema

STAGE = "filter"


def storage_of(recipe: Recipe) -> Storage:
    return Storage(**recipe.storage.model_dump())


def layout_of(recipe: Recipe) -> Layout:
    return Layout(recipe.output.root, recipe.output.run or recipe.name, STAGE)


class ShardRunner:
    """The curation job's worker (a Ray actor, see ``jobs/curate/shard_pool.py``): loads the recipe's operators
    and models once, starting their child processes at once; processes one shard per call."""

    def __init__(self, recipe: Recipe, signals: dict):
        self.recipe = recipe
        self.storage = storage_of(recipe)
        self.operators = [build(name, params, self.storage) for name, params in recipe.steps]
        for operator in self.operators:
            operator.warm_up()
        self.schema = output_schema(signals)

    def run(self, uri: str, shard: str, part: tuple[int, int]) -> dict:
        try:
            return process_shard(
                uri, shard, Chain(self.operators, self.recipe.mode), self.schema, self.storage,
                layout_of(self.recipe), batch_size=self.recipe.ray.batch_size,
                max_bytes=self.recipe.operator_params("extract")["max_bytes"],
                keep_rejected=self.recipe.output.rejected, compression=self.recipe.output.compression, part=part,
                by_language=self.recipe.output.by_language, node=current_node())
        except (KeyboardInterrupt, SystemExit):
            raise
        except BaseException as err:  # noqa: BLE001 - reported per shard (fastwarc panics too)
            error = f"no space left on {self.recipe.output.root}" if full(err) else f"{type(err).__name__}: {err}"
            return {"shard": shard, "part": part, "source": uri, "error": error}

