"""The synthesis job end to end on vLLM's CPU build, local Ray, and a tiny random-weight Llama."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.parquet as pq
import pytest

from jobs.common.recipe import load_model
from jobs.synthesize import SynthRecipe, run
from operators.llm.chunking import chunk_text
from operators.llm.requests import token_counter
from operators.schema import conform, output_schema
from tests.conftest import ENGLISH, GERMAN, ROOT
from tests.waiting import wait_until

LONG = "\n\n".join(ENGLISH)


def _input(folder):
    shards = {"s0": [dict(id="a", text=LONG, language="en", url="https://a.example/"),
                     dict(id="b", text=ENGLISH[0], language="en")],
              "s1": [dict(id="c", text=GERMAN[0], language="de")]}
    for name, rows in shards.items():
        path = folder / "CC-MAIN-2024-22" / f"{name}.parquet"
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(conform(pa.Table.from_pylist(rows), output_schema({})), path)
    return folder


@pytest.mark.slow
def test_synthesis_provenance_chunks_validation_and_resume_on_a_vllm_server(tmp_path, tiny_model_endless,
                                                                          vllm_server, ray_local):
    """Real vLLM generation behind its OpenAI-compatible server (one engine start for both runs; the job's own
    vLLM stage on Ray Data is run by tests/test_synthesize_cli.py and tests/test_pipeline_cli.py)."""
    prompt = tmp_path / "tiny_easy.yaml"
    prompt.write_text((ROOT / "operators/llm/prompts/wrap_easy.yaml").read_text()
                      .replace("name: wrap_easy", "name: tiny_easy").replace("max_input_tokens: 1000",
                                                                             "max_input_tokens: 60"))
    src, out = _input(tmp_path / "in"), tmp_path / "out"
    recipe = load_model(SynthRecipe, str(ROOT / "jobs/recipes/rephrase-wrap.yaml"), [
        f"input={src}", f"output={out}", f"prompts=[{prompt}, wrap_qa]", "llm.engine=openai", "llm.model=tiny",
        f"llm.endpoint.url={vllm_server}", f"tokenizer={tiny_model_endless}", "llm.sampling.max_tokens=16",
        "llm.sampling.temperature=0"])

    stats = run(recipe)

    kept = pads.dataset(str(out), format="parquet").to_table().to_pylist()  # _rejected, _ledger: skipped
    rejected = pads.dataset(str(out / "_rejected"), format="parquet").to_table().to_pylist()
    synthetic = [r for r in kept if r["synth_task"]] + rejected
    assert sorted(r["id"] for r in synthetic) == ["a:tiny_easy", "a:wrap_qa", "b:tiny_easy", "b:wrap_qa",
                                                  "c:tiny_easy", "c:wrap_qa"]
    assert sorted(r["id"] for r in kept if not r["synth_task"]) == ["a", "b", "c"]  # mix: real next to synthetic
    for row in synthetic:
        assert row["synth_task"] == "rephrase" and row["synth_model"] == "tiny"
        assert row["synth_prompt"] == ("tiny_easy@1" if row["id"].endswith("tiny_easy") else "wrap_qa@1")
        assert row["parent_id"] == row["id"].split(":")[0] and row["synth_seed"] == 0
        assert row["tokens_in"] > 0 and 0 < row["tokens_out"] <= 16 * row["synth_chunks"]
        assert row["filter_reason"] is None or row["filter_reason"].startswith("synth.")
    chunks = {r["id"]: r["synth_chunks"] for r in synthetic}
    assert chunks["a:tiny_easy"] == len(chunk_text(LONG, 60, token_counter(tiny_model_endless))) > 1
    assert chunks["a:wrap_qa"] == chunks["b:tiny_easy"] == 1
    assert sum(stats["outputs"].values()) == 6 and stats["requests"] == sum(chunks.values())
    assert stats["rows"] == {"data": 3 + 6 - len(rejected), "rejected": len(rejected)}
    assert {r["url"] for r in synthetic if r["parent_id"] == "a"} == {"https://a.example/"}

    first_s0 = (out / "CC-MAIN-2024-22" / "s0.parquet").stat().st_mtime_ns
    (out / "_ledger" / "CC-MAIN-2024-22" / "s1.json").unlink()
    (out / "CC-MAIN-2024-22" / "s1.parquet").unlink()
    again = run(recipe)
    assert (out / "CC-MAIN-2024-22" / "s0.parquet").stat().st_mtime_ns == first_s0
    assert (out / "CC-MAIN-2024-22" / "s1.parquet").exists() and again["outputs"] == stats["outputs"]
    assert json.loads((out / "_stats.json").read_text())["shards"] == 2


@pytest.fixture(scope="module")
def vllm_server(tiny_model_endless, tmp_path_factory):
    """A real OpenAI-compatible endpoint: ``vllm serve`` (CPU build) with the tiny model, on 127.0.0.1."""
    import socket
    import subprocess
    import sys
    import urllib.request

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    folder = tmp_path_factory.mktemp("vllm-serve")
    log = open(folder / "serve.log", "w")
    server = subprocess.Popen([sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model",
                               tiny_model_endless, "--served-model-name", "tiny", "--host", "127.0.0.1",
                               "--port", str(port), "--dtype", "float32", "--max-model-len", "1024", "--enforce-eager",
                               # on vLLM's CPU build a server needs its KV cache sized, as llm.cpu_kv_cache_gb does
                               "--kv-cache-memory-bytes", str(1 << 30)],
                              stdout=log, stderr=subprocess.STDOUT)

    def healthy() -> bool:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1)
        except OSError:
            return False
        return True

    try:
        wait_until(healthy, f"the vLLM server's /health (its log: {folder / 'serve.log'})", every_s=1,
                   alive=lambda: server.poll() is None)
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        server.terminate()
        server.wait(timeout=60)
        log.close()


@pytest.mark.slow
def test_synthesis_through_an_openai_compatible_endpoint(tmp_path, tiny_model_endless, vllm_server, ray_local):
    src, out = _input(tmp_path / "in"), tmp_path / "out"
    recipe = load_model(SynthRecipe, str(ROOT / "jobs/recipes/rephrase-wrap.yaml"), [
        f"input={src}", f"output={out}", "prompts=[wrap_qa]", "llm.engine=openai", "llm.model=tiny",
        f"llm.endpoint.url={vllm_server}", f"tokenizer={tiny_model_endless}", "llm.sampling.max_tokens=8",
        "llm.sampling.temperature=0", "mix=false"])
    stats = run(recipe)
    rows = pads.dataset(str(out / "_rejected"), format="parquet").to_table().to_pylist()
    rows += pads.dataset(str(out), format="parquet").to_table().to_pylist()
    assert sorted(r["id"] for r in rows) == ["a:wrap_qa", "b:wrap_qa", "c:wrap_qa"]
    for row in rows:  # tokens from the endpoint's usage; "length" finish reason -> truncated
        assert row["tokens_in"] > 0 and row["tokens_out"] == 8 and row["synth_model"] == "tiny"
        assert row["filter_reason"] == "synth.truncated"
    assert stats["outputs"] == {"synth.truncated": 3} and stats["requests"] == 3
