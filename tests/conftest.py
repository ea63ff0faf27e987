"""Shared fixtures: real WARC files written with warcio, a real local S3 server, a local Ray."""

from __future__ import annotations

import importlib.util
import io
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from warcio.statusandheaders import StatusAndHeaders
from warcio.warcwriter import WARCWriter

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"
CRAWL = "CC-MAIN-2024-22"


def write_warc(path: Path, pages: list[dict], crawl: str = CRAWL) -> Path:
    """Write a gzipped WARC like Common Crawl's: warcinfo, then request/response pairs.

    Each page is a dict with ``url``, ``body`` (bytes) and optional ``content_type``.
    """
    with open(path, "wb") as out:
        writer = WARCWriter(out, gzip=True)
        writer.write_record(writer.create_warcinfo_record(path.name, {"isPartOf": crawl}))
        for page in pages:
            headers = StatusAndHeaders("200 OK", [("Content-Type", page.get("content_type", "text/html"))],
                                       protocol="HTTP/1.1")
            get = StatusAndHeaders(f"GET {page['url']} HTTP/1.1", [], is_http_request=True)
            request = writer.create_warc_record(page["url"], "request", payload=io.BytesIO(b""),
                                                http_headers=get)
            response = writer.create_warc_record(page["url"], "response", payload=io.BytesIO(page["body"]),
                                                 http_headers=headers)
            writer.write_record(request)
            writer.write_record(response)
    return path


def write_wet(path: Path, docs: list[dict], crawl: str = CRAWL) -> Path:
    """Write a gzipped WET file: warcinfo, then ``conversion`` records with plain text."""
    with open(path, "wb") as out:
        writer = WARCWriter(out, gzip=True)
        writer.write_record(writer.create_warcinfo_record(path.name, {"isPartOf": crawl}))
        for doc in docs:
            writer.write_record(writer.create_warc_record(
                doc["url"], "conversion", payload=io.BytesIO(doc["text"].encode()),
                warc_content_type="text/plain"))
    return path


def html_page(title: str, paragraphs: list[str]) -> bytes:
    body = "".join(f"<p>{p}</p>" for p in paragraphs)
    return f"<html><head><title>{title}</title></head><body><article>{body}</article></body></html>".encode()


ENGLISH = [
    "The history of the town goes back to the twelfth century, when a small group of farmers "
    "settled on the banks of the river and built the first houses with stone from the hills.",
    "During the following centuries the town grew into a busy market place. Traders came from "
    "the coast to sell salt, fish and cloth, and they bought grain, wool and cheese in return.",
    "The old church in the centre of the town was built in 1350 and it is still used today. "
    "Its tower can be seen from every road that leads into the valley, and visitors climb it.",
    "In the nineteenth century a railway line was opened, and with it came new industries. "
    "A paper mill and a brewery were built near the station, and many families moved there.",
    "Today the town is known for its annual festival, which takes place in the first week of "
    "September. Musicians, dancers and cooks from all over the region take part in it.",
    "The local museum tells the story of the town and its people. It has a collection of old "
    "tools, photographs and letters that show how life has changed over the last eight hundred years.",
]
GERMAN = [
    "Die Geschichte der Stadt reicht bis in das zwölfte Jahrhundert zurück, als sich eine kleine "
    "Gruppe von Bauern am Ufer des Flusses niederließ und die ersten Häuser aus Stein errichtete.",
    "In den folgenden Jahrhunderten wuchs die Stadt zu einem belebten Marktplatz heran, auf dem "
    "Händler von der Küste Salz, Fisch und Tuch verkauften und dafür Getreide und Käse kauften.",
]


def need(module: str, extra: str) -> None:
    """Skip the test when ``module`` is not installed, naming the extra that brings it; on CI (which installs
    every extra) fail instead, so that a missing install step is never hidden by a skip."""
    if importlib.util.find_spec(module) is None:
        message = f"{module} is not installed: pip install -e '.[{extra}]' (make install brings every extra)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)


