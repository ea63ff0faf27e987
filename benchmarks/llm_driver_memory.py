"""The synthesize driver's memory as the output grows: it handles counts and ledger entries, never text.

    python -m benchmarks.llm_driver_memory [--docs 300] [--factor 10]

Runs ``python -m jobs.synthesize`` (rephrase-wrap recipe, ``openai`` engine) against a scripted
OpenAI-compatible server on 127.0.0.1 that answers instantly with a long text, on N and N x factor
documents, and samples the driver process's resident memory every 0.1 s. Workers write the results
and finish the shards, so the driver's peak should not grow with the output.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
import pyarrow as pa
import pyarrow.parquet as pq

from benchmarks.real_pages import real_texts
from operators.schema import conform, output_schema
from tests.scripted_llm import ScriptedLLM

ROOT = Path(__file__).resolve().parents[1]


def answer(messages: list[dict]) -> str:
    """A long answer that differs per document: the prompt's words in reverse order, twice."""
    words = messages[-1]["content"].split()[::-1]
    return " ".join(words + words)


def write_input(folder: Path, docs: int, shards: int = 8) -> None:
    texts = [t for t in real_texts() if len(t.split()) > 50]
    for s in range(shards):
        rows = [{"id": f"{s}-{i}", "text": " ".join(texts[(s * docs + i) % len(texts)].split()[:300]),
                 "language": "en"} for i in range(docs // shards)]
        path = folder / "CC-MAIN-2024-22" / f"s{s}.parquet"
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(conform(pa.Table.from_pylist(rows), output_schema({})), path)


def run(docs: int, tokenizer: str, url: str, work: Path) -> tuple[float, int, float]:
    """(driver peak RSS in MiB, characters of generated text written, seconds) of one run over ``docs`` documents."""
    write_input(work / f"in-{docs}", docs)
    out = work / f"out-{docs}"
    sets = [f"input={work / f'in-{docs}'}", f"output={out}", "prompts=[wrap_easy]", "mix=false",
            "llm.engine=openai", "llm.model=scripted", f"llm.endpoint.url={url}", f"tokenizer={tokenizer}",
            "validation.check_language=false"]
    start = time.perf_counter()
    job = subprocess.Popen([sys.executable, "-m", "jobs.synthesize", "--config", "jobs/recipes/rephrase-wrap.yaml",
                            *[a for s in sets for a in ("--set", s)]], cwd=ROOT, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL, env={**os.environ, "RAY_USAGE_STATS_ENABLED": "0"})
    driver, peak = psutil.Process(job.pid), 0
    while job.poll() is None:
        try:
            peak = max(peak, driver.memory_info().rss)
        except psutil.NoSuchProcess:
            break
        time.sleep(0.1)
    if job.returncode != 0:
        raise SystemExit(f"synthesize failed on {docs} documents (exit {job.returncode})")
    texts = pq.ParquetDataset([str(p) for p in out.rglob("*.parquet")]).read(columns=["text"]).column("text")
    size = sum(len(t or "") for t in texts.to_pylist())
    return peak / 2**20, size, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=300)
    parser.add_argument("--factor", type=int, default=10)
    parser.add_argument("--tokenizer", default=None, help="a local tokenizer folder (default: trained here)")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="cc-refinery-bench-driver-"))
    tokenizer = args.tokenizer or _tokenizer(work)
    server = ScriptedLLM(answer)
    try:
        rows = [(n, *run(n, tokenizer, server.url, work)) for n in (args.docs, args.docs * args.factor)]
    finally:
        server.close()
    print("| documents | generated text MB | driver peak RSS MiB | seconds |")
    print("|---|---|---|---|")
    for n, rss, size, seconds in rows:
        print(f"| {n} | {size / 1e6:.1f} | {rss:.0f} | {seconds:.1f} |")
    print(f"output x{rows[1][2] / rows[0][2]:.1f}, driver peak x{rows[1][1] / rows[0][1]:.2f}")


def _tokenizer(work: Path) -> str:
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.train_from_iterator(real_texts()[:100], trainers.BpeTrainer(vocab_size=2000,
                                                                     initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    PreTrainedTokenizerFast(tokenizer_object=bpe).save_pretrained(work / "tokenizer")
    return str(work / "tokenizer")


if __name__ == "__main__":
    main()
