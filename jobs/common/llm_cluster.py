"""An LLM job against its Ray cluster: fail fast when it cannot fit, never wait forever, say why it stopped.

Before anything is scheduled, what the job asks for (GPUs for ``device: gpu``, CPUs for the
engine replicas and helper stages) is compared with the cluster; a shortfall stops the job with
one line naming the setting, or, on an autoscaling cluster, is requested and waited for up to
``ray.resources_wait_s``. While it runs, Ray Data fails the run when nothing moves for
``ray.no_progress_timeout_s``, and an engine replica that keeps dying ends it after
``llm.max_restarts`` restarts (see ``operators/llm/engine.py``).
"""

from __future__ import annotations

import glob
import os
import re
import sys
import time
from collections.abc import Callable

from pydantic import Field

from jobs.common.recipe import RayCluster
from operators.llm.engine import LLMConfig
from operators.llm.resources import engine_gpus, helper_cpus, min_replicas, missing
from operators.log_filters import drop

POLL_S = 5.0
RAISED_RE = re.compile(r"^(?:\w+\.)*\w+(?:Error|Exception): .*$", re.MULTILINE)
# a line any vLLM process (EngineCore, VllmWorker-0, Worker_TP1 ...) logged at ERROR, in vLLM's log format:
# "(VllmWorker-0 pid=10205) ERROR 12-02 10:20:27 [multiproc_executor.py:953] ValueError: Available memory ..."
VLLM_ERROR_RE = re.compile(r"\([^()\s]+ pid=\d+\) (?:ERROR|CRITICAL) \S+ \S+ \[[^\]]*\] (.*)$")
EXCEPTION_RE = re.compile(r"^(?:\w+\.)*\w*(?:Error|Exception): \S")
ANSI_RE = re.compile(r"\x1b\[[0-9;]*m")


class ClusterTooSmall(RuntimeError):
    """The cluster lacks what the job asks for (its message names the setting)."""


class LLMRayConfig(RayCluster):
    resources_wait_s: float = Field(0, ge=0, description="wait this long for GPUs/CPUs on an autoscaling cluster; "
                                                         "0: fail at once")
    no_progress_timeout_s: float = Field(1800, gt=0, description="fail the unfinished shards when nothing moves "
                                                                 "for this long (engine start included)")
    progress_every_s: float = Field(30, gt=0, description="log requests done, tokens/s and an ETA this often")


def fit(cluster: LLMRayConfig, llm: LLMConfig) -> tuple[float, float]:
    """Wait (up to ``resources_wait_s``) until the cluster can hold the pipeline; return (each helper's CPUs,
    the cluster's CPUs the pipeline is sized for)."""
    per_replica = engine_gpus(llm) // min_replicas(llm)
    bundles = [{"CPU": 1, **({"GPU": per_replica} if per_replica else {})}] * min_replicas(llm)
    cpus = wait_for(cluster, lambda cpus, gpus: missing(llm, cpus, gpus), bundles)
    return helper_cpus(llm, cpus), cpus


def wait_for(cluster: LLMRayConfig, problem: Callable[[float, float], str | None], bundles: list[dict]) -> float:
    """Wait (up to ``resources_wait_s``, asking the autoscaler for ``bundles``) until ``problem(cpus, gpus)`` is
    None; set the no-progress timeout; return the cluster's CPUs. Raise :class:`ClusterTooSmall` otherwise."""
    import ray
    from ray.autoscaler.sdk import request_resources

    deadline, requested = time.monotonic() + cluster.resources_wait_s, False
    while True:
        total = ray.cluster_resources()
        cpus = total.get("CPU", 0.0)
        found = problem(cpus, total.get("GPU", 0.0))
        if found is None:
            context = ray.data.DataContext.get_current()
            context.execution_no_progress_timeout_s = cluster.no_progress_timeout_s
            # off a terminal Ray Data logs a block of every operator's state every 10 s, burying the job's own
            # progress lines (jobs/common/progress.py) and errors; its bars on a terminal stay
            context.enable_progress_bars = sys.stdout.isatty()
            drop("ray.data._internal.progress", "Progress bars disabled")  # Ray says so when they are off
            return cpus
        if time.monotonic() >= deadline:
            waited = f" (after waiting {cluster.resources_wait_s:g} s, ray.resources_wait_s)" if requested else ""
            raise ClusterTooSmall(found + waited)
        if not requested:
            request_resources(bundles=bundles)
            requested = True
        time.sleep(POLL_S)


