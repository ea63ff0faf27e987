"""The synthesis recipe: prompts or routing, the LLM, validation, selection, TPT, ProX and REWIRE's post-filter."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from jobs.common.llm_cluster import LLMRayConfig
from jobs.common.recipe import Compression, StorageConfig, job_field
from operators.llm.engine import LLMConfig
from operators.llm.prompts import load_prompt
from operators.params import Strict


class ProxConfig(Strict):
    doc_prompt: str = Field("prox_doc", description="prox_doc, or prox_doc_gair for ProX's released model")
    chunk_prompt: str = Field("prox_chunk", description="prox_chunk, or prox_chunk_gair")
    doc_model: str | None = Field(None, description="model of the document pass; default: llm.model")
    doc_max_tokens: int = Field(64, ge=1, description="output tokens of a document program")
    chunk_max_tokens: int = Field(256, ge=1, description="output tokens of a chunk program (ProX: 256)")
    min_fraction: float = Field(0.05, ge=0, le=1, description="drop a document with this share of words or less left")
    min_words: int = Field(10, ge=0, description="... or this many words or fewer")


class RoutingConfig(Strict):
    column: str = Field(description="a numeric quality column of the input")
    threshold: float
    high: list[str] = Field(description="prompts for documents at or above the threshold")
    low: list[str] = Field(description="prompts for documents at or below low_max (all others if unset)")
    low_max: float | None = Field(None, description="documents between low_max and threshold get no prompt")


class ValidationConfig(Strict):
    copy_jaccard: float = Field(0.9, ge=0, le=1, description="outputs this close to their input are copies")
    check_language: bool = True
    language_window: int | None = Field(1000, ge=1, description="characters of an output's start and of its end "
                                                                 "that language ID reads (an output up to twice "
                                                                 "this, whole); null: the whole output")
    min_faithfulness: float = Field(0.5, ge=0, le=1, description="share of the source's names and numbers an "
                                                                  "output must keep (synth.unfaithful)")
    faithfulness_families: list[str] = Field(["wrap", "rewire"], description="prompt families the rule applies to")


class SelectConfig(Strict):
    """Only documents whose ``column`` lies in [min, max] are sent (REWIRE rewrites a quality band), or a
    ``fraction`` of them (the mixture gives a share to TPT)."""

    column: str
    min: float | None = None
    max: float | None = None
    fraction: float = Field(1.0, gt=0, le=1, description="a deterministic share (by id) of the documents in the band")


class PostFilterConfig(Strict):
    """REWIRE's post-filter: outputs scored by a fastText quality classifier (DCLM's by default), the top
    share of each shard kept; every output records its source's score and its own."""

    model: str = Field("mlfoundations/fasttext-oh-eli5", description="fastText model: path, s3:// URI or hub id")
    label: str = "__label__hq"
    top_fraction: float = Field(0.5, gt=0, le=1, description="of the valid outputs of a shard, by score_after")


class TptConfig(Strict):
    separator: str = Field("\n\n", description="between the document and its thinking")
    wrap: tuple[str, str] | None = Field(("<think>", "</think>"), description="around the thinking; null: none")
    segmented: bool = Field(False, description="think about every segment of a long document, not just its start")


class SynthRecipe(Strict):
    job: Literal["synthesize"] = job_field("synthesize")
    name: str
    task: str = "rephrase"
    input: str
    output: str
    storage: StorageConfig = Field(default_factory=StorageConfig)
    prompts: list[str] = Field(default_factory=list, description="every document gets every prompt")
    routing: RoutingConfig | None = None
    mix: bool = Field(True, description="keep the real documents next to their synthetic versions")
    llm: LLMConfig
    validation: ValidationConfig = Field(default_factory=ValidationConfig)
    select: SelectConfig | None = None
    tpt: TptConfig = Field(default_factory=TptConfig)
    prox: ProxConfig | None = Field(None, description="ProX program refinement (two passes) instead of prompts")
    post_filter: PostFilterConfig | None = None
    tokenizer: str | None = Field(None, description="tokenizer for chunking; default: the model's")
    compression: Compression = "zstd"
    ray: LLMRayConfig = Field(default_factory=LLMRayConfig)

    @model_validator(mode="after")
    def _prompts_exist(self):
        names = self.prompts + (self.routing.high + self.routing.low if self.routing else [])
        if not names and not self.prox:
            raise ValueError("prompts: give prompts, routing with high and low prompts, or a prox block")
        if names and self.prox:
            raise ValueError("prox: a ProX recipe takes its prompts from the prox block, not prompts or routing")
        if self.prox:
            load_prompt(self.prox.doc_prompt)
            load_prompt(self.prox.chunk_prompt)
        for name in names:
            family = load_prompt(name).family
            if family == "rating":
                raise ValueError(f"prompts: {name} is a rating prompt; rate with jobs.classify (a rating block)")
            if family == "prox":
                raise ValueError(f"prompts: {name} is a ProX prompt; give it in the prox block")
        return self
