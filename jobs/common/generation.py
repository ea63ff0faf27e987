"""Stream a job's generation requests through the one engine; each shard is finished on a worker.

Used by every job that prompts an LLM (synthesize: rephrasing and rewriting; classify: rating).
Requests are made on Ray workers from each shard (``make_requests``, a ``flat_map`` function whose
rows carry ``shard_key`` and ``expected``, the shard's request count) and run through
``operators/llm/engine.py``. Workers write the results, as they come, to part files under
``<parts>/<shard_key>/`` and report only their counts; when a shard's results are all back the
driver starts a Ray task that reads its parts and calls ``finish(shard_key, results)`` (assemble,
validate, write, ledger) and deletes them. So the driver handles counts and ledger entries,
never text. Parts of shards a killed run left unfinished are removed before they are redone.

Every ``ray.progress_every_s`` (and at the end) the driver logs requests back of requests made, shards
finished, output tokens/s and an ETA (:class:`jobs.common.progress.RequestProgress`), also while no batch comes
back: the workers that make a shard's requests report their count to a small counting actor, and the
results' counts and tokens come back with each batch. The engine hands back whole batches
(``llm.batch_size``), so within a batch there is no finer count.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections import Counter
from collections.abc import Callable

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from jobs.common.cli import start_ray
from jobs.common.llm_cluster import LLMRayConfig, fit
from jobs.common.progress import Progress, RequestProgress
from operators.io.storage import Storage, join
from operators.llm.engine import LLMConfig

log = logging.getLogger("cc_refinery.generation")


def _write_parts(storage: Storage, parts: str):
    """A ``map_batches`` function: result rows -> one part file per shard in the batch; returns counts only."""

    def run(batch: pa.Table) -> pa.Table:
        keys, counts, expected, tokens = [], [], [], []
        for key in pc.unique(batch.column("shard_key")).to_pylist():
            rows = batch.filter(pc.equal(batch.column("shard_key"), key))
            storage.write_atomic(join(parts, key, f"{uuid.uuid4().hex}.parquet"),
                                 lambda out, t=rows: pq.write_table(t, out))
            keys.append(key)
            counts.append(rows.num_rows)
            expected.append(rows.column("expected")[0].as_py())
            tokens.append(pc.sum(rows.column("tokens_out")).as_py() or 0)
        return pa.table({"shard_key": keys, "rows": pa.array(counts, pa.int64()),
                         "expected": pa.array(expected, pa.int64()), "tokens_out": pa.array(tokens, pa.int64())})

    return run


class _Tally:
    """A counting actor: requests made per shard, as the workers that make them report (a retried
    task reports the same count again, so nothing is counted twice)."""

    def __init__(self):
        self.made: dict[str, int] = {}

    def add(self, key: str, count: int) -> None:
        self.made[key] = count

    def get(self) -> dict[str, int]:
        return self.made


def _counted(make_requests, tally):
    """``make_requests`` that also reports each shard's request count to ``tally`` (not waiting for it)."""

    def make(item: dict) -> list[dict]:
        rows = list(make_requests(item))
        tally.add.remote(item["shard_key"], len(rows))
        return rows

    return make


def _refresh(progress: RequestProgress, tally) -> None:
    """Take the requests made so far from ``tally``; the counts are for the log only, so a slow answer is skipped."""
    import ray

    try:
        progress.requests_made(ray.get(tally.get.remote(), timeout=5))
    except Exception:  # noqa: BLE001 - progress must never stop the run
        pass


def _tick(progress: RequestProgress, tally, every_s: float, stop: threading.Event) -> None:
    """Log the progress line every ``every_s`` until ``stop`` is set (a thread: the driver's loop blocks)."""
    while not stop.wait(every_s):
        _refresh(progress, tally)
        progress.log()


def _finish(storage: Storage, parts: str, key: str, finish: Callable[[str, list[dict]], dict]) -> dict:
    """Read one shard's parts, check they are all there, call ``finish``, delete the parts."""
    folder = join(parts, key)
    tables = []
    for path in storage.walk(folder, ".parquet"):
        fs, inner = storage.filesystem(path)
        tables.append(pq.read_table(inner, filesystem=fs))
    results = pa.concat_tables(tables).to_pylist() if tables else []
    if results and len(results) != results[0]["expected"]:
        raise RuntimeError(f"shard {key}: {len(results)} of {results[0]['expected']} results came back")
    entry = finish(key, results)
    storage.delete_tree(folder)
    return entry


