"""Translate the typed params into one `RunConfig`: TRL's SFTConfig, PEFT's LoraConfig and what neither holds."""

from __future__ import annotations

import importlib.util
import logging
import math
from dataclasses import dataclass
from pathlib import Path

import torch
from peft import LoraConfig
from transformers import PreTrainedModel
from trl import SFTConfig

from bmw.params import TrainParams, VariantParams
from bmw.train.launch import world_size

log = logging.getLogger(__name__)

# Attention kernels that take per-example sequence boundaries (cu_seqlens) and so keep packed examples apart.
VARLEN_ATTENTION = ("flash_attention_2", "flash_attention_3")
# Attentions that transformers gives a per-document causal mask, derived from the position_ids of TRL's
# padding-free (packed) batches: TRL trains with use_cache=False and no attention_mask, the case in which
# transformers' masking_utils detects packed sequences. tests/test_bench.py checks packed loss == per-example loss.
POSITION_MASKED_ATTENTION = ("sdpa", "flex_attention", "eager")
# The SFTConfig field of activation checkpointing: transformers after 5.17 calls it activation_checkpointing (the
# old name warns, and goes in v6); 5.17, the newest the Unsloth environment (constraints-unsloth.txt) accepts, knows
# only gradient_checkpointing.
CHECKPOINTING_ARG = ("activation_checkpointing" if "activation_checkpointing" in SFTConfig.__dataclass_fields__
                     else "gradient_checkpointing")
# torchao's float8 recipes (bmw.train.float8); `train.fp8` takes the first: tensorwise scaling runs cuBLAS's FP8
# kernel, torchao's fastest; rowwise (a scale per row, more accurate, a slower kernel) is for `bmw bench model`
FP8_RECIPES = ("tensorwise", "rowwise")
# CUDA's FP8 GEMM (torch._scaled_mm) needs every dimension of its operands divisible by 16: the weights' (the
# linears that FP8 converts) and, in full fine-tuning's weight gradient, the batch's tokens (the collator pads them)
FP8_ALIGNMENT = 16


def liger_runs() -> bool:
    """Whether Liger's kernels can run here: a CUDA GPU and liger-kernel installed."""
    return torch.cuda.is_available() and importlib.util.find_spec("liger_kernel") is not None


def cuda_fast_args(train: TrainParams) -> dict:
    """SFTConfig settings `train.backend: auto` adds on a CUDA GPU: Liger's RMSNorm/SwiGLU/RoPE kernels where
    liger-kernel is installed (TRL keeps its own chunked LM-head loss, so Liger's fused cross-entropy stays off).
    Measured by `bmw bench` at Qwen3-8B's shape: 1.25x the LoRA tokens/s and 14 GiB less peak memory."""
    if train.backend != "auto" or not torch.cuda.is_available():
        return {}
    # compiled layers (train.compile) get inductor's own fusions of the same ops
    return {"use_liger_kernel": liger_runs() and not compiles_layers(train)}


def fp8_gpu() -> bool:
    """Whether this process has a CUDA GPU that runs FP8 matmuls (compute capability 8.9 or more: Ada, Hopper,
    Blackwell) and torchao to drive them."""
    return (torch.cuda.is_available() and torch.cuda.get_device_capability() >= (8, 9)
            and importlib.util.find_spec("torchao") is not None)


def uses_fp8(train: TrainParams, variant: VariantParams) -> bool:
    """Whether the variant's decoder linears run FP8 GEMMs (bmw.train.float8). `train.fp8: auto` turns them on where
    `bmw bench model --ablate-fp8` measured it (one H100, Qwen3-8B's shape, seq 4096, 2 rows: LoRA with compiled
    layers 1.19x bf16's tokens/s, its 200-step loss curve within bf16's noise): LoRA, its layers compiled
    (compiles_layers), on a GPU of fp8_gpu. Full fine-tuning was not measured compiled with FP8: auto leaves it bf16."""
    if train.fp8 != "auto":
        return train.fp8
    return variant.method == "lora" and compiles_layers(train) and fp8_gpu()


def compiles_layers(train: TrainParams, cuda: bool | None = None) -> bool:
    """Whether the decoder layers are compiled (bmw.train.compile). `train.compile: auto` compiles them where `bmw
    bench model --ablate-compile` measured it (one H100, Qwen3-8B's shape, seq 4096: LoRA 1.09-1.10x, full fine-tuning
    1.03-1.07x the eager path with Liger; the 200-step loss curves within bf16's noise): a single CUDA GPU, backend
    auto, packed batches (one shape to compile for) and no activation checkpointing (not measured compiled).
    `cuda`: whether a CUDA GPU trains; None, whether this process has one."""
    if train.compile != "auto":
        return train.compile
    cuda = torch.cuda.is_available() if cuda is None else cuda
    return (train.backend == "auto" and train.packing and not train.gradient_checkpointing
            and train.distributed == "none" and cuda)


