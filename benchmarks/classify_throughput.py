"""Throughput of the quality stage on the real pages: fastText per core, and the transformer stage
through Ray Data against the same model called directly in a loop with the same batch size.

    python -m benchmarks.classify_throughput [--docs 128] [--device cpu|gpu] [--batch-size 32]

No model can be downloaded here, so the models are built locally with the shapes of the real
ones: a fastText bigram classifier (dim 256, as DCLM's) trained on the pages, and a random-weight
BERT-base (12 layers, 768 wide: FineWeb-Edu's classifier is a BERT-base) with a tokenizer
trained on the pages; truncation at 512 tokens as in the job.
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from benchmarks.real_pages import real_texts
from operators.schema import conform, output_schema


def fasttext_model(texts: list[str], folder: Path) -> str:
    import fasttext

    lines = [f"__label__{'hq' if i % 2 else 'cc'} {' '.join(t.split())}" for i, t in enumerate(texts)]
    (folder / "train.txt").write_text("\n".join(lines) + "\n")
    model = fasttext.train_supervised(str(folder / "train.txt"), dim=256, wordNgrams=2, bucket=200_000, epoch=1,
                                      thread=1, verbose=0)
    model.save_model(str(folder / "ft.bin"))
    return str(folder / "ft.bin")


def bert_base(texts: list[str], folder: Path) -> str:
    import torch
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import BertConfig, BertForSequenceClassification, PreTrainedTokenizerFast

    wordpiece = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    wordpiece.normalizer = normalizers.BertNormalizer(lowercase=True)
    wordpiece.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    wordpiece.train_from_iterator(texts, trainers.WordPieceTrainer(
        vocab_size=30_000, special_tokens=["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]))
    wordpiece.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", wordpiece.token_to_id("[CLS]")),
                                                 ("[SEP]", wordpiece.token_to_id("[SEP]"))])
    PreTrainedTokenizerFast(tokenizer_object=wordpiece, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]",
                            sep_token="[SEP]", model_max_length=512).save_pretrained(folder / "bert")
    torch.manual_seed(0)
    config = BertConfig(vocab_size=wordpiece.get_vocab_size(), num_labels=1, pad_token_id=0)
    BertForSequenceClassification(config).save_pretrained(folder / "bert")
    return str(folder / "bert")


def fasttext_row(model: str, texts: list[str]) -> tuple:
    from operators.filters.fasttext_quality import FastTextQualityFilter

    op = FastTextQualityFilter(model=model, label="__label__hq")
    table = pa.table({"text": texts})
    start = time.perf_counter()
    op.signals(table)
    return ("fastText bigram dim 256 (dclm_fasttext), 1 core", len(texts), time.perf_counter() - start, 1)


def direct_row(model: str, texts: list[str], device: str, batch_size: int, cores: int) -> tuple:
    """The model called in a loop, batches of ``batch_size`` in document order, tokenised up front."""
    import torch

    from operators.quality.transformer import Scorer, load_tokenizer, tokenize

    scorer = Scorer(model, device, "float32", batch_size)
    flat, offsets = tokenize(load_tokenizer(model), pa.array(texts), 512)
    start = time.perf_counter()
    with torch.inference_mode():
        for i in range(0, len(texts), batch_size):
            ids = [flat[offsets[j]:offsets[j + 1]].tolist() for j in range(i, min(i + batch_size, len(texts)))]
            width = max(map(len, ids))
            batch = torch.tensor([x + [0] * (width - len(x)) for x in ids], device=scorer.device)
            mask = torch.tensor([[1] * len(x) + [0] * (width - len(x)) for x in ids], device=scorer.device)
            scorer.model(input_ids=batch, attention_mask=mask)
    return (f"BERT-base called directly ({device}, batch {batch_size})", len(texts), time.perf_counter() - start, cores)


def stage_row(model: str, texts: list[str], folder: Path, device: str, batch_size: int, cores: int) -> tuple:
    """The classify job (one transformer classifier) over the same texts as 4 shards, whole job timed."""
    from jobs.classify import run
    from jobs.classify.recipe import QualityRecipe

    for i in range(4):
        path = folder / "in" / "CC-MAIN-2024-22" / f"s{i}.parquet"
        path.parent.mkdir(parents=True, exist_ok=True)
        rows = [{"id": f"{i}-{j}", "text": t} for j, t in enumerate(texts[i::4])]
        pq.write_table(conform(pa.Table.from_pylist(rows), output_schema({})), path)
    recipe = QualityRecipe.model_validate({
        "name": "bench", "input": str(folder / "in"), "output": str(folder / "out"),
        "classifiers": [{"name": "edu", "kind": "transformer", "model": model, "device": device,
                         "dtype": "float32", "batch_size": batch_size}]})
    start = time.perf_counter()
    stats = run(recipe)
    return (f"classify job, Ray Data actors ({device}, batch {batch_size})", stats["documents"],
            time.perf_counter() - start, cores)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=128, help="pages through the transformer")
    parser.add_argument("--device", choices=("cpu", "gpu"), default="cpu")
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args()
    import ray

    ray.init(address="local", include_dashboard=False, log_to_driver=False)
    cores = 1 if args.device == "gpu" else int(ray.cluster_resources()["CPU"])
    texts = real_texts()
    folder = Path(tempfile.mkdtemp(prefix="cc-refinery-bench-classify-"))
    rows = [fasttext_row(fasttext_model(texts, folder), texts)]
    model, sample = bert_base(texts, folder), (texts * 8)[: args.docs]
    rows.append(direct_row(model, sample, args.device, args.batch_size, cores))
    rows.append(stage_row(model, sample, folder, args.device, args.batch_size, cores))
    unit = "GPU" if args.device == "gpu" else "core"
    print(f"| stage | docs | seconds | docs/s | docs/s/{unit} |")
    print("|---|---|---|---|---|")
    for name, docs, seconds, n in rows:
        print(f"| {name} | {docs} | {seconds:.2f} | {docs / seconds:.1f} | {docs / seconds / n:.1f} |")
    print(f"stage / direct: {rows[1][2] / rows[2][2]:.2f} (whole job, start-up included)")
    print(json.dumps({"machine": platform.processor() or platform.machine(), "cores": cores, "device": args.device}))


if __name__ == "__main__":
    main()
