"""The export job: shuffled, tokenized shards read back by megatron-core's and datatrove's own readers."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from jobs.common.recipe import load_model
from jobs.export import ExportRecipe, main, run
from operators.export import megatron
from tests.conftest import ENGLISH, GERMAN, ROOT

RECIPE = str(ROOT / "jobs/recipes/export.yaml")
LABELS = ("Low", "Medium", "High")
WEIGHTS = {"rephrased": 0.5, "thought": 2.0}


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory) -> str:
    """A byte-level BPE tokenizer (vocab 600) trained here, saved as transformers saves a fast tokenizer."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    bpe.train_from_iterator((ENGLISH + GERMAN) * 20, trainers.BpeTrainer(
        vocab_size=600, special_tokens=["<s>", "</s>", "<pad>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    out = str(tmp_path_factory.mktemp("tokenizer"))
    PreTrainedTokenizerFast(tokenizer_object=bpe, bos_token="<s>", eos_token="</s>").save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def mixture(tmp_path_factory, real_texts) -> tuple[Path, list[dict]]:
    """A mixture run folder as the pipeline leaves it: real documents (one rehydrated 3 times, one without text)
    in two quality shards, rephrased and thought ones under synth/, and mixture.json naming them where the run
    used to be (the export reads them relative to its input)."""
    run_dir = tmp_path_factory.mktemp("mixture")
    docs = [{"id": f"real-{i}", "text": t, "language": "en", "quality_label": LABELS[i % 3],
             "rehydration_repeats": 3 if i == 0 else None, "synth_task": None, "synth_prompt": None}
            for i, t in enumerate(real_texts[:60])]
    docs[5]["text"] = ""
    synth = [{"id": f"reph-{i}", "text": f"In other words: {t[:1500]}", "synth_task": "rephrase",
              "synth_prompt": "wikipedia", "language": "en", "quality_label": None, "rehydration_repeats": None}
             for i, t in enumerate(real_texts[60:90])]
    synth += [{"id": f"think-{i}", "text": f"Let us think. {t[:1500]}", "synth_task": "think",
               "synth_prompt": "reasoning", "language": "en", "quality_label": None, "rehydration_repeats": None}
              for i, t in enumerate(real_texts[90:100])]
    for rows, path in ((docs[:30], "quality/CC-MAIN-2024-10/shard-00000.parquet"),
                       (docs[30:], "quality/CC-MAIN-2024-10/shard-00001.parquet"),
                       (synth, "synth/rephrase-wrap/CC-MAIN-2024-10/shard-00000.parquet")):
        (run_dir / path).parent.mkdir(parents=True, exist_ok=True)
        table = pa.Table.from_pylist(rows)
        if path.startswith("quality"):
            table = table.drop_columns(["synth_task", "synth_prompt"])
        pq.write_table(table, run_dir / path)
    (run_dir / "mixture.json").write_text(json.dumps(
        {"sources": ["./output/old-run/quality", "./output/old-run/synth/rephrase-wrap"]}))
    return run_dir, docs + synth


def recipe(input_: Path, output: Path, tokenizer: str, *more: str) -> ExportRecipe:
    return load_model(ExportRecipe, RECIPE, [f"input={input_}", f"output={output}", f"tokenizer={tokenizer}",
                                             "shard_tokens=20000", f"weights={json.dumps(WEIGHTS)}", *more])


def expected(docs: list[dict], tokenizer: str) -> dict[str, tuple]:
    """Each document's tokens as the tokenizer gives them, then EOS (``</s>``, id 1)."""
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(os.path.join(tokenizer, "tokenizer.json"))
    return {d["id"]: tuple(tok.encode(d["text"], add_special_tokens=False).ids) + (1,) for d in docs if d["text"]}


def megatron_shards(output: Path) -> list[list[tuple]]:
    """Every shard's documents, in order, as megatron-core's IndexedDataset reads them."""
    from megatron.core.datasets.indexed_dataset import IndexedDataset

    manifest = json.loads((output / "manifest.json").read_text())
    shards = []
    for shard in manifest["shards"]:
        data = IndexedDataset(str(output / shard["name"]))
        assert len(data) == shard["documents"] and data.document_indices.tolist() == list(range(len(data) + 1))
        shards.append([tuple(data[i].tolist()) for i in range(len(data))])
    return shards


def shard_bytes(output: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(output.iterdir()) if p.suffix in (".bin", ".idx", ".ds", ".index")}


@pytest.fixture(scope="module")
def exported(ray_local, mixture, tokenizer, tmp_path_factory) -> Path:
    output = tmp_path_factory.mktemp("export") / "out"
    run(recipe(mixture[0], output, tokenizer))
    return output


def test_megatron_shards_hold_every_copy(exported, mixture, tokenizer):
    """megatron-core reads the shards back; every document's tokens (+EOS) are there as many times as its
    repeats and kind weight ask (repeats 3 -> 3 in 3 shards; thought x2; rephrased x0.5 -> 0 or 1), the empty
    one is counted, not written."""
    docs, wanted = mixture[1], expected(mixture[1], tokenizer)
    shards = megatron_shards(exported)
    where: dict[tuple, list[int]] = {}
    for number, shard in enumerate(shards):
        for tokens in shard:
            where.setdefault(tokens, []).append(number)
    by_id = {i: where.get(t, []) for i, t in wanted.items()}
    assert set(where) <= set(wanted.values())
    assert len(by_id["real-0"]) == 3 and len(set(by_id["real-0"])) == 3
    assert all(len(by_id[d["id"]]) == 1 for d in docs if d["id"].startswith("real-") and d["id"] not in
               ("real-0", "real-5"))
    assert all(len(by_id[f"think-{i}"]) == 2 for i in range(10))
    kept = sum(len(by_id[f"reph-{i}"]) for i in range(30))
    assert all(len(by_id[f"reph-{i}"]) <= 1 for i in range(30)) and 8 <= kept <= 22
    manifest = json.loads((exported / "manifest.json").read_text())
    assert manifest["inputs"] == {"files": 3, "documents": 100, "bad": {"empty_text": 1}}
    assert manifest["documents"] == 59 + 2 + 20 + kept and manifest["dtype"] == "uint16"
    assert manifest["kinds"]["thought"]["documents"] == 20 and manifest["kinds"]["rephrased"]["documents"] == kept
    assert manifest["tokens"] == sum(map(len, (t for s in shards for t in s)))
    assert manifest["prompts"]["reasoning"]["tokens"] == 2 * sum(len(wanted[f"think-{i}"]) for i in range(10))
    assert set(manifest["quality_labels"]) == {"Low", "Medium", "High", "none"}
    assert manifest["tokenizer"]["vocab_size"] == 600 and manifest["tokenizer"]["eos_id"] == 1
    assert not (exported / "_work").exists()


def test_shuffled_and_sized(exported):
    """Shards hold about shard_tokens each (a document more at most; the last at least half), and the stream is
    shuffled: the real shards' documents are not in input order."""
    manifest = json.loads((exported / "manifest.json").read_text())
    sizes = [s["tokens"] for s in manifest["shards"]]
    assert len(sizes) >= 8 and all(20000 <= n <= 20000 + 15000 for n in sizes[:-1]) and 10000 <= sizes[-1] <= 45000
    assert sum(sizes) == manifest["tokens"]


def test_seed_gives_the_same_bytes(exported, mixture, tokenizer, tmp_path):
    """The same seed writes byte-identical shards; another seed another order of the same documents."""
    run(recipe(mixture[0], tmp_path / "same", tokenizer))
    assert shard_bytes(tmp_path / "same") == shard_bytes(exported)
    run(recipe(mixture[0], tmp_path / "other", tokenizer, "seed=7"))
    ours, theirs = megatron_shards(exported), megatron_shards(tmp_path / "other")
    assert [t for s in ours for t in s] != [t for s in theirs for t in s]
    real = {t for i, t in expected(mixture[1], tokenizer).items() if i.startswith("real-")}
    assert Counter(t for s in ours for t in s if t in real) == Counter(t for s in theirs for t in s if t in real)


def test_finished_export_is_left_alone(exported, mixture, tokenizer):
    """A re-run of a finished export writes nothing."""
    before = {p.name: p.stat().st_mtime_ns for p in exported.iterdir()}
    stats = run(recipe(mixture[0], exported, tokenizer))
    assert {p.name: p.stat().st_mtime_ns for p in exported.iterdir()} == before
    assert stats["shards"] == len(json.loads((exported / "manifest.json").read_text())["shards"])


def test_datatrove_format(ray_local, mixture, tokenizer, tmp_path):
    """``format: datatrove``: .ds/.ds.index/.ds.metadata that datatrove's own reader reads back, the same
    documents in the same order as the Megatron files of the same seed."""
    from datatrove.pipeline.tokens.merger import get_data_reader, load_doc_ends
    from datatrove.utils.dataset import DatatroveFileDataset

    output = tmp_path / "ds"
    run(recipe(mixture[0], output, tokenizer, "format=datatrove", "shard_tokens=200000"))
    manifest = json.loads((output / "manifest.json").read_text())
    shard = manifest["shards"][0]
    assert shard["files"] == ["shard-00000.ds", "shard-00000.ds.metadata", "shard-00000.ds.index"]
    ends = load_doc_ends(open(output / "shard-00000.ds.index", "rb"))
    docs = [tuple(np.frombuffer(b, np.uint16).tolist())
            for b in get_data_reader(open(output / "shard-00000.ds", "rb"), ends, nb_bytes=2)]
    assert len(docs) == shard["documents"] and sum(map(len, docs)) == shard["tokens"]
    assert Counter(docs) <= Counter(expected(mixture[1], tokenizer).values()) + Counter(
        {t: 2 for t in expected(mixture[1], tokenizer).values()})
    dataset = DatatroveFileDataset(str(output / "shard-00000.ds"), seq_len=127)
    assert len(dataset) == shard["tokens"] // 128
    assert dataset[0]["input_ids"].tolist() == [t for d in docs for t in d][:128]
    assert (output / "shard-00000.ds.metadata").read_text().splitlines()[:2] == [f"{tokenizer}|2",
                                                                                   str(shard["tokens"])]


def test_int32_writer(tmp_path):
    """A vocabulary past 65500 writes int32 tokens, read back by megatron-core."""
    from megatron.core.datasets.indexed_dataset import IndexedDataset

    dtype = megatron.dtype_for(128256)
    tokens, lengths = np.array([70000, 5, 128255, 1, 2, 3], np.uint32), np.array([3, 1, 2])
    with open(tmp_path / "x.bin", "wb") as out:
        megatron.write_bin(out, tokens, dtype)
    with open(tmp_path / "x.idx", "wb") as out:
        megatron.write_idx(out, lengths, dtype)
    data = IndexedDataset(str(tmp_path / "x"))
    assert dtype == np.int32 and data.index.dtype == np.int32
    assert [data[i].tolist() for i in range(3)] == [[70000, 5, 128255], [1], [2, 3]]


def test_killed_export_resumes_to_the_same_bytes(exported, mixture, tokenizer, tmp_path):
    """The README command, killed once its first shard is written, then run again with one token cache gone:
    exit 0, that cache (only) made again, and the shards byte-identical to an uninterrupted run's."""
    output = Path(os.path.relpath(tmp_path / "resumed", ROOT))  # as a user types it, relative to the checkout
    command = [sys.executable, "-m", "jobs.export", "--config", RECIPE, "--set", f"input={mixture[0]}",
               "--set", f"output={output}", "--set", f"tokenizer={tokenizer}", "--set", "shard_tokens=20000",
               "--set", f"weights={json.dumps(WEIGHTS)}", "--set", "ray.num_cpus=1"]
    process = subprocess.Popen(command, cwd=ROOT, start_new_session=True, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE)
    ledger = ROOT / output / "_ledger" / "shards"
    while process.poll() is None and not (ledger.exists() and any(ledger.iterdir())):
        time.sleep(0.05)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    output = ROOT / output
    assert not (output / "manifest.json").exists()
    gone = next((output / "_work" / "tokens").rglob("*.tok"), None)  # none if the first run ended before caching
    if gone is not None:
        gone.unlink()
    done = subprocess.run(command[:-2], cwd=ROOT, capture_output=True, text=True, timeout=300)  # Ray's defaults
    assert done.returncode == 0, done.stderr[-2000:]
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert ("1 token cache(s) missing or made with other settings: redone" in done.stderr) == (gone is not None)
    assert summary["shards"] == len(json.loads((exported / "manifest.json").read_text())["shards"])
    assert shard_bytes(output) == shard_bytes(exported)


def test_start_failures(mixture, tmp_path, capsys):
    """An unknown key and a missing tokenizer stop the job at start, in one line, exit 2."""
    args = ["--config", RECIPE, "--set", f"input={mixture[0]}", "--set", f"output={tmp_path / 'out'}"]
    assert main([*args, "--set", "tokeniser=x"]) == 2
    assert main([*args, "--set", f"tokenizer={tmp_path / 'no-such-tokenizer'}"]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 2 and "tokeniser" in lines[0] and lines[1].startswith("error: tokenizer: ")
    assert not (tmp_path / "out").exists()


def test_curriculum_phases(ray_local, mixture, tokenizer, tmp_path):
    """Quality ascending: unrated, Low, Medium, High phases, each holding only its label's documents, then a final
    phase of thought and High documents only, about ``fraction`` of all tokens; shards never span phases."""
    output = tmp_path / "curriculum"
    curriculum = {"column": "quality_label", "final": {"kinds": ["thought"], "labels": ["High"], "fraction": 0.2}}
    run(recipe(mixture[0], output, tokenizer, f"curriculum={json.dumps(curriculum)}"))
    manifest = json.loads((output / "manifest.json").read_text())
    assert [p["name"] for p in manifest["phases"]] == ["unrated", "Low", "Medium", "High", "final"]
    assert [s["phase"] for s in manifest["shards"]] == sorted(
        (s["phase"] for s in manifest["shards"]), key=["unrated", "Low", "Medium", "High", "final"].index)
    assert [s for p in manifest["phases"] for s in p["shards"]] == [s["name"] for s in manifest["shards"]]
    docs = {d["id"]: d for d in mixture[1]}
    ids = {t: i for i, t in expected(mixture[1], tokenizer).items()}
    label = {"unrated": None, "Low": "Low", "Medium": "Medium", "High": "High"}
    for shard, held in zip(manifest["shards"], megatron_shards(output), strict=True):
        found = [docs[ids[t]] for t in held]
        if shard["phase"] == "final":
            assert all(d["quality_label"] == "High" or d["synth_task"] == "think" for d in found)
        else:
            assert {d["quality_label"] for d in found} == {label[shard["phase"]]}
    final = manifest["phases"][-1]
    assert 0.17 <= final["tokens"] / manifest["tokens"] <= 0.23 and final["fraction"] == round(
        final["tokens"] / manifest["tokens"], 4)


def test_fast_bpe_gives_the_tokenizers_ids(tokenizer, real_texts):
    """tiktoken's core over the byte-level BPE gives the tokenizers library's ids (an added token's string in a
    text included), and the export's encode is the same with it and without."""
    from operators.export.tokenize import ExportTokenizer

    texts = [*real_texts[:100], f"{real_texts[0][:300]}</s> and <s>{real_texts[1][:100]}"]
    fast, slow = ExportTokenizer(tokenizer), ExportTokenizer(tokenizer, fast=False)
    assert fast.engine == "tiktoken" and slow.engine == "tokenizers"
    assert [a.tolist() for a in fast.fast_bpe.encode(texts)] == [
        e.ids for e in slow.backend.encode_batch(texts, add_special_tokens=False)]
    (tokens, lengths), (same, same_lengths) = fast.encode(texts), slow.encode(texts)
    assert np.array_equal(tokens, same) and np.array_equal(lengths, same_lengths) and tokens[lengths[0] - 1] == 1
    fast.fast_bpe.ids = fast.fast_bpe.ids[::-1].copy()  # a core that no longer agrees: the checked texts catch it
    with pytest.raises(RuntimeError, match="set fast_bpe: false"):
        fast.fast_bpe.encode(texts[1:])


def test_s3_input_and_output(ray_local, exported, mixture, tokenizer, s3_server, s3_client, tmp_path):
    """The mixture read from S3 and the shards written there are byte-identical to the local export's."""
    s3_client.create_bucket(Bucket="export")
    for path in mixture[0].rglob("*"):
        if path.is_file():
            s3_client.upload_file(str(path), "export", f"run/{path.relative_to(mixture[0])}")
    stats = run(recipe("s3://export/run", "s3://export/out", tokenizer, f"storage.endpoint_url={s3_server}"))
    listed = s3_client.list_objects_v2(Bucket="export", Prefix="out/")["Contents"]
    assert not [o["Key"] for o in listed if "/_work/" in o["Key"]]
    remote = {o["Key"].removeprefix("out/"): s3_client.get_object(Bucket="export", Key=o["Key"])["Body"].read()
              for o in listed if o["Key"].endswith((".bin", ".idx"))}
    assert remote == shard_bytes(exported) and stats["shards"] == len(remote) // 2


def test_unreadable_file_is_named_and_the_rest_resumes(ray_local, mixture, tokenizer, tmp_path):
    """A folder of Parquet documents (no mixture.json) with one damaged file: the others are tokenized, the job
    stops naming the damaged one; once it is removed a re-run finishes from what was done."""
    import shutil

    folder = tmp_path / "docs"
    shutil.copytree(mixture[0] / "quality", folder)
    (folder / "CC-MAIN-2024-10" / "damaged.parquet").write_bytes(b"PAR1 not really")
    output = tmp_path / "out"
    with pytest.raises(RuntimeError, match="1 input file.s. failed, first CC-MAIN-2024-10/damaged: "):
        run(recipe(folder, output, tokenizer))
    assert sorted(p.name for p in (output / "_ledger" / "tokens" / "CC-MAIN-2024-10").iterdir()) == [
        "shard-00000.json", "shard-00001.json"]
    (folder / "CC-MAIN-2024-10" / "damaged.parquet").unlink()
    assert run(recipe(folder, output, tokenizer))["documents"] == 59 + 2
