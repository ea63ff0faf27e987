"""URL blocklist (as in FineWeb's first step, Penedo et al. 2024, which used the UT1 adult list).

``blocklists`` are domain-list files (one domain per line, ``#`` comments), local or ``s3://``.
A URL is rejected (``url.blocklist``) when its host or any parent domain is listed; a missing or
unparseable URL is rejected as ``url.invalid``.
"""

from __future__ import annotations

from typing import ClassVar
from urllib.parse import urlsplit

import numpy as np
import pyarrow as pa
from pydantic import BaseModel, ConfigDict, Field

from operators.base import Filter
from operators.io.storage import Storage


class UrlParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    blocklists: list[str] = Field(default_factory=list)


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


class UrlFilter(Filter):
    name = "url"
    needs = ("url",)
    adds = {"url_domain": pa.string(), "url_blocked_by": pa.string()}
    Params: ClassVar = UrlParams

    def __init__(self, storage: Storage | None = None, **kwargs):
        super().__init__(**kwargs)
        domains: set[str] = set()
        storage = storage or Storage()
        for uri in self.p.blocklists:
            for line in storage.read_bytes(uri).decode().splitlines():
                line = line.split("#", 1)[0].strip().lower()
                if line:
                    domains.add(line.rstrip("."))
        self.domains = frozenset(domains)

    def signals(self, batch: pa.Table) -> dict:
        hosts = [host_of(u) for u in batch.column("url").to_pylist()]
        return {"url_domain": hosts,
                "url_blocked_by": [blocked_domain(h, self.domains) if h else None for h in hosts]}

    def rules(self, s: dict[str, np.ndarray]):
        yield "invalid", s["url_domain"] == None  # noqa: E711
        yield "blocklist", s["url_blocked_by"] != None  # noqa: E711
