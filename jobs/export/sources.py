"""The export's input files: a mixture run's sources (``<input>/mixture.json``), else every Parquet file under
``input``; each named by its path under ``input`` without ``.parquet`` (``quality/<crawl>/<shard>``)."""

from __future__ import annotations

import json

from operators.io.storage import Storage, is_s3, join


def _inner(storage: Storage, uri: str) -> str:
    return storage.filesystem(uri)[1].rstrip("/")


def input_files(storage: Storage, root: str) -> dict[str, str]:
    """``{name: uri}`` of the documents to export, sorted by name. A mixture's source folders are read relative
    to ``root`` (the run folder may have moved since the mixture wrote them): their paths under the mixture's
    ``run`` (a mixture.json without one: under the first source's parent folder)."""
    mixture = join(root, "mixture.json")
    folders = [root]
    if storage.exists(mixture):
        written = json.loads(storage.read_bytes(mixture))
        sources = written["sources"]
        base = written.get("run") or sources[0].rstrip("/").rsplit("/", 1)[0]
        folders = [join(root, s.rstrip("/").removeprefix(base.rstrip("/")).strip("/")) for s in sources]
    found = {}
    for folder in folders:
        found.update(names_under(storage, root, storage.walk(folder, ".parquet"), ".parquet"))
    return dict(sorted(found.items()))


def names_under(storage: Storage, root: str, uris: list[str], suffix: str) -> dict[str, str]:
    """``{path under root without suffix: uri}`` of ``uris`` as ``Storage.walk`` gave them (absolute local
    paths, whatever form ``root`` has)."""
    prefix = _inner(storage, root)
    return {(uri.removeprefix("s3://") if is_s3(uri) else uri)[len(prefix):].strip("/").removesuffix(suffix): uri
            for uri in uris}