@pytest.fixture
def sample_pages() -> list[dict]:
    """Five pages: English (kept), German, non-HTML, a blocklisted URL, and English boilerplate."""
    return [
        {"url": "https://town.example.org/history", "body": html_page("History", ENGLISH)},
        {"url": "https://stadt.example.de/geschichte", "body": html_page("Geschichte", GERMAN)},
        {"url": "https://town.example.org/logo.png", "body": b"\x89PNG\r\n\x1a\n", "content_type": "image/png"},
        {"url": "https://www.example.net/page", "body": html_page("History", ENGLISH)},
        {"url": "https://town.example.org/menu", "body": html_page("Menu", ["Home", "About us", "Contact"])},
    ]


@pytest.fixture(scope="session")
def s3_server():
    """A real S3 endpoint on 127.0.0.1 (moto's standalone server over HTTP)."""
    from moto.server import ThreadedMotoServer

    os.environ.update(AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing",
                      AWS_DEFAULT_REGION="us-east-1", AWS_REGION="us-east-1")
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture(scope="session")
def s3_client(s3_server):
    import boto3

    return boto3.client("s3", endpoint_url=s3_server, region_name="us-east-1")


@pytest.fixture(scope="session", autouse=True)
def caches(tmp_path_factory):
    """One cache folder for the session, inherited by every job a test starts, as a user has one (~/.cache):
    nothing of the machine's own, and vLLM's compiled model graphs made by the first engine start are reused
    by the later ones, as on a user's second run."""
    root = tmp_path_factory.mktemp("caches")
    os.environ.update(VLLM_CACHE_ROOT=str(root / "vllm"), XDG_CACHE_HOME=str(root / "xdg"))
    return root


@pytest.fixture(scope="session")
def ray_local(s3_server, tmp_path_factory):
    """One local Ray of the session's own (never a cluster running on the machine), with Ray's defaults as a
    user's job has them, started after the S3 and cache settings are in the environment."""
    import ray

    os.environ.update(HF_HUB_OFFLINE="1",
                      RAY_USAGE_STATS_ENABLED="0")
    # a job run in this process before (a job starts a local Ray of its own when none is connected) may have left
    # one connected: that one is used
    ray.init(address="local", include_dashboard=False, log_to_driver=False, ignore_reinit_error=True)
    yield
    ray.shutdown()


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not (SHARED_DATA / "real-pages-dev.warc.gz").exists():
        pytest.skip(f"real Common Crawl pages not found at {SHARED_DATA} (the ../shared/data folder)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def real_texts(shared_data) -> list[str]:
    """Main-content text of every real page in ``real-pages-dev.warc.gz`` that has any (resiliparse)."""
    from fastwarc.warc import ArchiveIterator, WarcRecordType
    from resiliparse.extract.html2text import extract_plain_text
    from resiliparse.parse.encoding import detect_encoding
    from resiliparse.parse.html import HTMLTree

    out = []
    with open(shared_data / "real-pages-dev.warc.gz", "rb") as f:
        for record in ArchiveIterator(f, record_types=WarcRecordType.response):
            body = record.reader.read()
            text = extract_plain_text(HTMLTree.parse_from_bytes(body, detect_encoding(body)), main_content=True)
            if text:
                out.append(text)
    return out


def tiny_llama(out: str, answers_end: bool) -> str:
    """A random-weight Llama with a BPE tokenizer trained here on local text, saved to ``out``; nothing from a hub.

    With ``answers_end`` its answers end as a real model's do: one residual dimension is held constant (every
    token embedding has 1.0 there) and the end-of-sequence logit reads only that dimension, at a fixed 2.14
    against the others' near-uniform logits. An answer then ends with p = 5 % per token at temperature 0.6,
    3 % at 0.7, 1.3 % at 1.0 (tens of tokens, where a random model runs every answer to max_tokens), and at
    once when greedy. Without it every answer runs to max_tokens (finish reason "length")."""
    need("vllm", "llm-cpu")
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=600, special_tokens=["<s>", "</s>", "<pad>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    bpe.train_from_iterator((ENGLISH + GERMAN) * 20, trainer)
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=bpe, bos_token="<s>", eos_token="</s>", pad_token="<pad>")
    tokenizer.chat_template = ("{% for m in messages %}<s>{{ m['role'] }}\n{{ m['content'] }}</s>\n{% endfor %}"
                               "{% if add_generation_prompt %}<s>assistant\n{% endif %}")
    tokenizer.save_pretrained(out)
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=128, intermediate_size=256, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=4096,
                         bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                         pad_token_id=tokenizer.pad_token_id, tie_word_embeddings=False)
    model = LlamaForCausalLM(config).to(torch.float32)
    if answers_end:
        with torch.no_grad():
            model.model.embed_tokens.weight[:, 0] = 1.0
            probe = torch.randint(3, len(tokenizer), (4, 256), generator=torch.Generator().manual_seed(0))
            held = model.model(probe).last_hidden_state[..., 0].mean()  # the constant dimension after the last norm
            model.lm_head.weight[tokenizer.eos_token_id] = 0.0
            model.lm_head.weight[tokenizer.eos_token_id, 0] = 2.14 / held
    model.save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> str:
    """The tiny Llama whose answers end (``tiny_llama``), for the jobs as a user runs them."""
    return tiny_llama(str(tmp_path_factory.mktemp("tiny-llama")), answers_end=True)


