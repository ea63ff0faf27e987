"""Throughput of the export's tokenization against datatrove's DocumentTokenizer, and of the whole export job.

    python -m benchmarks.export_throughput [--warc FILE] [--tokenizer FOLDER] [--copies 3]

Tokenization, one core (the tokenizers library's thread pool off for both): the texts of the real pages are
tokenized with EOS appended and their tokens written to a local file, by ours (``ExportTokenizer.encode``:
``encode_batch_fast`` without offsets, one numpy write per batch) and by datatrove's ``DocumentTokenizer``
(unshuffled: ``encode_batch`` with a post-processor adding EOS, a ``struct.pack`` per document), best of three
runs each, interleaved. Whole job: ``python -m jobs.export`` on a folder of the texts (``--copies`` times over,
in four Parquet files), timed from outside (Python, imports, a fresh local Ray: all included). Without
``--tokenizer`` a byte-level BPE of 32k tokens is trained on the texts first.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from benchmarks.curate_throughput import print_table
from benchmarks.real_pages import DEFAULT_WARC, real_texts
from operators.export.tokenize import ExportTokenizer

ROOT = Path(__file__).resolve().parents[1]
RECIPE = ROOT / "jobs" / "recipes" / "export.yaml"
BATCH = 1024
RUNS = 3


@contextmanager
def one_core():
    """The tokenizers library's batch encoding on the calling thread only (it reads this variable per call)."""
    before = os.environ.get("TOKENIZERS_PARALLELISM")
    os.environ["TOKENIZERS_PARALLELISM"] = "false"
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("TOKENIZERS_PARALLELISM")
        else:
            os.environ["TOKENIZERS_PARALLELISM"] = before


def ours(texts: list[str], tokenizer_path: str, folder: Path, fast: bool = True) -> float:
    """Seconds to tokenize ``texts`` (+EOS) and write their tokens, as the export's phase A does (``fast``: by
    tiktoken's BPE core where it is exact, else the tokenizers library)."""
    tokenizer = ExportTokenizer(tokenizer_path, fast=fast)
    tokenizer.fast_bpe  # noqa: B018 - built (and checked) before the clock starts, as once per worker
    start = time.perf_counter()
    with open(folder / "ours.tok", "wb") as out:
        for i in range(0, len(texts), BATCH):
            tokens, _ = tokenizer.encode(texts[i:i + BATCH])
            out.write(tokens.astype(np.uint16 if tokenizer.vocab_size < 65500 else np.uint32).tobytes())
    return time.perf_counter() - start


def datatrove(texts: list[str], tokenizer_path: str, folder: Path) -> float:
    """Seconds for datatrove's DocumentTokenizer (no shuffle) on the same texts, tokenizer and EOS."""
    from datatrove.data import Document
    from datatrove.pipeline.tokens.tokenizer import DocumentTokenizer

    eos = ExportTokenizer(tokenizer_path).backend.id_to_token(ExportTokenizer(tokenizer_path).eos_id)
    step = DocumentTokenizer(str(folder / "datatrove"), os.path.join(tokenizer_path, "tokenizer.json"),
                             eos_token=eos, save_final_metadata=False, shuffle_documents=False, batch_size=BATCH)
    docs = [Document(text=t, id=str(i)) for i, t in enumerate(texts)]
    start = time.perf_counter()
    step.run(iter(docs))
    return time.perf_counter() - start


def tokenize_rows(texts: list[str], tokenizer_path: str) -> list[tuple]:
    """(stage, docs, MB of text, seconds) for ours and datatrove's tokenization on one core, best of three."""
    mb = sum(len(t.encode()) for t in texts) / 1e6
    runners = {"ours": ours, "ours, tokenizers library": lambda *a: ours(*a, fast=False), "datatrove": datatrove}
    best = dict.fromkeys(runners, float("inf"))
    with tempfile.TemporaryDirectory(prefix="cc-refinery-bench-") as tmp, one_core():
        engine = ExportTokenizer(tokenizer_path).engine
        for run in range(RUNS):
            for number, (name, fn) in enumerate(runners.items()):
                folder = Path(tmp) / f"{number}-{run}"
                folder.mkdir()
                best[name] = min(best[name], fn(texts, tokenizer_path, folder))
    return [(f"tokenize+EOS+write (ours, {engine})", len(texts), mb, best["ours"]),
            ("tokenize+EOS+write (ours, tokenizers)", len(texts), mb, best["ours, tokenizers library"]),
            ("tokenize+EOS+write (datatrove)", len(texts), mb, best["datatrove"])]


def job_row(texts: list[str], tokenizer_path: str, folder: Path) -> tuple:
    """(stage, docs, MB, seconds) of ``python -m jobs.export`` on the texts in four Parquet files."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    data = folder / "in"
    data.mkdir()
    for part in range(4):
        rows = texts[part::4]
        pq.write_table(pa.table({"id": [f"{part}-{i}" for i in range(len(rows))], "text": rows}),
                       data / f"part-{part}.parquet")
    command = [sys.executable, "-m", "jobs.export", "--config", str(RECIPE), "--set", f"input={data}",
               "--set", f"output={folder / 'out'}", "--set", f"tokenizer={tokenizer_path}",
               "--set", "shard_tokens=1000000"]
    start = time.perf_counter()
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, env={**os.environ, "LOG_LEVEL": "WARNING"})
    seconds = time.perf_counter() - start
    if done.returncode:
        raise SystemExit(f"jobs.export failed: {done.stderr[-2000:]}")
    shards = json.loads(done.stdout.strip().splitlines()[-1])["shards"]
    return (f"export job ({shards} shard(s), {os.cpu_count()} cores, the command)", len(texts),
            sum(len(t.encode()) for t in texts) / 1e6, seconds)


def train_tokenizer(texts: list[str], folder: Path) -> str:
    """A byte-level BPE of 32k tokens trained on ``texts``, saved as transformers saves a fast tokenizer."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    bpe.train_from_iterator(texts, trainers.BpeTrainer(vocab_size=32000, special_tokens=["<s>", "</s>"],
                                                       initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    PreTrainedTokenizerFast(tokenizer_object=bpe, bos_token="<s>", eos_token="</s>").save_pretrained(str(folder))
    return str(folder)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--warc", type=Path, default=DEFAULT_WARC)
    parser.add_argument("--tokenizer", help="a fast tokenizer's folder (tokenizer.json); default: trained here")
    parser.add_argument("--copies", type=int, default=3, help="copies of the texts for the whole-job run")
    args = parser.parse_args()
    if not args.warc.exists():
        raise SystemExit(f"benchmark input {args.warc} not found (it lives in ../shared/data)")
    texts = real_texts(args.warc)
    work = Path(tempfile.mkdtemp(prefix="cc-refinery-bench-"))
    try:
        tokenizer = args.tokenizer or train_tokenizer(texts, work / "tokenizer")
        rows = tokenize_rows(texts, tokenizer)
        job = job_row(texts * args.copies, tokenizer, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print_table(rows)
    print(f"ours / datatrove, tokens per second per core: {rows[2][3] / rows[0][3]:.2f}x")
    print(f"{job[0]}: {job[1]} docs, {job[2]:.1f} MB in {job[3]:.2f} s")


if __name__ == "__main__":
    main()
