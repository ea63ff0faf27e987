"""A crawl's shard count and input size, for the cost planner.

The shards are the lines of ``s3://commoncrawl/crawl-data/<crawl>/warc.paths.gz``. Their sizes are
read with HEAD requests (``Storage.stat``) rather than an S3 LIST: the bucket answers S3 requests only
when signed and its HTTPS mirror (data.commoncrawl.org) has no listing, while a HEAD works on the mirror
without credentials.

Method: of the N listed shards, n = min(``listing.sample``, N), evenly spaced through the list (index
i*N//n; the list runs segment by segment, so the sample spans the whole crawl), are HEADed, and

    total = N * mean(sizes)            error (95 %) = 1.96 * N * s / sqrt(n) * sqrt(1 - n/N)

with s the sizes' sample standard deviation: the simple-random-sampling standard error with its
finite-population correction, the usual approximation for a systematic sample of a list not ordered
by size. When n = N every shard is read and the total is exact (error 0). Common Crawl cuts its WARC
files at about 1 GB, so sizes vary little and 64 HEADs give a small error, which the planner prints.
"""

from __future__ import annotations

import math
import statistics
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass

import botocore.exceptions

from operators.io.listing import CC_ROOT, CRAWL_RE, crawl_listing
from operators.io.storage import Storage, join


@dataclass(frozen=True)
class CrawlInput:
    crawl: str
    listing: str
    shards: int
    sampled: int
    bytes: float
    bytes_error95: float

    def as_dict(self) -> dict:
        return asdict(self)


def _one_line(err: BaseException) -> str:
    text = " ".join(str(err).split()) or type(err).__name__
    return text if len(text) <= 200 else text[:197] + "..."


def _cause(err: BaseException) -> str:
    """``not found`` for a 404 anywhere in the exception's chain (S3 or HTTPS), else its text on one line."""
    seen: BaseException | None = err
    while seen is not None:
        if isinstance(seen, botocore.exceptions.ClientError):
            code = seen.response.get("Error", {}).get("Code")
        else:
            code = getattr(getattr(seen, "response", None), "status_code", None)
        if code in (404, "404", "NoSuchKey"):
            return "not found"
        seen = seen.__cause__ or seen.__context__
    return _one_line(err)


def sample_indices(shards: int, sample: int) -> list[int]:
    """Evenly spaced positions in the listing: every one when the crawl has no more than ``sample`` shards."""
    n = min(sample, shards)
    return [i * shards // n for i in range(n)]


def extrapolate(shards: int, sizes: list[int]) -> tuple[float, float]:
    """(total bytes, half-width of its 95 % interval) from the sizes of a sample of the shards."""
    n = len(sizes)
    if n == shards:
        return float(sum(sizes)), 0.0
    error = 1.96 * shards * statistics.stdev(sizes) / math.sqrt(n) * math.sqrt(1 - n / shards)
    return shards * statistics.fmean(sizes), error


def crawl_input(storage: Storage, crawl: str, sample: int, threads: int) -> CrawlInput:
    """List ``crawl``'s WARC shards and measure (or estimate) their total size; one-line errors."""
    if not CRAWL_RE.fullmatch(crawl):
        raise ValueError(f"--crawl: {crawl!r} is not a crawl id like CC-MAIN-2024-22")
    listing = join(CC_ROOT, crawl, "warc.paths.gz")
    try:
        uris = crawl_listing(storage, crawl, "warc")
    except (OSError, botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as err:
        raise FileNotFoundError(f"crawl {crawl}: no listing at {listing}: {_cause(err)}") from None
    if not uris:
        raise ValueError(f"crawl {crawl}: {listing} lists no shards")
    picked = [uris[i] for i in sample_indices(len(uris), sample)]
    try:
        sizes = [storage.stat(picked[0])["size"]]  # builds the client once, before the threads share it
        with ThreadPoolExecutor(threads) as pool:
            sizes += [s["size"] for s in pool.map(storage.stat, picked[1:])]
    except (OSError, botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as err:
        raise FileNotFoundError(f"crawl {crawl}: a listed shard cannot be read: {_one_line(err)}") from None
    total, error = extrapolate(len(uris), sizes)
    return CrawlInput(crawl, listing, len(uris), len(sizes), total, error)
