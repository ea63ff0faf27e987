"""Cost planner: what a recipe would cost on a whole Common Crawl crawl, before any cluster time is spent.

    python -m jobs.plan --crawl CC-MAIN-2024-22 --recipe jobs/recipes/mixture.yaml \\
        [--config jobs/recipes/plan.yaml] [--set key=value] [--prices cpu_core_hour=0.04,gpu_hour.H100=2.5] \\
        [--bench FILE_OR_JSON] [--json]

Prints shards, input size, documents, CPU core-hours, GPU-hours and cost per stage as a table (``--json``:
one JSON object). Every figure below is a key of the settings file (``jobs/recipes/plan.yaml``, which
says which figures were measured and which are estimates); ``--set`` changes any of them,
``--prices k=v,...`` the ``prices`` block, ``--bench`` (a JSON file or object) the ``cpu`` block.

Method (D documents, T = words_per_doc * tokens_per_word tokens per document):

* input: N shards from ``warc.paths.gz``, B bytes from HEADs of a sample (``jobs/plan/crawl.py``);
  D_read = B * docs_per_mb / 10^6.
* curate: core-hours = D_read / curate_docs_per_core_s / 3600; it keeps D_cur = D_read * curate_kept.
* dedup: core-hours = D_cur * words_per_doc / dedup_words_per_core_s / 3600; keeps D = D_cur * dedup_kept.
* quality, on D: fastText core-hours = D / fasttext_docs_per_core_s / 3600; a transformer classifier
  GPU-hours = D / classifier_docs_per_gpu_s[gpu] / 3600 (on ``device: cpu``: core-hours at
  transformer_docs_per_core_s); an LLM rating is one LLM pass on the documents' start.
* LLM pass (a prompt of a synthesis recipe): docs = D * fraction * share of its quality_bucket band,
  where the share of buckets <= b is ((b+1)/20)^e (``quality.bucket_exponent``; e defaults to the number
  of bucketed classifiers, independent ones) or the cumulative ``quality.bucket_shares``. Per document
  c = ceil(T / budget) chunks of T/c tokens (budget: the prompt's max_input_tokens), or one chunk of
  min(T, budget) when only the start is read (TPT unless segmented, ratings, ProX's document pass);
  requests = docs * c; input tokens = requests * (chunk + template), template = the prompt's words *
  tokens_per_word + chat_tokens; output tokens = requests * min(answer_ratio * chunk + answer_tokens,
  max_tokens) (the family's figures, the recipe's sampling.max_tokens); GPU-hours = (input /
  input_tokens_s + output / output_tokens_s) * tensor_parallel_size / 3600, the rates being those of one
  replica of the recipe's model on ``gpu``. ProX's chunk pass is counted on every document sent (an upper
  bound: its document pass drops some).
* S3 on the run's bucket, per job the recipe runs (a mixture: curate, dedup, quality, each synthesis recipe):
  N * (its ``stage_requests`` PUT + POST + LIST per shard) / 1000 * s3_put_per_1000 + N * (GET + HEAD) / 1000 *
  s3_get_per_1000 (the figures: ``python -m benchmarks.control_plane``; DELETE is free).
* cost = core-hours * cpu_core_hour + GPU-hours * gpu_hour[gpu] + N * requests_per_shard / 1000 *
  s3_requests_per_1000 + B / 10^9 * egress_per_gb + the run's bucket's requests.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from pydantic import ValidationError

from jobs.common.recipe import load_model
from jobs.plan.config import CpuThroughput, PlanConfig
from jobs.plan.crawl import CrawlInput, crawl_input
from jobs.plan.work import recipe_rows, request_rows
from operators.io.storage import Storage

DEFAULTS = Path(__file__).parents[1] / "recipes" / "plan.yaml"
COLUMNS = ("stage", "what", "docs", "requests", "in tokens", "out tokens", "core-hours", "GPU-hours", "cost $")


def with_bench(cfg: PlanConfig, bench: str) -> PlanConfig:
    """``cfg`` with its ``cpu`` figures replaced by those of a JSON object (inline or a file)."""
    text = bench if bench.lstrip().startswith("{") else Path(bench).read_text()
    try:
        figures = json.loads(text)
    except json.JSONDecodeError as err:
        raise ValueError(f"--bench: not JSON ({err})") from None
    if not isinstance(figures, dict):
        raise ValueError("--bench: a JSON object of cpu figures is expected")
    try:
        cpu = CpuThroughput.model_validate({**cfg.cpu.model_dump(), "measured": f"--bench {bench}", **figures})
    except ValidationError as err:
        problems = (f"--bench {'.'.join(map(str, e['loc']))}: {e['msg']}" for e in err.errors())
        raise ValueError("; ".join(problems)) from None
    return cfg.model_copy(update={"cpu": cpu})


def price_overrides(prices: str | None) -> list[str]:
    """``cpu_core_hour=0.04,gpu_hour.H100=2.5`` as ``--set prices.<key>=<value>`` overrides."""
    return [f"prices.{item.strip()}" for item in (prices or "").split(",") if item.strip()]


def plan(cfg: PlanConfig, crawl: CrawlInput, recipe: str) -> dict:
    """The plan as a JSON-ready dict: input, rows with their cost, S3 use, totals."""
    gpu_price, d = cfg.prices.gpu_hour[cfg.gpu], cfg.documents
    docs = crawl.bytes * d.docs_per_mb / 1e6
    rows = [{**r.as_dict(), "cost": r.core_hours * cfg.prices.cpu_core_hour + r.gpu_hours * gpu_price}
            for r in recipe_rows(recipe, docs, cfg)]
    requests = crawl.shards * cfg.listing.requests_per_shard
    s3_cost = requests / 1000 * cfg.prices.s3_requests_per_1000 + crawl.bytes / 1e9 * cfg.prices.egress_per_gb
    run_requests = request_rows(recipe, crawl.shards, cfg)
    return {"crawl": crawl.as_dict(), "recipe": recipe, "gpu": cfg.gpu, "documents": docs,
            "tokens_per_doc": d.words_per_doc * d.tokens_per_word, "rows": rows,
            "s3": {"requests": requests, "cost": s3_cost}, "run_requests": run_requests,
            "totals": {"core_hours": sum(r["core_hours"] for r in rows), "gpu_hours": sum(r["gpu_hours"] for r in rows),
                       "cost": sum(r["cost"] for r in rows) + s3_cost + sum(r["cost"] for r in run_requests)},
            "prices": cfg.prices.model_dump(), "cpu": cfg.cpu.model_dump()}


def count(x: float) -> str:
    """A count in short form: 3.22B, 718.40M, 12.00k, 950; empty for 0."""
    for unit, scale in (("T", 1e12), ("B", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(x) >= scale:
            return f"{x / scale:.2f}{unit}"
    return f"{x:.0f}" if x else ""


def hours(x: float) -> str:
    return f"{x:,.2f}" if x else ""


def table(result: dict) -> str:
    """The plan as readable text: a header, one line per stage, S3, totals, prices."""
    c, t, p = result["crawl"], result["totals"], result["prices"]
    tb = f"{c['bytes'] / 1e12:.4g} TB"
    error = f"+- {c['bytes_error95'] / 1e12:.3g} TB at 95 %; " if c["bytes_error95"] else ""
    lines = [f"plan: {c['crawl']} with {result['recipe']}, GPU stages on {result['gpu']}",
             f"input: {c['shards']:,} shards, {c['bytes']:,.0f} bytes = {tb} ({error}sizes of {c['sampled']:,} "
             f"shards read)",
             f"documents: {count(result['documents'])} read, {result['tokens_per_doc']:,.0f} tokens each after "
             f"curation", ""]
    rows = [list(COLUMNS)]
    rows += [[r["stage"], r["what"], count(r["docs"]), count(r["requests"]), count(r["input_tokens"]),
              count(r["output_tokens"]), hours(r["core_hours"]), hours(r["gpu_hours"]), f"{r['cost']:,.2f}"]
             for r in result["rows"]]
    rows.append(["s3", f"{count(result['s3']['requests'])} requests, {tb} read"] + [""] * 6
                + [f"{result['s3']['cost']:,.2f}"])
    for r in result["run_requests"]:
        kinds = ", ".join(f"{k.upper()} {count(r[k])}" for k in ("get", "put", "head", "list", "post") if r[k])
        rows.append([f"s3 {r['stage']}", f"{r['what']}: {kinds}", "", count(r["requests"])] + [""] * 4
                    + [f"{r['cost']:,.2f}"])
    rows.append(["total", "", "", "", "", "", f"{t['core_hours']:,.2f}", f"{t['gpu_hours']:,.2f}", f"{t['cost']:,.2f}"])
    widths = [max(len(row[i]) for row in rows) for i in range(len(COLUMNS))]
    for row in rows:
        cells = [v.ljust(w) if i < 2 else v.rjust(w) for i, (v, w) in enumerate(zip(row, widths, strict=True))]
        lines.append("  ".join(cells).rstrip())
    gpu_prices = ", ".join(f"{k} {v:g}" for k, v in p["gpu_hour"].items())
    lines += ["", f"prices (USD): CPU core-hour {p['cpu_core_hour']:g}; GPU-hour {gpu_prices}; "
                  f"S3 input {p['s3_requests_per_1000']:g} per 1000 requests, egress {p['egress_per_gb']:g} per GB; "
              f"run's bucket {p['s3_put_per_1000']:g} per 1000 PUT/POST/LIST, "
              f"{p['s3_get_per_1000']:g} per 1000 GET/HEAD",
              f"CPU throughput: {result['cpu']['measured']}"]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m jobs.plan", description=__doc__.splitlines()[0])
    parser.add_argument("--crawl", required=True, help="a crawl id like CC-MAIN-2024-22")
    parser.add_argument("--recipe", required=True, help="a curation recipe or a mixture (jobs/recipes/*.yaml)")
    parser.add_argument("--config", default=str(DEFAULTS), help="planner settings (default: jobs/recipes/plan.yaml)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a setting")
    parser.add_argument("--prices", metavar="KEY=VALUE,...", help="override prices, e.g. gpu_hour.H100=2.5")
    parser.add_argument("--bench", metavar="FILE_OR_JSON", help="cpu throughput figures, e.g. from a benchmark")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    args = parser.parse_args(argv)
    try:
        cfg = load_model(PlanConfig, args.config, [*args.set, *price_overrides(args.prices)])
        if args.bench:
            cfg = with_bench(cfg, args.bench)
        recipe_rows(args.recipe, 0.0, cfg)  # a bad recipe or a missing figure fails before any request
        request_rows(args.recipe, 0, cfg)
        crawl = crawl_input(Storage(**cfg.storage.model_dump()), args.crawl, cfg.listing.sample, cfg.listing.threads)
        result = plan(cfg, crawl, args.recipe)
    except (ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(json.dumps(result, indent=1) if args.json else table(result))
    return 0
