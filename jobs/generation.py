"""Stream a job's generation requests through the one engine and hand each shard's results back whole.

Used by every job that prompts an LLM (synthesize: rephrasing and rewriting; classify: rating):
requests are made on Ray workers from each shard (``make_requests``, a ``flat_map`` function
whose rows carry ``shard_key`` and ``expected``, the shard's request count), run through
``operators/llm/engine.py``, and ``finish(shard_key, results)`` is called as soon as a shard's
results are all back (with ``[]`` for shards that made no request).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable

from jobs.cli import start_ray
from jobs.llm_cluster import LLMRayConfig, fit
from operators.llm.engine import LLMConfig


def stream(llm: LLMConfig, cluster: LLMRayConfig, shards: dict[str, str], make_requests,
           finish: Callable[[str, list[dict]], None], session: list[str]) -> None:
    """Run every request of ``shards`` (key -> input path); ``session`` receives the Ray session folder."""
    import ray

    from operators.llm.engine import build_engine

    session.append(start_ray(cluster))
    helper = fit(cluster, llm)
    requests = ray.data.from_items([{"path": path, "shard_key": key} for key, path in shards.items()],
                                   override_num_blocks=len(shards))
    requests = requests.flat_map(make_requests, num_cpus=helper)
    pending: dict[str, list[dict]] = defaultdict(list)
    finished: set[str] = set()
    for batch in build_engine(llm, helper)(requests).iter_batches(batch_format="pyarrow", batch_size=256):
        for row in batch.to_pylist():
            pending[row["shard_key"]].append(row)
            if len(pending[row["shard_key"]]) == row["expected"]:
                finish(row["shard_key"], pending.pop(row["shard_key"]))
                finished.add(row["shard_key"])
    for key in shards:
        if key not in finished:
            finish(key, [])
