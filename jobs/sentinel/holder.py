"""The lease holder's command line: ``jobs.sentinel.launch.hold`` around one job.

    python -m jobs.sentinel.holder --lease <root>/_runs/<crawl>.json --attempt N [...] -- <module> <job args>
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys

from jobs.sentinel.launch import hold
from operators.io.storage import Storage


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m jobs.sentinel.holder", description=__doc__.splitlines()[0])
    parser.add_argument("--lease", required=True, help="the registry entry <root>/_runs/<crawl>.json")
    parser.add_argument("--attempt", required=True, type=int)
    parser.add_argument("--storage", default="{}", help="Storage settings as JSON (endpoint_url, region ...)")
    parser.add_argument("--ttl-s", type=float, default=600)
    parser.add_argument("--heartbeat-s", type=float, default=60)
    parser.add_argument("--timeout-s", type=float, default=86400)
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- <module> <job arguments>")
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("no job given after --")
    logging.basicConfig(level=os.environ.get("LOG_LEVEL", "INFO"), format="%(asctime)s %(message)s")
    try:
        final = hold(Storage(**json.loads(args.storage)), args.lease, args.attempt, command, args.ttl_s,
                     args.heartbeat_s, args.timeout_s)
    except (ValueError, RuntimeError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(json.dumps({k: final.get(k) for k in ("crawl", "attempt", "status", "error")}))
    return 0 if final["status"] == "done" else 2


if __name__ == "__main__":
    sys.exit(main())