@pytest.fixture(scope="session")
def tiny_model_endless(tmp_path_factory) -> str:
    """The tiny Llama with plain random weights: every answer runs to max_tokens (the truncation path)."""
    return tiny_llama(str(tmp_path_factory.mktemp("tiny-llama-endless")), answers_end=False)


@pytest.fixture(scope="session")
def spark(tmp_path_factory, s3_server):
    """One local Spark (2 cores) for the session, started after the S3 credentials are in the environment.

    Tuned for the small tables of the tests it serves, not as the dedup recipe runs (its own tests run that,
    as a user does): generated code and the JVM's optimising compiler cost more than they save on a few
    thousand rows (measured on tests/test_dedup.py: the JVM's CPU 176 s -> 118 s)."""
    from jobs.dedup.job import spark_session
    from jobs.dedup.recipe import SparkConfig

    conf = {"spark.local.dir": str(tmp_path_factory.mktemp("spark")), "spark.sql.codegen.wholeStage": "false",
            "spark.driver.extraJavaOptions": "-XX:TieredStopAtLevel=1"}
    session = spark_session(SparkConfig(master="local[2]", driver_memory="2g", shuffle_partitions=4, conf=conf))
    yield session
    session.stop()


@pytest.fixture(scope="session")
def tiny_bert(tmp_path_factory) -> str:
    """A random-weight BERT regression head (one output, like FineWeb-Edu's) and a WordPiece tokenizer
    trained here; saved with ``save_pretrained``, loaded by the real code."""
    need("torch", "llm-cpu")
    import torch
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import BertConfig, BertForSequenceClassification, PreTrainedTokenizerFast

    out = str(tmp_path_factory.mktemp("tiny-bert"))
    wordpiece = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    wordpiece.normalizer = normalizers.BertNormalizer(lowercase=True)
    wordpiece.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    wordpiece.train_from_iterator((ENGLISH + GERMAN) * 5, trainers.WordPieceTrainer(
        vocab_size=300, special_tokens=["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]))
    wordpiece.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", wordpiece.token_to_id("[CLS]")),
                                                 ("[SEP]", wordpiece.token_to_id("[SEP]"))])
    PreTrainedTokenizerFast(tokenizer_object=wordpiece, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]",
                            sep_token="[SEP]", mask_token="[MASK]", model_max_length=512).save_pretrained(out)
    torch.manual_seed(0)
    config = BertConfig(vocab_size=wordpiece.get_vocab_size(), hidden_size=32, num_hidden_layers=2,
                        num_attention_heads=2, intermediate_size=64, max_position_embeddings=512, num_labels=1,
                        pad_token_id=0)
    BertForSequenceClassification(config).save_pretrained(out)
    return out


