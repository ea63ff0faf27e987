"""URL filter: FineWeb's first step (Penedo et al. 2024), datatrove's ``URLFilter``, on Arrow batches.

Lists are files (one entry per line, ``#`` comments), local or ``s3://``. A URL is rejected as:

* ``url.invalid``: missing, or no host (``urlsplit``);
* ``url.blocklist``: by the domain lists ``blocklists``. ``domain_match: registered`` (FineWeb,
  datatrove) matches the registered domain (public-suffix aware, tldextract's bundled snapshot,
  ICANN suffixes only) or the exact host, both as written in the URL (case kept); a host without a
  public suffix (an IP address, an unknown TLD) never matches. ``parent`` matches the lower-cased
  host or any parent domain of it, so a listed ``a.example.com`` also blocks ``b.a.example.com``;
* ``url.blocked_url``: the whole URL is in ``url_blocklists``;
* ``url.banned_word``: a ``banned_words`` entry is one of the URL's words (the URL split on
  ``[^a-zA-Z0-9]+``, case kept; entries are lower-cased with non-alphanumerics removed, as datatrove);
* ``url.soft_banned_words``: at least ``soft_word_threshold`` distinct ``soft_banned_words`` are words;
* ``url.banned_subword``: a ``banned_subwords`` entry is a substring of the URL lower-cased with its
  non-alphanumerics removed (Aho-Corasick).
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import ClassVar, Literal
from urllib.parse import urlsplit

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import BaseModel, ConfigDict, Field

from operators.base import Filter
from operators.io.storage import Storage

NON_ALNUM = r"[^a-zA-Z0-9]+"


class UrlParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    blocklists: list[str] = Field(default_factory=list)
    domain_match: Literal["parent", "registered"] = "parent"
    url_blocklists: list[str] = Field(default_factory=list)
    banned_words: list[str] = Field(default_factory=list)
    soft_banned_words: list[str] = Field(default_factory=list)
    soft_word_threshold: int = Field(2, ge=1)
    banned_subwords: list[str] = Field(default_factory=list)


def host_of(url: str | None) -> str | None:
    try:
        host = urlsplit(url or "").hostname
    except ValueError:
        return None
    return host.rstrip(".").lower() if host else None


def blocked_domain(host: str, domains: frozenset[str]) -> str | None:
    """The listed domain that ``host`` is, or is under, else None."""
    parts = host.split(".")
    for i in range(len(parts)):
        candidate = ".".join(parts[i:])
        if candidate in domains:
            return candidate
    return None


@lru_cache(maxsize=1)
def extractor():
    """tldextract on its bundled public-suffix snapshot: no network fetch, no disk cache."""
    from tldextract import TLDExtract

    return TLDExtract(cache_dir=None, suffix_list_urls=())


def registered_match(url: str, domains: frozenset[str]) -> str | None:
    """The listed registered domain or exact host of ``url`` (datatrove's "domain", "subdomain"), else None."""
    parts = extractor()(url)
    for candidate in (parts.top_domain_under_public_suffix, parts.fqdn):
        if candidate in domains:
            return candidate
    return None


def normalize(word: str) -> str:
    """datatrove's list-entry normalisation: non-alphanumerics removed, lower-cased."""
    return re.sub(NON_ALNUM, "", word).lower()


def read_entries(storage: Storage, uris: list[str], inline_comments: bool = True) -> list[str]:
    """Stripped non-empty lines of the list files, ``#`` comment lines (and inline comments) dropped."""
    entries = []
    for uri in uris:
        for line in storage.read_bytes(uri).decode().splitlines():
            line = (line.split("#", 1)[0] if inline_comments else line).strip()
            if line and not line.startswith("#"):
                entries.append(line)
    return entries


def first_hits(hits: np.ndarray, rows: np.ndarray, values: pa.Array, n: int) -> np.ndarray:
    """Per row, the first value whose ``hits`` flag is set (``rows`` maps values to rows), else None."""
    out = np.full(n, None, dtype=object)
    index = np.flatnonzero(hits)
    found, first = np.unique(rows[index], return_index=True)
    out[found] = values.take(pa.array(index[first])).to_numpy(zero_copy_only=False)
    return out


class UrlFilter(Filter):
    name = "url"
    needs = ("url",)
    adds = {"url_domain": pa.string(), "url_blocked_by": pa.string(), "url_listed": pa.bool_(),
            "url_banned_word": pa.string(), "url_soft_banned_words": pa.int32(), "url_banned_subword": pa.string()}
    Params: ClassVar = UrlParams

    def __init__(self, storage: Storage | None = None, **kwargs):
        import ahocorasick

        super().__init__(**kwargs)
        storage = storage or Storage()
        self.domains = frozenset(d.lower().rstrip(".") for d in read_entries(storage, self.p.blocklists))
        self.urls = pa.array(sorted(set(read_entries(storage, self.p.url_blocklists, inline_comments=False))),
                             pa.string())
        words = {key: pa.array(sorted({normalize(w) for w in read_entries(storage, getattr(self.p, key))} - {""}),
                               pa.string())
                 for key in ("banned_words", "soft_banned_words", "banned_subwords")}
        self.banned, self.soft = words["banned_words"], words["soft_banned_words"]
        self.subwords = None
        if len(words["banned_subwords"]):
            self.subwords = ahocorasick.Automaton()
            for word in words["banned_subwords"].to_pylist():
                self.subwords.add_word(word, word)
            self.subwords.make_automaton()

    def _domains(self, urls: list[str | None], hosts: list[str | None]) -> list[str | None]:
        if not self.domains:
            return [None] * len(urls)
        if self.p.domain_match == "registered":
            return [registered_match(u, self.domains) if h else None for u, h in zip(urls, hosts, strict=True)]
        return [blocked_domain(h, self.domains) if h else None for h in hosts]

    def _listed(self, urls: pa.Array) -> np.ndarray:
        if not len(self.urls):
            return np.zeros(len(urls), dtype=bool)
        return pc.fill_null(pc.is_in(urls, value_set=self.urls), False).to_numpy(zero_copy_only=False)

    def _words(self, urls: pa.Array) -> tuple[np.ndarray, np.ndarray]:
        """First banned word and number of distinct soft-banned words of each URL."""
        n = len(urls)
        banned, soft = np.full(n, None, dtype=object), np.zeros(n, dtype=np.int32)
        if not (len(self.banned) or len(self.soft)):
            return banned, soft
        split = pc.split_pattern_regex(urls, NON_ALNUM)
        words, rows = pc.list_flatten(split), pc.list_parent_indices(split).to_numpy()
        if len(self.banned):
            banned = first_hits(pc.is_in(words, value_set=self.banned).to_numpy(zero_copy_only=False), rows, words, n)
        if len(self.soft):
            position = pc.index_in(words, value_set=self.soft)
            hit = position.is_valid().to_numpy(zero_copy_only=False)
            pairs = np.unique(rows[hit].astype(np.int64) * len(self.soft) + position.drop_null().to_numpy())
            soft = np.bincount(pairs // len(self.soft), minlength=n).astype(np.int32)
        return banned, soft

    def _subwords(self, urls: pa.Array) -> list[str | None]:
        if self.subwords is None:
            return [None] * len(urls)
        flat = pc.ascii_lower(pc.replace_substring_regex(urls, NON_ALNUM, "")).to_pylist()
        return [next(self.subwords.iter(s), (0, None))[1] if s else None for s in flat]

    def signals(self, batch: pa.Table) -> dict:
        urls = batch.column("url").combine_chunks()
        strings = urls.to_pylist()
        hosts = [host_of(u) for u in strings]
        banned, soft = self._words(urls)
        return {"url_domain": hosts, "url_blocked_by": self._domains(strings, hosts), "url_listed": self._listed(urls),
                "url_banned_word": banned, "url_soft_banned_words": soft, "url_banned_subword": self._subwords(urls)}

    def rules(self, s: dict[str, np.ndarray]):
        yield "invalid", s["url_domain"] == None  # noqa: E711
        yield "blocklist", s["url_blocked_by"] != None  # noqa: E711
        yield "blocked_url", s["url_listed"]
        yield "banned_word", s["url_banned_word"] != None  # noqa: E711
        yield "soft_banned_words", s["url_soft_banned_words"] >= self.p.soft_word_threshold
        yield "banned_subword", s["url_banned_subword"] != None  # noqa: E711
