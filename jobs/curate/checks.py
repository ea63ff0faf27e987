"""Curation's start-up checks: blocklists and fastText models exist and fit the recipe, the input resolves,
the output is writable."""

from __future__ import annotations

from jobs.common.checks import exists, writable
from jobs.curate.recipe import Recipe
from operators.io.listing import resolve_inputs, shard_names
from operators.io.storage import Storage, is_s3


def check(recipe: Recipe) -> dict[str, str]:
    """Blocklists and fastText models exist, language codes and the quality label are the models', the
    input resolves to shards, ``output.root`` is writable (in that order); return the input shards by name."""
    storage = Storage(**recipe.storage.model_dump())
    for name, params in recipe.steps:
        if name == "url":
            for key in ("blocklists", "url_blocklists", "banned_words", "soft_banned_words", "banned_subwords"):
                for uri in params[key]:
                    exists(storage, uri, f"pipeline.url.{key}")
        elif name == "language":
            _languages(storage, params)
        elif name == "dclm_fasttext":
            _quality_classifier(storage, params)
    i = recipe.input
    names = shard_names(resolve_inputs(storage, i.paths, i.crawl, i.format, i.shards, i.limit))
    writable(storage, recipe.output.root, "output.root")
    return names


def _languages(storage: Storage, params: dict) -> None:
    """Load the language model (cached for the process), check ``languages`` against its labels (as FineWeb2
    codes, in any script the language is written in) and that ``language_configs`` is a folder."""
    from operators.filters.language import load_model
    from operators.filters.languages import code, configs_folder

    if params["model"] and is_s3(params["model"]):
        exists(storage, params["model"], "pipeline.language.model")
    labels = [code(label) for label in load_model(params["model"], storage, params["filename"]).get_labels()]
    if params["threshold"] is None:
        configs_folder(params["language_configs"])
    known = {label.split("_")[0] for label in labels}
    unknown = [c for c in params["languages"] if c not in labels and c.split("_")[0] not in known]
    if unknown:
        raise ValueError(f"pipeline.language.languages: {', '.join(map(repr, unknown))} not among the model's "
                         f"{len(labels)} languages, which are like {', '.join(labels[:5])}")


def _quality_classifier(storage: Storage, params: dict) -> None:
    """Load the quality model (path, s3:// or hub id; cached for the process) and check its labels."""
    from operators.filters.fasttext_quality import FastTextQualityFilter

    if is_s3(params["model"]):
        exists(storage, params["model"], "pipeline.dclm_fasttext.model")
    FastTextQualityFilter(storage=storage, **params)
