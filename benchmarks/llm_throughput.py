"""Output tokens/s per GPU of our synthesis stage vs raw vLLM offline on the same model and prompts.

    python -m benchmarks.llm_throughput --model Qwen/Qwen2.5-0.5B-Instruct --gpus 1 [--docs 2000]

Raw vLLM: ``vllm.LLM.chat`` over all requests in one call (the best case). Ours: the synthesize
job (Ray Data + ray.data.llm + chunking, validation and Parquet writing) on the same documents
and prompt. GPU busy fraction is sampled with ``nvidia-smi`` every 0.5 s during each run.
"""

from __future__ import annotations

import argparse
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from benchmarks.real_pages import real_texts
from operators.schema import conform, output_schema


class GpuBusy:
    """Mean utilisation.gpu over the run, from nvidia-smi samples."""

    def __init__(self):
        self.samples: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self):
        while not self._stop.wait(0.5):
            out = subprocess.run(["nvidia-smi", "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits"],
                                 capture_output=True, text=True).stdout.split()
            if out:
                self.samples.append(sum(map(float, out)) / len(out))

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()

    @property
    def fraction(self) -> float:
        return sum(self.samples) / len(self.samples) / 100 if self.samples else float("nan")


def documents(count: int) -> list[str]:
    """``count`` documents of at most 600 words, cycling over the real pages with more than 50."""
    texts = [" ".join(t.split()[:600]) for t in real_texts() if len(t.split()) > 50]
    return [texts[i % len(texts)] for i in range(count)]


def raw_vllm(model: str, gpus: int, texts: list[str], prompt_name: str, max_tokens: int) -> tuple[int, float, float]:
    from vllm import LLM, SamplingParams

    from operators.llm.prompts import load_prompt

    llm = LLM(model=model, tensor_parallel_size=gpus, enable_prefix_caching=True)
    prompt = load_prompt(prompt_name)
    conversations = [prompt.messages(t) for t in texts]
    params = SamplingParams(temperature=0.7, top_p=0.95, max_tokens=max_tokens, seed=0)
    with GpuBusy() as busy:
        start = time.perf_counter()
        outputs = llm.chat(conversations, params)
        seconds = time.perf_counter() - start
    del llm
    return sum(len(o.outputs[0].token_ids) for o in outputs), seconds, busy.fraction


def ours(model: str, gpus: int, texts: list[str], prompt_name: str, max_tokens: int) -> tuple[int, float, float]:
    from jobs.synthesize import SynthRecipe, run

    work = Path(tempfile.mkdtemp(prefix="bench-llm-"))
    rows = [{"id": f"d{i}", "text": t, "language": "en"} for i, t in enumerate(texts)]
    for k in range(4):
        path = work / "in" / "CC-MAIN-2024-22" / f"s{k}.parquet"
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(conform(pa.Table.from_pylist(rows[k::4]), output_schema({})), path)
    recipe = SynthRecipe(name="bench", input=str(work / "in"), output=str(work / "out"), prompts=[prompt_name],
                         mix=False, llm={"model": model, "replicas": gpus, "batch_size": 256,
                                         "sampling": {"max_tokens": max_tokens, "seed": 0}})
    with GpuBusy() as busy:
        start = time.perf_counter()
        stats = run(recipe)
        seconds = time.perf_counter() - start
    return stats["tokens_out"], seconds, busy.fraction


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--gpus", type=int, default=1)
    parser.add_argument("--docs", type=int, default=2000)
    parser.add_argument("--prompt", default="wrap_medium")
    parser.add_argument("--max-tokens", type=int, default=512)
    args = parser.parse_args()
    texts = documents(args.docs)
    rows = [("raw vLLM (LLM.chat)", *raw_vllm(args.model, args.gpus, texts, args.prompt, args.max_tokens)),
            ("cc-refinery synthesize", *ours(args.model, args.gpus, texts, args.prompt, args.max_tokens))]
    print(f"| run | output tokens | seconds | tokens/s/GPU | GPU busy | vs raw |  (model {args.model}, "
          f"{args.docs} docs, prompt {args.prompt})")
    print("|---|---|---|---|---|---|")
    base = rows[0][1] / rows[0][2]
    for name, tokens, seconds, busy in rows:
        print(f"| {name} | {tokens} | {seconds:.1f} | {tokens / seconds / args.gpus:.0f} | {busy:.2f} | "
              f"{tokens / seconds / base:.2f} |")


if __name__ == "__main__":
    main()