def distributed_args(train: TrainParams) -> dict:
    """SFTConfig settings of a job launched on several GPUs (bmw.train.launch); none in a single process."""
    if world_size() < 2 or train.distributed == "none":
        return {}
    if train.distributed == "ddp":
        # every trained parameter gets a gradient: skip DDP's per-step search for unused ones
        return {"ddp_find_unused_parameters": False}
    # FSDP2, one shard unit per decoder layer (the model's _no_split_modules), a full state dict for saving;
    # activation checkpointing is FSDP's own then
    return {"fsdp": True,
            "fsdp_config": {"version": 2, "auto_wrap_policy": "TRANSFORMER_BASED_WRAP",
                            "state_dict_type": "FULL_STATE_DICT", "reshard_after_forward": True,
                            "activation_checkpointing": train.gradient_checkpointing}}


def packed_attention(train: TrainParams) -> str | None:
    """The attention `train.backend: auto` trains packed batches with on a CUDA GPU: flex attention, whose
    block-sparse document mask skips the blocks between packed examples. Measured by `bmw bench` on an H200 at
    Qwen3-8B's shape, seq 4096, LoRA: 1.32x SDPA's tokens/s (docs/benchmarks.md).
    None: keep the model's attention (CPU hosts, backend transformers)."""
    if train.backend == "auto" and train.packing and torch.cuda.is_available():
        return "flex_attention"
    return None


@dataclass
class RunConfig:
    """One fine-tuning run, built once from the params and passed whole, as TRL passes its `args`.

    `args`: TRL's arguments; `peft`: the LoRA adapter to add (None: full fine-tuning, or the model carries one);
    `patience`: evaluations without improvement before stopping (None: no early stopping); `packed_attention`: the
    attention packed batches are trained with (None: the model's own); `dtype`: the weights' dtype, the one the
    variant is saved in (`args.bf16` says whether the matmuls run in bfloat16 over them); `fp8`: the torchao float8
    recipe the decoder's linears train with (bmw.train.float8; None: no FP8); `compile`: compile each decoder
    layer (bmw.train.compile); `logits_loss`: the loss from the model's whole logits instead of TRL's chunked LM
    head (bmw.train.sft.LogitsLossSFTTrainer: where there is no GPU, so no Triton for TRL's kernels);
    `mask_empty_think`: leave the chat template's empty think block out of the loss (bmw.models.thinking).
    """

    args: SFTConfig
    peft: LoraConfig | None
    patience: int | None
    packed_attention: str | None
    dtype: str
    fp8: str | None = None
    compile: bool = False
    logits_loss: bool = False
    mask_empty_think: bool = False


def run_config(train: TrainParams, variant: VariantParams, seed: int, checkpoint_dir: Path, dtype: str,
               compute: str = "float32") -> RunConfig:
    return RunConfig(
        args=sft_config(train, variant, seed, checkpoint_dir, compute),
        peft=lora_config(variant) if variant.method == "lora" else None,
        patience=train.early_stopping_patience,
        packed_attention=packed_attention(train),
        dtype=dtype,
        fp8=FP8_RECIPES[0] if uses_fp8(train, variant) else None,
        compile=compiles_layers(train),
        logits_loss=not torch.cuda.is_available(),
        mask_empty_think=train.mask_empty_think,
    )


