"""One timed training run: the project's trainer (bmw.train.build_trainer) or a peer's: plain TRL SFTTrainer with its
defaults, TRL configured as its documentation recommends for speed, or Unsloth (bench.model.unsloth_run, which
runs here in a process of its own)."""

from __future__ import annotations

import gc
import logging
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

import torch
from transformers import TrainerCallback
from transformers.trainer_utils import IntervalStrategy, SaveStrategy
from trl import SFTConfig, SFTTrainer

from bench.model.data import synthetic_dataset
from bench.model.flops import effective_context, flops_per_token, matmul_params, mfu
from bench.model.profiling import kernel_time, profiler
from bench.model.shapes import build_model
from bmw.base.tokenizer import load_tiny_tokenizer
from bmw.models.base import compute_dtype
from bmw.models.variant import save_variant
from bmw.params import TrainParams, VariantParams
from bmw.train.config import CHECKPOINTING_ARG, FP8_RECIPES, compiles_layers, liger_runs, lora_config, run_config
from bmw.train.fast_lora import set_adapter_input_casts, set_fused_updates
from bmw.train.launch import is_main_process, world_size
from bmw.train.sft import build_trainer, gathered_state_dict

log = logging.getLogger(__name__)


# the modes of the baselines: the peers a user would pick instead of the project
PEERS = ("defaults", "tuned", "unsloth")
# The loss curves' data: walks over 256 token ids with 4 next tokens each, learnt in phases, from the vocabulary
# (ln 151,936 = 11.9 at Qwen3-8B's) to these ids (ln 256 = 5.5) to the table (towards ln 4 = 1.4)
BIGRAM_TOKENS, BIGRAM_SUCCESSORS = 256, 4


def tuned_attention(device: torch.device) -> str:
    """The attention of tuned TRL's padding-free batches. TRL documents padding-free packing with FlashAttention
    (flash_attention_2/3, or a Hub kernel such as kernels-community/flash-attn2), which takes the documents'
    cu_seq_lens. None installs on the GPU machine: no flash-attn wheel, no Hub to fetch a kernel from. transformers
    5 gives SDPA, flex and eager attention a per-document mask derived from the padding-free batch's position_ids
    (masking_utils.find_packed_sequence_indices); of these, flex attention is the fastest on CUDA, its block-sparse
    mask skipping the blocks between documents (1.32x SDPA at Qwen3-8B's shape, docs/benchmarks.md). On a CPU flex
    attention has no backward, so SDPA."""
    return "flex_attention" if device.type == "cuda" else "sdpa"


@dataclass(frozen=True)
class RunSpec:
    mode: str  # "project" (bmw.train, packing + the CUDA fast path); the peers "defaults" (TRL SFTTrainer's defaults),
    # "tuned" (TRL as its documentation recommends for speed: padding-free packing, Liger, no checkpointing) and
    # "unsloth" (Unsloth as its documentation recommends for speed, in a child process: bench.model.unsloth_peer)
    method: str  # "lora" | "full"
    type: str = "original"  # the model type (params' model.type), cut by the params' default plan
    shape: str = "tiny"
    seq: int = 512
    batch: int = 1
    steps: int = 30
    warmup: int = 5
    attn: str = "auto"  # project and tuned runs: "auto" = their own choice, else forced; TRL's defaults: unused
    liger: bool = True  # project runs: False turns the fast path's Liger kernels off (the ablation)
    profile: bool = False  # record the top kernels of two warm-up steps (needs warmup >= 4)
    adapter_casts: bool = False  # project LoRA runs: True keeps PEFT's casts of adapter inputs (the ablation)
    unfused: bool = False  # project LoRA runs: True adds the update as PEFT does, outside the GEMM (the ablation)
    distributed: str = "none"  # project runs under `accelerate launch`: train.distributed (ddp | fsdp)
    save: bool = False  # project runs: then gather (FSDP) and write the variant as the train stage does, timed
    chunked_loss: bool = False  # project runs on a CPU: True keeps TRL's chunked LM-head loss (the ablation)
    fp8: str | None = None  # project runs: the torchao float8 recipe of the decoder's linears (train.fp8: tensorwise)
    recast: bool = False  # project FP8 runs: True casts the frozen weights at each use, not once (the ablation)
    # project runs: train.compile. auto: the stage's own choice (compiled layers on one CUDA GPU, Liger's kernels off:
    # bmw.train.config.compiles_layers); True compiles them wherever the run is; False keeps them eager (with Liger)
    compile: bool | Literal["auto"] = "auto"
    seed: int = 0  # project runs: the trainer's seed (data order; LoRA's adapter initialisation)
    bigram: bool = False  # train on bigram walks, which have something to learn (loss curves), not uniform tokens

    @property
    def name(self) -> str:
        if self.mode in PEERS:
            return f"{self.mode}/{self.method}/{self.type}" + ("" if self.attn == "auto" else f"/{self.attn}")
        return (f"project/{self.method}/{self.type}/{self.attn}" + ("" if self.liger else "/no-liger")
                + ("/adapter-casts" if self.adapter_casts else "") + ("/unfused" if self.unfused else "")
                + ("" if self.distributed == "none" else f"/{self.distributed}")
                + ("/chunked-loss" if self.chunked_loss else "") + ("/bigram" if self.bigram else "")
                + {None: "", FP8_RECIPES[0]: "/fp8"}.get(self.fp8, f"/fp8-{self.fp8}")
                + ("/recast" if self.recast else "")
                + {True: "/compiled", False: "/eager"}.get(self.compile, "")
                + (f"/seed{self.seed}" if self.seed else ""))