HQ = [
    "The mitochondrion is an organelle found in most eukaryotic cells and produces energy for the cell.",
    "Photosynthesis converts light energy into chemical energy that is stored in glucose molecules.",
    "The French Revolution began in 1789 and transformed the political structure of Europe.",
    "A prime number is a natural number greater than one that has no divisors other than one and itself.",
    "Plate tectonics explains how the continents move slowly across the surface of the Earth.",
    "The river flows through the valley and provides water for the farms and towns along its banks.",
    "Water boils at one hundred degrees Celsius at sea level under standard atmospheric pressure.",
    "The library holds a collection of manuscripts from the medieval period written in Latin.",
]
CC = [
    "click here buy now best price free shipping limited offer order today",
    "login register cart checkout wishlist home contact us privacy policy cookies",
    "cheap pills online casino bonus win money fast click now free spins",
    "subscribe newsletter share facebook twitter copyright all rights reserved",
    "hot deals discount sale buy cheap best price guaranteed free click",
    "home about contact sitemap terms of use accept cookies menu search",
    "win free iphone click link now limited time offer act fast",
    "sign up now free trial best deal online shop cart",
]
def train_classifier(folder: Path, attempts: int = 10, lines: list[str] | None = None) -> str:
    """Train and save a fastText classifier on ``lines`` (``__label__<x> text``; default: a binary
    ``__label__hq`` / ``__label__cc`` one); return its path.

    Trained in a fresh process: in a long test session fastText 0.9.3 stopped with "Encountered NaN"
    on every seed (something earlier in the process changes its arithmetic), never in a fresh one.
    Its weights still vary from run to run, so the tests compare the operator with the saved model's
    own predictions and orderings, never with fixed numbers; a NaN run is retried with another seed."""
    train, path = folder / "train.txt", folder / "quality.bin"
    lines = lines or [f"__label__hq {t}" for t in HQ] + [f"__label__cc {t}" for t in CC]
    train.write_text("".join(f"{line}\n" for line in lines))
    script = ("import sys, fasttext\n"
              "for seed in range(int(sys.argv[3])):\n"
              "    try:\n"
              "        model = fasttext.train_supervised(input=sys.argv[1], epoch=50, lr=0.5, wordNgrams=2, dim=16,"
              " bucket=20000, minCount=1, thread=1, seed=seed, verbose=0)\n"
              "        break\n"
              "    except RuntimeError as err:\n"
              "        if 'NaN' not in str(err) or seed == int(sys.argv[3]) - 1:\n"
              "            raise\n"
              "model.save_model(sys.argv[2])\n")
    subprocess.run([sys.executable, "-c", script, str(train), str(path), str(attempts)], check=True, timeout=300)
    return str(path)


@pytest.fixture(scope="session")
def tiny_fasttext(tmp_path_factory) -> str:
    """A binary fastText quality classifier trained here (``__label__hq`` facts vs ``__label__cc`` web spam)."""
    return train_classifier(tmp_path_factory.mktemp("tiny-fasttext"))


@pytest.fixture(params=["local", "s3"])
def storage_root(request, tmp_path):
    """(storage, folder) on local disk, then in a fresh bucket of the local S3 server (emptied after)."""
    from operators.io.storage import Storage

    if request.param == "local":
        yield Storage(), str(tmp_path / "root")
        return
    s3_client = request.getfixturevalue("s3_client")
    bucket = f"root-{uuid.uuid4().hex[:8]}"
    s3_client.create_bucket(Bucket=bucket)
    yield Storage(endpoint_url=request.getfixturevalue("s3_server")), f"s3://{bucket}/root"
    for obj in s3_client.list_objects_v2(Bucket=bucket).get("Contents", []):
        s3_client.delete_object(Bucket=bucket, Key=obj["Key"])
    s3_client.delete_bucket(Bucket=bucket)
