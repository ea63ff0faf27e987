"""The Ray node a piece of work runs on: what ledgers record as ``node`` (where a shard was finished)."""

from __future__ import annotations


def current_node() -> str | None:
    """This process's Ray node id, or None off Ray."""
    import ray

    return ray.get_runtime_context().get_node_id() if ray.is_initialized() else None