def stream(llm: LLMConfig, cluster: LLMRayConfig, storage: Storage, parts: str, shards: dict[str, str],
           make_requests, finish: Callable[[str, list[dict]], dict], session: list[str],
           retried: list[dict]) -> None:
    """Run every request of ``shards`` (key -> input path) and finish each shard on a worker.

    ``finish(key, results)`` returns the shard's ledger entry; ``session`` receives the Ray session folder.
    When the cluster loses CPUs the pipeline was sized for (a node lost: an engine replica or a helper actor
    may have nowhere to go), the run ends (``jobs/common/shrink.py``), the shards finishing meanwhile are
    finished, and the rest are planned again for the nodes left (waiting, as at start, up to
    ``ray.resources_wait_s`` for room for the engine); they are added to ``retried``. A cluster that shrinks
    more than ``MAX_REPLANS`` times in one run ends it.
    """
    from jobs.common.shrink import replanning

    session.append(start_ray(cluster))
    done: set[str] = set()
    replanning(lambda keys: _stream_once(llm, cluster, storage, parts, {k: shards[k] for k in keys}, make_requests,
                                         finish, done),
               list(shards), lambda keys: [k for k in keys if k not in done], retried, log)


def _stream_once(llm: LLMConfig, cluster: LLMRayConfig, storage: Storage, parts: str, shards: dict[str, str],
                 make_requests, finish: Callable[[str, list[dict]], dict], done: set[str]) -> None:
    """One pipeline over ``shards``, sized for the cluster as it is now; the finished shards' keys go to ``done``.
    Raises :class:`~jobs.common.shrink.ClusterShrank` (after the shards finishing meanwhile are finished) when
    the cluster loses CPUs."""
    import ray

    from jobs.common.shrink import ClusterShrank, watching
    from operators.llm.engine import build_engine

    for key in shards:  # parts of a killed run, or of a run ended by a lost node
        storage.delete_tree(join(parts, key))
    helper, cpus = fit(cluster, llm)
    tally = ray.remote(num_cpus=0)(_Tally).remote()
    finisher, finish_ref = ray.remote(num_cpus=helper)(_finish), ray.put(finish)
    got: Counter = Counter()
    running, progress = {}, Progress("generate", len(shards))
    requests_progress, stop = RequestProgress("generate", len(shards)), threading.Event()
    ticker = threading.Thread(target=_tick, args=(requests_progress, tally, cluster.progress_every_s, stop),
                              name="generation-progress", daemon=True)
    ticker.start()
    try:
        with watching(cpus):  # before the datasets are made: each keeps the Ray Data context it was made in
            requests = ray.data.from_items([{"path": path, "shard_key": key} for key, path in shards.items()],
                                           override_num_blocks=len(shards))
            results = build_engine(llm, helper)(requests.flat_map(_counted(make_requests, tally), num_cpus=helper))
            counts = results.map_batches(_write_parts(storage, parts), batch_format="pyarrow", num_cpus=helper)
            # each block as it comes (batch_size=None): Ray Data's default gathers 256 rows, so the counts, a row
            # per shard of a batch, came to the driver only at the end of a run, and no shard was finished before
            for batch in counts.iter_batches(batch_size=None, batch_format="pyarrow"):
                columns = (batch.column(c).to_pylist() for c in ("shard_key", "rows", "expected", "tokens_out"))
                for key, rows, expected, tokens in zip(*columns, strict=True):
                    got[key] += rows
                    requests_progress.returned(rows, tokens)
                    if got[key] == expected:
                        running[finisher.remote(storage, parts, key, finish_ref)] = key
                _collect(running, progress, requests_progress, done, block=False)
        for key in shards:
            if key not in got:  # no request (no document), or its results never came: _finish tells which
                running[finisher.remote(storage, parts, key, finish_ref)] = key
        _collect(running, progress, requests_progress, done, block=True)
    except ClusterShrank:
        _collect(running, progress, requests_progress, done, block=True)
        raise
    finally:
        stop.set()
        ticker.join()
    _refresh(requests_progress, tally)
    requests_progress.log()


def _collect(running: dict, progress: Progress, requests_progress: RequestProgress, done: set[str],
             block: bool) -> None:
    """Log (and raise the errors of) the finishing tasks that are done, their keys to ``done``; all of them
    with ``block``."""
    import ray

    while running:
        ready, _ = ray.wait(list(running), num_returns=len(running) if block else 1, timeout=None if block else 0)
        if not ready:
            return
        for ref in ready:
            key, entry = running.pop(ref), ray.get(ref)
            done.add(key)
            log.info("shard %s: %s", entry["shard"], entry.get("outputs", entry.get("rows")))
            rows = entry.get("rows")
            progress.shard_done(sum(rows.values()) if isinstance(rows, dict) else 0)
            requests_progress.shard_finished()
