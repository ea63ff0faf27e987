"""A Ray Data run sized for more CPUs than the cluster has ends with ClusterShrank (the quality job then plans
its unfinished shards again); one sized for the cluster as it is runs to its end. The node loss itself is in
``tests/test_multinode_stages.py`` and ``tests/test_multinode_pipeline.py`` (chaos)."""

from __future__ import annotations

import pytest

from jobs.common.shrink import ClusterShrank, ShrinkWatch, watching


def test_a_run_sized_for_lost_cpus_ends_with_cluster_shrank_and_one_sized_for_the_cluster_finishes(ray_local):
    import ray

    cpus = ray.cluster_resources()["CPU"]
    with watching(cpus + 1), pytest.raises(ClusterShrank) as shrunk:
        list(ray.data.range(20, override_num_blocks=4).iter_rows())
    assert (shrunk.value.sized_for, shrunk.value.cpus) == (cpus + 1, cpus)
    assert str(shrunk.value) == f"the cluster went from {cpus + 1:g} to {cpus:g} CPU(s) (a node lost)"
    assert ShrinkWatch not in ray.data.DataContext.get_current().custom_execution_callback_classes
    with watching(cpus):
        assert sorted(row["id"] for row in ray.data.range(20, override_num_blocks=4).iter_rows()) == list(range(20))