class StepProfiler(TrainerCallback):
    """torch.profiler over warm-up steps 3 and 4 (before the timed steps, so profiling does not slow them)."""

    ACTIVE = 2  # steps recorded

    def __init__(self) -> None:
        self.prof = profiler(schedule=torch.profiler.schedule(wait=1, warmup=1, active=self.ACTIVE, repeat=1))

    def on_train_begin(self, args, state, control, **kwargs):
        self.prof.start()

    def on_step_end(self, args, state, control, **kwargs):
        if self.prof is not None and state.global_step <= 4:
            self.prof.step()
        if state.global_step == 4:
            self.prof.stop()


class StepTimer(TrainerCallback):
    """Wall time and trained (non-padding) tokens between the end of step `warmup` and the end of the last step;
    and the warm-up's wall time from the start of training, where compilation (train.compile, FP8) shows."""

    def __init__(self, warmup: int, total: int) -> None:
        self.warmup, self.total, self.marks = warmup, total, {}

    def on_train_begin(self, args, state, control, **kwargs):
        self.marks[0] = (time.perf_counter(), 0)

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step in (self.warmup, self.total):
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            self.marks[state.global_step] = (time.perf_counter(), int(state.num_input_tokens_seen))

    def rate(self) -> tuple[float, int]:
        (t0, n0), (t1, n1) = self.marks[self.warmup], self.marks[self.total]
        return t1 - t0, n1 - n0

    def warmup_seconds(self) -> float:
        return self.marks[self.warmup][0] - self.marks[0][0]


def _attention(spec: RunSpec, device: torch.device) -> str:
    """The attention the model is built with: transformers' default, SDPA, unless the run picks one. Project runs
    under "auto" get theirs from build_trainer (ensure_packing_safe)."""
    if spec.mode == "tuned" and spec.attn == "auto":
        return tuned_attention(device)
    return "sdpa" if spec.attn == "auto" else spec.attn


def train_params(spec: RunSpec) -> TrainParams:
    """The train params of a project run. backend auto is the project's fast path; a forced attention runs under
    backend transformers, which keeps the attention the model was built with."""
    return TrainParams(
        backend="auto" if spec.attn == "auto" else "transformers", max_length=spec.seq, batch_size=spec.batch,
        packing=True, warmup_ratio=0.0, eval_steps=10**6, gradient_checkpointing=False, distributed=spec.distributed,
        fp8=spec.fp8 is not None, compile=spec.compile,
    )


def compiled(spec: RunSpec, cuda: bool | None = None) -> bool:
    """Whether a project run compiles its decoder layers (on a CUDA GPU if `cuda`; None: here)."""
    return spec.mode == "project" and compiles_layers(train_params(spec), cuda)


def patches_liger(spec: RunSpec) -> bool:
    """Whether the run, on a CUDA GPU with liger-kernel, turns Liger's kernels on: they patch transformers' Qwen3
    classes and functions for the whole process, so every run after it would run them too."""
    if spec.mode == "tuned":
        return True
    return spec.mode == "project" and spec.liger and spec.attn == "auto" and not compiled(spec, cuda=True)