def failure(err: BaseException, cluster: LLMRayConfig, llm: LLMConfig | None, session_dir: str | None,
            since: float) -> str:
    """One line saying why the run stopped, naming the setting that bounds it (and, for a dead
    engine, the engine's own error as its process logged it on this node after ``since``)."""
    from ray.data.exceptions import ExecutionTimeoutError
    from ray.exceptions import ActorDiedError, ActorUnavailableError

    if isinstance(err, ClusterTooSmall):
        return str(err)
    chain, seen = [], err
    while seen is not None:
        chain.append(seen)
        seen = seen.__cause__ or seen.__context__
    if any(isinstance(e, ExecutionTimeoutError) for e in chain):
        return f"no progress for {cluster.no_progress_timeout_s:g} s (ray.no_progress_timeout_s)"
    if llm is not None and any(isinstance(e, ActorDiedError | ActorUnavailableError) for e in chain):
        found = engine_error(session_dir, since) if session_dir else None
        tries = f"{llm.max_restarts + 1} time(s) (llm.max_restarts={llm.max_restarts})"
        if found is None:
            return f"an engine replica died {tries}: {error_line(err)} (the engine's error is in the Ray worker logs)"
        cause, at_start = found
        if llm.device == "cpu" and re.search(r"kv cache|cache blocks", cause, re.IGNORECASE):
            cause += " (on device: cpu the KV cache's size is llm.cpu_kv_cache_gb)"
        return f"llm: the engine could not start, tried {tries}: {cause}" if at_start else (
            f"an engine replica died {tries}: {cause}")
    return error_line(err)


def engine_error(session_dir: str, since: float) -> tuple[str, bool] | None:
    """The root cause a dead vLLM engine logged in this node's Ray worker logs after ``since``, and whether
    it died starting; None when no vLLM process logged an error.

    vLLM's engine runs in subprocesses of the Ray actor (the EngineCore, and on CPU or with tensor
    parallelism its ``VllmWorker`` processes); when they die the actor only learns "Engine core
    initialization failed" or "EngineCore encountered an issue", and the cause is in what they logged,
    often only in a worker's lines (the EngineCore then says "See stack trace for root cause"). Of the
    newest log holding vLLM errors, the last exception that does not point elsewhere for its root cause
    is quoted. Read by hand because no Ray API returns a dead actor's output without the dashboard.
    """
    newest: tuple[float, list[str], bool] | None = None
    for path in glob.glob(os.path.join(session_dir, "logs", "worker-*")):
        mtime = os.path.getmtime(path)
        if mtime < since or (newest is not None and mtime < newest[0]):
            continue
        raised, at_start = [], False
        with open(path, errors="replace") as f:
            for line in f:
                match = VLLM_ERROR_RE.search(ANSI_RE.sub("", line).rstrip("\n"))
                if match:
                    text = " ".join(match.group(1).split())
                    at_start = at_start or "failed to start" in text
                    if EXCEPTION_RE.match(text):
                        raised.append(text)
        if raised:
            newest = (mtime, raised, at_start)
    if newest is None:
        return None
    _, raised, at_start = newest
    own = [text for text in raised if "root cause" not in text]
    return (own or raised)[-1][:500], at_start


def error_line(err: BaseException) -> str:
    """``Type: message`` of the error a worker raised (unwrapping Ray's task errors), on one line."""
    outer, seen = err, {id(err)}
    while (inner := getattr(err, "cause", None) or err.__cause__) is not None and id(inner) not in seen:
        seen.add(id(inner))
        err = inner
    if type(err).__name__ == "UserCodeException":  # Ray Data's wrapper: the worker's own error is in the text
        lines = [m.group(0) for m in RAISED_RE.finditer(str(outer)) if "UserCodeException" not in m.group(0)]
        if lines:
            return " ".join(lines[-1].split())[:500]
    text = " ".join(str(err).split("\n", 1)[0].split())
    return f"{type(err).__name__}: {text[:500]}"
