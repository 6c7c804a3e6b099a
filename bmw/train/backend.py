"""Choose the training backend: transformers + PEFT + TRL, or Unsloth where asked for and able to run."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Literal

import torch
from torch import nn
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from bmw.models.surgery import apply_plan
from bmw.params import TrainParams, VariantParams

Backend = Literal["transformers", "unsloth"]


def unsloth_available() -> bool:
    # Unsloth's kernels are CUDA-only; importing it on a CPU host raises, so check before importing.
    return torch.cuda.is_available() and importlib.util.find_spec("unsloth") is not None


def resolve_backend(requested: str, weights_on_disk: bool = True, packing: bool = False, fp8: bool = False,
                    compile: bool = False) -> Backend:
    """`auto` and `transformers`: transformers + PEFT + TRL, the path `bmw bench model` measures
    (docs/benchmarks.md). Unsloth trains only when asked for (`train.backend: unsloth`, in its own environment:
    pyproject's `unsloth` extra with constraints-unsloth.txt): measured beside it on an H100 at Qwen3-8B's shape, it
    was slower (LoRA 12,088 tok/s against 13,342 compiled; full 5,247 against 9,084), so `auto` never picks it.
    `weights_on_disk` False: a random base, whose weights Unsloth's loader (it reads the folder) cannot make.
    `packing`: packed batches train on transformers alone, whose attention `config.ensure_packing_safe` can vouch
    for; Unsloth swaps in attention kernels of its own, which keep packed examples apart only when fed by its own
    trainer's collator, and which the model's `_attn_implementation` does not name. `fp8`: FP8 linears
    (bmw.train.float8) replace transformers' modules, which Unsloth's kernels bypass. `compile`: train.compile, whose
    compiled layers have only run over transformers' own forwards, not Unsloth's patched ones."""
    if requested not in ("auto", "transformers", "unsloth"):
        raise ValueError(f"train.backend: unknown backend {requested!r}; expected auto, transformers or unsloth")
    if requested != "unsloth":
        return "transformers"
    if not weights_on_disk:
        raise RuntimeError("train.backend: unsloth loads the base's weights from its folder, and a random base "
                           "(base.name random:<shape>) has none there; use train.backend: auto or transformers")
    if packing:
        raise RuntimeError("train.packing: true with train.backend: unsloth: its attention kernels are not the "
                           "model's attention implementation, and nothing here can check that they keep packed "
                           "examples apart; use train.backend: auto or transformers, or train.packing: false")
    if fp8:
        raise RuntimeError("train.fp8: true with train.backend: unsloth: Unsloth's LoRA kernels read the base weights "
                           "themselves, past the FP8 linears; use train.backend: auto or transformers, or train.fp8: "
                           "false")
    if compile:
        raise RuntimeError("train.compile: true with train.backend: unsloth: Unsloth patches the layers' forwards with "
                           "kernels of its own, which train.compile has never compiled; use train.backend: auto or "
                           "transformers, or train.compile: false")
    if not unsloth_available():
        raise RuntimeError(
            "train.backend: unsloth needs a CUDA GPU and the unsloth package, in an environment of its own "
            "(pip install -c constraints-unsloth.txt -e '.[unsloth]', docs/benchmarks.md); use train.backend: auto "
            "or transformers here"
        )
    return "unsloth"


def check_fp8(device: torch.device) -> None:
    """`train.fp8` needs torchao and FP8 GEMMs (torch._scaled_mm) on `device`: a CUDA GPU of compute capability 8.9
    or more (Ada, Hopper, Blackwell) or a CPU (torch 2.13's CPU build runs them). Raises, naming train.fp8, where
    either is missing: at stage start, not at the first step."""
    if importlib.util.find_spec("torchao") is None:
        raise RuntimeError("train.fp8: true needs torchao, a dependency of the project (pip install -c "
                           "constraints.txt -e .); or set train.fp8: false")
    probe = torch.zeros(16, 16, device=device).to(torch.float8_e4m3fn)
    one = torch.ones((), device=device)
    try:
        torch._scaled_mm(probe, probe.t(), one, one, out_dtype=torch.bfloat16)
    except (RuntimeError, NotImplementedError) as e:
        where = torch.cuda.get_device_name(device) if device.type == "cuda" else device.type
        raise RuntimeError(f"train.fp8: true needs FP8 matmuls, which {where} cannot run "
                           f"({str(e).splitlines()[0]}); set train.fp8: false") from None


def linear_layer_names(model: nn.Module) -> list[str]:
    """Names of the decoder's linear layers (LM head excluded): what PEFT's "all-linear" targets."""
    head = model.get_output_embeddings()
    names = {name.rsplit(".", 1)[-1] for name, m in model.named_modules() if isinstance(m, nn.Linear) and m is not head}
    return sorted(names)


def unsloth_model(
    base_dir: Path, dtype: str, plan: dict, variant: VariantParams, train: TrainParams, seed: int
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """The base through Unsloth's fast loader, the plan applied, and for LoRA Unsloth's adapter on all linears.

    Needs CUDA and the `unsloth` extra: not exercised on CPU hosts (resolve_backend refuses it there).
    `train.gradient_checkpointing` picks Unsloth's own (offloaded) checkpointing or none, at the load too: there
    full fine-tuning sets it up, and its default is on.
    """
    from unsloth import FastLanguageModel

    checkpointing = "unsloth" if train.gradient_checkpointing else False
    model, tokenizer = FastLanguageModel.from_pretrained(
        model_name=str(base_dir),
        max_seq_length=train.max_length,
        dtype=getattr(torch, dtype),
        load_in_4bit=False,
        full_finetuning=variant.method == "full",
        use_gradient_checkpointing=checkpointing,
    )
    model = apply_plan(model, plan)
    if variant.method == "lora":
        model = FastLanguageModel.get_peft_model(
            model,
            r=variant.r,
            lora_alpha=variant.alpha,
            lora_dropout=variant.dropout,
            target_modules=linear_layer_names(model),
            use_gradient_checkpointing=checkpointing,
            random_state=seed,
        )
    return model, tokenizer
