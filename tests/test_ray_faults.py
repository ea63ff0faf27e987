"""Ray faults in the quality stage: its scoring actor and its writing task are SIGKILLed while the
job runs; Ray restarts the one and retries the other, and the output equals an undisturbed run's."""

from __future__ import annotations

import os
import signal
import threading

import pytest

from jobs.classify import run
from tests.test_classify_job import read, recipe, write_input
from tests.test_curate_faults import _pids

VICTIMS = ("ray::MapWorker(MapBatches(Score))", "ray::Map(run)")  # the transformer's actor; the shard writer


@pytest.mark.slow
def test_a_killed_scoring_actor_and_writing_task_are_redone_and_the_output_is_exact(tmp_path, ray_local, tiny_bert,
                                                                                    tiny_fasttext):
    write_input(tmp_path / "in", shards=4)
    killed: dict[str, int] = {}
    finished = threading.Event()

    def kill_each_victim_once() -> None:  # until each is killed, or the run ended without one of them
        while len(killed) < len(VICTIMS) and not finished.is_set():
            for title in VICTIMS:
                for pid in _pids(title) if title not in killed else ():
                    os.kill(pid, signal.SIGKILL)
                    killed[title] = pid
            finished.wait(0.005)

    killer = threading.Thread(target=kill_each_victim_once)
    killer.start()
    try:
        stats = run(recipe(tmp_path, tiny_bert, tiny_fasttext))
    finally:
        finished.set()
        killer.join()

    assert sorted(killed) == sorted(VICTIMS)
    clean = run(recipe(tmp_path / "clean", tiny_bert, tiny_fasttext, src=tmp_path / "in"))
    assert stats["failed"] == [] and (stats["shards"], stats["documents"]) == (clean["shards"], clean["documents"])
    columns = ("id", "dclm_score", "edu_score", "quality_bucket")
    after = sorted(tuple(r[c] for c in columns) for r in read(tmp_path / "out"))
    assert after == sorted(tuple(r[c] for c in columns) for r in read(tmp_path / "clean" / "out"))
    assert len(after) == stats["documents"] == len({row[0] for row in after})