def bench_variant(spec: RunSpec) -> VariantParams:
    """The variant every run trains: the params' adapter for LoRA (r, alpha, all linears), the method's lr."""
    return VariantParams(method=spec.method, epochs=1, lr=1e-5 if spec.method == "full" else 2e-4)


def peer_args(spec: RunSpec, out: Path, **settings) -> SFTConfig:
    """A peer's SFTConfig: the shape, the step count and the measurement, and the peer's own `settings`."""
    return SFTConfig(
        output_dir=str(out), max_length=spec.seq, per_device_train_batch_size=spec.batch,
        max_steps=spec.warmup + spec.steps, learning_rate=bench_variant(spec).lr, report_to="none",
        include_num_input_tokens_seen="non_padding", save_strategy="no", bf16=torch.cuda.is_available(), **settings,
    )


def make_trainer(spec: RunSpec, model, tokenizer, dataset, out: Path) -> SFTTrainer:
    """The SFTTrainer of `spec` (the project's or a peer's) on `model`, which has the attention _attention picks."""
    variant = bench_variant(spec)
    if spec.mode == "project":
        train = train_params(spec)
        dtype = "bfloat16" if model.dtype == torch.bfloat16 else "float32"
        config = run_config(train, variant, spec.seed, out, dtype, compute_dtype(dtype, "auto"))
        config.fp8 = spec.fp8  # the recipe: train.fp8 is the first's
        # A fixed number of timed steps instead of epochs, and none of the pipeline's evaluation, checkpointing and
        # early stopping: the bench times optimizer steps.
        args = config.args
        args.max_steps = spec.warmup + spec.steps
        args.eval_strategy, args.save_strategy = IntervalStrategy.NO, SaveStrategy.NO
        args.load_best_model_at_end = False
        args.use_liger_kernel = args.use_liger_kernel and spec.liger
        config.patience = None
        config.logits_loss = config.logits_loss and not spec.chunked_loss
        trainer = build_trainer(model, tokenizer, config, dataset, dataset.select(range(2)))
        if spec.adapter_casts:
            set_adapter_input_casts(trainer.model, enabled=True)
        if spec.unfused:
            set_fused_updates(trainer.model, enabled=False)
        if spec.recast:  # before the first step: the layers compile lazily, with what the linears hold then
            from bmw.train.float8 import FrozenWeightFloat8Linear

            for module in trainer.model.modules():
                if isinstance(module, FrozenWeightFloat8Linear):
                    module.weight_fp8 = None
        return trainer
    # The peers set only the shape, the step count and the measurement; the same LoRA adapter as the project's.
    # defaults: TRL's (padding, no packing, activation checkpointing, fused AdamW, bf16 on GPU).
    # tuned: what TRL documents for speed. Packing with best-fit decreasing, which makes the batches padding-free
    # (no attention_mask: the model's attention keeps the documents apart from their position_ids, tuned_attention),
    # Liger's kernels where they run (CUDA and liger-kernel installed), no activation checkpointing.
    tuned = {"packing": True, "packing_strategy": "bfd", "padding_free": True, CHECKPOINTING_ARG: False,
             "use_liger_kernel": liger_runs()}
    args = peer_args(spec, out, **(tuned if spec.mode == "tuned" else {}))
    return SFTTrainer(model=model, args=args, train_dataset=dataset, processing_class=tokenizer,
                      peft_config=lora_config(variant) if spec.method == "lora" else None)


def timed_save(trainer: SFTTrainer, tokenizer, spec: RunSpec, plan: dict, out: Path) -> dict:
    """Gather the weights (FSDP) and write the variant with the train stage's own code; seconds and bytes."""
    began = time.perf_counter()
    dtype = "bfloat16" if spec.shape == "qwen3-8b" else "float32"  # as build_model makes them
    state_dict = gathered_state_dict(trainer, dtype)
    if is_main_process():
        manifest = {"name": "bench", "method": spec.method, "type": spec.type,
                    "base": {"path": "random", "dtype": dtype}}
        save_variant(out, trainer.model, tokenizer, manifest, plan, state_dict)
    if torch.distributed.is_initialized():
        torch.distributed.barrier()  # the other processes wait for rank 0's write
    seconds = time.perf_counter() - began
    written = sum(f.stat().st_size for f in out.iterdir()) if out.is_dir() else 0  # rank 0's folder
    return {"save_s": round(seconds, 2), "saved_bytes": written}