def sft_config(
    train: TrainParams, variant: VariantParams, seed: int, checkpoint_dir: Path, compute: str
) -> SFTConfig:
    """Checkpoint at every evaluation, keep the best by validation loss, log every step for the loss curves."""
    extra = cuda_fast_args(train) | distributed_args(train)
    return SFTConfig(
        output_dir=str(checkpoint_dir),
        num_train_epochs=variant.epochs,
        learning_rate=variant.lr,
        per_device_train_batch_size=train.batch_size,
        per_device_eval_batch_size=train.batch_size,
        gradient_accumulation_steps=train.grad_accum,
        warmup_steps=train.warmup_ratio,  # transformers 5: a value below 1 is a ratio of the total steps
        weight_decay=train.weight_decay,
        lr_scheduler_type=train.scheduler,
        max_length=train.max_length,
        packing=train.packing,
        pad_to_multiple_of=pad_multiple(train, uses_fp8(train, variant)),
        # without packing a batch is padded to its longest row: rows of like length batched together pad less
        # (the embedded default's training split: 17% fewer positions than random batches of 8)
        train_sampling_strategy="random" if train.packing else "group_by_length",
        assistant_only_loss=train.assistant_only_loss,
        eval_strategy="steps",
        eval_steps=train.eval_steps,
        save_strategy="steps",
        save_steps=train.eval_steps,
        save_total_limit=train.save_total_limit,
        load_best_model_at_end=True,
        metric_for_best_model="eval_loss",
        greater_is_better=False,
        logging_steps=1,
        include_num_input_tokens_seen="non_padding",
        report_to="none",
        seed=seed,
        data_seed=seed,
        bf16=compute == "bfloat16",  # autocast: on a GPU or an AVX-512 CPU (base.compute)
        # transformers refuses bf16 on a CPU unless told it is one; only then, since use_cpu also makes accelerate
        # read WORLD_SIZE/LOCAL_RANK as a multi-process CPU job
        use_cpu=compute == "bfloat16" and not torch.cuda.is_available(),
        fp16=False,
        dataloader_pin_memory=torch.cuda.is_available(),
        # under FSDP its own activation checkpointing (fsdp_config) does it
        **{CHECKPOINTING_ARG: train.gradient_checkpointing and "fsdp" not in extra},
        **extra,
    )


def pad_multiple(train: TrainParams, fp8: bool) -> int | None:
    """What the collator pads each batch's length to a multiple of. FP8 (`fp8`): FP8_ALIGNMENT. Compiled layers with
    packing (bmw.train.compile): batch_size x max_length, the most a padding-free batch of packs can hold, so that
    every batch has that one length and the layers compile once."""
    multiple = train.batch_size * train.max_length if compiles_layers(train) and train.packing else 1
    multiple = math.lcm(multiple, FP8_ALIGNMENT) if fp8 else multiple
    return None if multiple == 1 else multiple


def optimizer_steps(examples: int, train: TrainParams, variant: VariantParams, processes: int = 1) -> tuple[int, int]:
    """(optimizer steps, warm-up steps) of a run over `examples` rows, counted as transformers counts them
    (packing makes the rows fewer: then fewer steps). Warm-up steps train at a learning rate from 0 up."""
    batches = math.ceil(examples / (train.batch_size * processes))
    steps = math.ceil(variant.epochs * max(math.ceil(batches / train.grad_accum), 1))
    return steps, math.ceil(steps * train.warmup_ratio)


def lora_config(variant: VariantParams) -> LoraConfig:
    # PEFT's Qwen3 default targets q/v only; every linear layer but the LM head is the usual LoRA setup.
    return LoraConfig(
        r=variant.r,
        lora_alpha=variant.alpha,
        lora_dropout=variant.dropout,
        target_modules="all-linear",
        bias="none",
        task_type="CAUSAL_LM",
    )


def ensure_packing_safe(model: PreTrainedModel, preferred: str | None = None) -> None:
    """Switch to `preferred` if given; keep an attention that separates packed examples, else switch to a varlen
    one, else refuse."""
    if preferred and model.config._attn_implementation != preferred:
        log.info("packing: attention switched from %s to %s", model.config._attn_implementation, preferred)
        model.set_attn_implementation(preferred)
        # a LaCo-merged layer is a deep copy that carries its own config copy, which set_attn_implementation
        # does not reach: without this it would get the new attention's mask in the old attention's kernel
        for module in model.modules():
            config = getattr(module, "config", None)
            if config is not None and hasattr(config, "_attn_implementation"):
                config._attn_implementation = preferred
    current = model.config._attn_implementation
    if current in VARLEN_ATTENTION or current in POSITION_MASKED_ATTENTION:
        return
    try:
        model.set_attn_implementation(VARLEN_ATTENTION[0])
    except (ImportError, ValueError) as e:
        raise ValueError(
            f"train.packing: true needs a varlen attention ({' or '.join(VARLEN_ATTENTION)}) so that packed "
            f"examples do not attend to each other; the model uses {current!r} and {VARLEN_ATTENTION[0]} "
            f"is unavailable here ({str(e).splitlines()[0]}). Set train.packing: false."
        ) from None
    log.info("packing: attention switched from %s to %s", current, model.config._attn_implementation)
