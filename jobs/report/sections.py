"""The run report's sections: what each chart and the headline table show, from the files a run left."""

from __future__ import annotations

from collections import Counter

from jobs.report.charts import bars, table
from operators.quality.buckets import LABELS

TOP_LANGUAGES = 20
SLOWEST_SHARDS = 30


def kind(stats: dict) -> str | None:
    """Which job wrote a ``_stats.json``."""
    for key, name in (("operators", "curate"), ("largest_cluster", "dedup"), ("requests", "synthesize"),
                      ("histograms", "quality")):
        if key in stats:
            return name
    return None


def documents_in(curate: dict) -> int:
    """Documents read by a curate run: those its first operator saw."""
    return next(iter(curate["operators"].values()), {"in": 0})["in"]


HEADLINE = {
    "curate": (("shards", lambda s: s["shards"]), ("documents read", documents_in),
               ("documents kept", lambda s: s["rows"].get("data", 0)), ("bytes read", lambda s: s["bytes_read"])),
    "dedup": (("documents in", lambda s: s["input"]), ("documents kept", lambda s: s["kept"]),
              ("exact duplicates", lambda s: s["exact_duplicates"]),
              ("fuzzy duplicates", lambda s: s["fuzzy_duplicates"]),
              ("URL duplicates", lambda s: s["url_duplicates"]), ("largest cluster", lambda s: s["largest_cluster"])),
    "quality": (("documents", lambda s: s["documents"]), ("tokens", lambda s: s.get("tokens", 0))),
    "synthesize": (("requests", lambda s: s["requests"]), ("documents written", lambda s: s["rows"].get("data", 0)),
                   ("outputs rejected", lambda s: s["rows"].get("rejected", 0)),
                   ("tokens generated", lambda s: s["tokens_out"])),
}


def size_bin(size: int) -> str:
    """Cluster sizes one by one up to 10, then by powers of ten (11-100, 101-1000, ...)."""
    if size <= 10:
        return str(size)
    upper = 10 ** len(str(size - 1))
    return f"{upper // 10 + 1}-{upper}"


def _of(run, name: str) -> list[tuple[str, dict]]:
    return [(folder, s) for folder, s in sorted(run.stats.items()) if kind(s) == name]


def headline(run) -> list[tuple[str, str, str]]:
    rows = [(run.name(folder), figure, f"{value(s):,}") for name, figures in HEADLINE.items()
            for folder, s in _of(run, name) for figure, value in figures]
    return rows + [(f"{run.name(folder)}/mixture.json", figure, f"{m[figure]:,}")
                   for folder, m in sorted(run.mixtures.items()) for figure in ("documents", "tokens")]


def funnel(run) -> list[tuple[str, str]]:
    parts = []
    for folder, s in _of(run, "curate"):
        ops = s["operators"]
        parts.append((f"{run.name(folder)}: documents into each operator, kept and dropped", bars(
            [(name, [op["out"], op["in"] - op["out"]], f"{op['in']:,} in, {op['out']:,} out")
             for name, op in ops.items()], ("kept", "dropped"))))
        reasons = [(reason, [n], f"{n:,}") for op in ops.values()
                   for reason, n in sorted(op["dropped"].items(), key=lambda item: -item[1])]
        if reasons:
            parts.append((f"{run.name(folder)}: documents dropped, by reason", bars(reasons)))
    return parts


def languages(run) -> list[tuple[str, str]]:
    parts = []
    for folder, (kept, dropped) in sorted(run.languages.items()):
        total = kept + dropped
        ranked = sorted(total, key=lambda lang: (-total[lang], lang))
        rows = [(lang, [kept[lang], dropped[lang]], f"{kept[lang]:,} kept, {dropped[lang]:,} dropped")
                for lang in ranked[:TOP_LANGUAGES]]
        rest = ranked[TOP_LANGUAGES:]
        if rest:
            other = [sum(kept[lang] for lang in rest), sum(dropped[lang] for lang in rest)]
            rows.append((f"{len(rest)} others", other, f"{other[0]:,} kept, {other[1]:,} dropped"))
        if rows:
            parts.append((f"{run.name(folder)}: documents per language id", bars(rows, ("kept", "dropped"))))
    return parts


def buckets(run) -> list[tuple[str, str]]:
    return [(f"{run.name(folder)}: share of the {s['tokens']:,} tokens in each quality bucket", bars(
        [(f"{k} {LABELS[k]}", [share], f"{share:.4%}") for k, share in reversed(list(enumerate(
            s["bucket_token_shares"])))])) for folder, s in _of(run, "quality") if "bucket_token_shares" in s]


def clusters(run) -> list[tuple[str, str]]:
    parts = []
    for folder, sizes in sorted(run.clusters.items()):
        binned: Counter = Counter()
        for size, n in sizes.items():
            binned[size_bin(size)] += n
        order = sorted(binned, key=lambda label: int(label.split("-")[0]))
        if binned:
            parts.append((f"{run.name(folder)}: duplicate clusters by size (documents, the kept one included)",
                          bars([(label, [binned[label]], f"{binned[label]:,} clusters") for label in order])))
    return parts


def kinds(run) -> list[tuple[str, str]]:
    return [(f"{run.name(folder)}/mixture.json: tokens by kind", bars(
        [(name, [k["tokens"]], f"{k['tokens']:,} tokens, {k['documents']:,} documents")
         for name, k in m["kinds"].items()])) for folder, m in sorted(run.mixtures.items()) if m.get("kinds")]


def throughput(run) -> list[tuple[str, str]]:
    """Ledger entries that record their shard's time (the curate job's): documents and bytes per second."""
    parts = []
    for folder, entries in sorted(run.ledgers.items()):
        timed = sorted(((e["shard"], documents_in(e), e["bytes_read"], e["seconds"]) for e in entries
                        if e.get("seconds") and "operators" in e), key=lambda t: t[1] / t[3])
        if timed:
            caption = (f"slowest {SLOWEST_SHARDS} of {len(timed)} shards" if len(timed) > SLOWEST_SHARDS
                       else f"{len(timed)} shards")
            parts.append((f"{run.name(folder)}: documents per second of each shard ({caption})", bars(
                [(shard, [docs / seconds], f"{docs / seconds:,.1f} docs/s, {size / seconds / 1e6:,.2f} MB/s "
                  f"({docs:,} docs in {seconds:g} s)") for shard, docs, size, seconds in timed[:SLOWEST_SHARDS]])))
    return parts


def sections(run) -> list[tuple[str, str, list[tuple[str, str]]]]:
    return [("headline", "Headline numbers", [("", table(headline(run)))] if run.stats or run.mixtures else []),
            ("funnel", "Filter funnel", funnel(run)),
            ("languages", "Languages", languages(run)),
            ("buckets", "Quality buckets", buckets(run)),
            ("clusters", "Dedup cluster sizes", clusters(run)),
            ("kinds", "Tokens by kind", kinds(run)),
            ("throughput", "Per-shard throughput", throughput(run))]