def setup(spec: RunSpec, tokenizer, dataset, out: Path, device: torch.device) -> tuple[SFTTrainer, dict]:
    """The trainer of `spec` on the model of its shape and type, and the model's plan."""
    model, plan = build_model(spec.shape, spec.type, device, attn=_attention(spec, device))
    return make_trainer(spec, model, tokenizer, dataset, out), plan


def run_training(spec: RunSpec, device: torch.device, prepare=setup) -> dict:
    """Time `spec` and return its figures (tokens/s, MFU, peak memory) or, if it failed, the error. `prepare` makes
    the trainer as `setup` does (bench.model.unsloth_run: Unsloth's loader and trainer)."""
    tokenizer = load_tiny_tokenizer()
    total = spec.warmup + spec.steps
    rows = total * spec.batch * 6
    dataset = (synthetic_dataset(rows, spec.seq, 3, 3 + BIGRAM_TOKENS, seed=0, successors=BIGRAM_SUCCESSORS)
               if spec.bigram else synthetic_dataset(rows, spec.seq, 3, len(tokenizer), seed=0))
    s_eff = effective_context([len(r) for r in dataset["input_ids"]])
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    result: dict = {"run": spec.name, **asdict(spec)}
    try:
        with tempfile.TemporaryDirectory() as out:
            trainer, plan = prepare(spec, tokenizer, dataset, Path(out), device)
            timer = StepTimer(spec.warmup, total)
            trainer.add_callback(timer)
            step_profiler = StepProfiler() if spec.profile and spec.warmup >= 4 else None
            if step_profiler:
                trainer.add_callback(step_profiler)
            trainer.train()
            if spec.save and spec.mode == "project":
                result |= timed_save(trainer, tokenizer, spec, plan, Path(out) / "variant")
            seconds, tokens = timer.rate()
            if step_profiler:
                # the profiled warm-up steps' kernel time against a timed step's wall time (the profiler slows the
                # host, not the kernels)
                busy_ms, top = kernel_time(step_profiler.prof)
                per_step = busy_ms / StepProfiler.ACTIVE
                result |= {"top_kernels": top, "kernel_ms_per_step": round(per_step, 1),
                           "device_busy": round(per_step / (1e3 * seconds / spec.steps), 3)}
            gpus = world_size()  # tokens are counted over all processes
            args, trained = trainer.args, trainer.model
            flops = flops_per_token(trained, spec.method, s_eff)
            result.update({
                "tokens": tokens, "seconds": round(seconds, 3), "tokens_per_s": round(tokens / seconds, 1),
                "warmup_s": round(timer.warmup_seconds(), 3),
                "s_eff": round(s_eff, 1), "flops_per_token": flops, "gpus": gpus,
                "mfu": round(mfu(tokens / seconds / gpus, flops), 4),
                "layers": trained.config.num_hidden_layers, "matmul_params": matmul_params(trained),
                "trainable_params": sum(p.numel() for p in trained.parameters() if p.requires_grad),
                "packing": bool(args.packing), "activation_checkpointing": bool(args.gradient_checkpointing),
                "liger": bool(args.use_liger_kernel), "compiled_layers": compiled(spec),
                "optim": getattr(args.optim, "value", str(args.optim)),
                "bf16": bool(args.bf16),
                "final_loss": next((e["loss"] for e in reversed(trainer.state.log_history) if "loss" in e), None),
                # every logged loss: every step's for the project's runs (logging_steps=1, bmw.train.config)
                "losses": [e["loss"] for e in trainer.state.log_history if "loss" in e],
            })
            if device.type == "cuda":
                result["peak_memory_gib"] = round(torch.cuda.max_memory_allocated(device) / 2**30, 2)
    except Exception as e:  # one failing configuration (OOM, a kernel) must not lose the others' figures
        log.exception("%s failed", spec.name)
        result["error"] = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"[:300]
    finally:
        trainer = trained = None
        gc.collect()
        if device.type == "cuda":
            torch.cuda.empty_cache()
    return result
