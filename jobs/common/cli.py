"""The command line shared by every job: ``--config`` recipe, ``--set`` overrides, one JSON summary line."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Callable

from pydantic import BaseModel

from jobs.common.reaper import adopt
from jobs.common.recipe import load_model
from operators.log_filters import drop


def job_main(doc: str, prog: str, model: type[BaseModel], run: Callable[[BaseModel], dict],
             summary: tuple[str, ...], argv: list[str] | None = None,
             then: Callable[[BaseModel, dict], str] | None = None) -> int:
    """Parse arguments, validate the recipe, run; exit status 2 with a one-line reason on bad input. After the
    JSON summary (stdout, the one line scripts read), ``then(recipe, stats)`` is a line for a person (stderr)."""
    parser = argparse.ArgumentParser(prog=prog, description=doc.splitlines()[0])
    parser.add_argument("--config", required=True, help="recipe YAML (jobs/recipes/*.yaml)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a recipe key (value as YAML), e.g. input.limit=2")
    args = parser.parse_args(argv)
    logging.basicConfig(level=os.environ.get("LOG_LEVEL", "INFO"), format="%(asctime)s %(message)s")
    try:
        recipe = load_model(model, args.config, args.set)
        stats = run(recipe)
    except (ValueError, FileNotFoundError, RuntimeError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    finally:
        _stop_ray()
    print(json.dumps({key: stats[key] for key in summary}), flush=True)
    if then is not None:
        print(then(recipe, stats), file=sys.stderr)
    return 0


def _stop_ray() -> None:
    """Stop (or leave) Ray now: Ray's own exit hook first sleeps half a second.

    Ray 2.60 stops a local head's GCS before its autoscaler monitor, whose SIGTERM handler then
    reports to the gone GCS until Ray kills it a second later; a monitor killed first costs nothing
    (a private attribute, so looked up with care: without it, Ray stops as usual).
    """
    ray = sys.modules.get("ray")
    if ray is None or not ray.is_initialized():
        return
    node = getattr(getattr(ray, "_private", None) and ray._private.worker, "_global_node", None)
    for info in (getattr(node, "all_processes", None) or {}).get("monitor", []):
        info.process.kill()
        info.process.wait()
    ray.shutdown()


def ray_address(cluster) -> str:
    """The Ray a job uses: ``ray.address``, else ``RAY_ADDRESS``, else ``local`` (a Ray of its own)."""
    return cluster.address or os.environ.get("RAY_ADDRESS") or "local"


def start_ray(cluster) -> str:
    """Connect to ``cluster.address`` (or RAY_ADDRESS), else start a local Ray of our own with
    ``cluster.num_cpus`` that ends with this process, even when it is killed (``jobs/common/reaper.py``),
    never joining a cluster that happens to run on this machine (``ray.init()`` with no address would
    join a ``ray start`` head); return the Ray session folder on this node (its
    ``logs/`` hold the workers' output). The sentinel's lease and attempt (ledger fencing) go to the
    workers too, wherever they run."""
    import ray

    from operators.io.ledger import ATTEMPT_ENV, LEASE_ENV

    address = ray_address(cluster)
    local = address == "local"
    if local and not ray.is_initialized():
        adopt()  # the job's own Ray ends with this process, however it ends
    if local:  # Ray says on every local start that its default, token auth, is on
        drop("ray._private.authentication.authentication_token_setup", "Token authentication is enabled for this Ray")
    # a submitted job's runtime env may carry them already; Ray refuses the same key from both
    job_env = json.loads(os.environ.get("RAY_JOB_CONFIG_JSON_ENV_VAR", "{}")).get("runtime_env", {}).get("env_vars")
    fence = {k: os.environ[k] for k in (LEASE_ENV, ATTEMPT_ENV) if k in os.environ and k not in (job_env or {})}
    context = ray.init(address=address, num_cpus=cluster.num_cpus if local else None, log_to_driver=False,
                       include_dashboard=cluster.dashboard if local else None, ignore_reinit_error=True,
                       runtime_env={"env_vars": fence} if fence else None)
    return context.address_info["session_dir"]
