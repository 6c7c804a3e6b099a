"""The base model folder `models/base/`: written once by the base stage, read by prune, train and eval."""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from bmw.models.random_base import build_random_model, read_marker
from bmw.models.weights import WeightsError, layer_indices, tensor_names
from bmw.params import Params, check_for_model

BASE_DIR = Path("models/base")


def compute_dtype(weights: str, compute: str) -> str:
    """The dtype matmuls run in (`base.compute`), given the weights' dtype (`base.dtype`).

    bfloat16 over float32 weights is mixed precision (autocast): 1.7x the training and 1.8x the evaluation speed of
    float32 for SmolLM2 on a 2-core AVX-512 CPU (measured), master weights and losses stay float32."""
    if compute != "auto":
        return compute
    if weights != "float32":
        return weights
    native = torch.cuda.is_bf16_supported() if torch.cuda.is_available() else torch.ops.mkldnn._is_mkldnn_bf16_supported()
    return "bfloat16" if native else "float32"


def model_device() -> torch.device:
    """Where models run: this process's GPU where there is one (its LOCAL_RANK in a job on several GPUs), else the
    CPU. Calibration forwards and random bases use it: 27k tokens through Qwen3-8B took 102 s on 32 CPU cores."""
    if torch.cuda.is_available():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return torch.device("cpu")


def base_layers(path: str | Path) -> int:
    """The decoder depth of a base folder, read from its config.json and checked against its weights' headers
    (nothing is loaded). Refused: a folder whose config or tokenizer asks for code of its own (it is never run,
    and transformers would stop to ask), and one whose weights hold other layers than its config says."""
    path = Path(path)
    if not (path / "config.json").is_file():
        raise FileNotFoundError(f"{path}: no config.json; run the base stage (python -m stages.base) first")
    configs = {name: json.loads((path / name).read_text(encoding="utf-8"))
               for name in ("config.json", "tokenizer_config.json") if (path / name).is_file()}
    config = configs["config.json"]
    for name, data in configs.items():
        if isinstance(data, dict) and data.get("auto_map"):
            raise ValueError(f"{path}: its {name} maps classes to code shipped with the model (auto_map "
                             f"{sorted(data['auto_map'])}); remote code is never run here (trust_remote_code=False): "
                             "use a model whose architecture transformers implements itself")
    layers = config.get("num_hidden_layers", config.get("text_config", {}).get("num_hidden_layers"))
    if not isinstance(layers, int) or layers < 1:
        raise ValueError(f"{path}/config.json: no num_hidden_layers")
    if read_marker(path) is not None:
        return layers  # a random base: its weights are made from its config at load
    held = layer_indices(tensor_names(path))
    if held != set(range(layers)):
        extra, missing = sorted(held - set(range(layers))), sorted(set(range(layers)) - held)
        raise WeightsError(f"{path}: config.json says {layers} layers, the weights hold {len(held)}"
                           + (f"; missing {missing}" if missing else "") + (f"; beyond the config {extra}" if extra else ""))
    return layers


def check_against_base(params: Params, path: str | Path = BASE_DIR) -> int:
    """Everything about `params` that depends on the base model or the host, before any model is loaded; the
    base folder's depth."""
    layers = base_layers(path)
    check_for_model(params, layers, torch.cuda.is_available())
    return layers


def load_base(
    path: str | Path, dtype: str | torch.dtype = "float32", device: torch.device | None = None
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Model (eval mode) in `dtype` on `device` and tokenizer from a materialised base folder; never touches a hub,
    never runs its code. `device` None: a folder's weights stay on the CPU (where from_pretrained puts them), a
    random base is made on `model_device()` (the GPU where there is one: Qwen3-8B's 16 GB never touch the host)."""
    path = Path(path)
    base_layers(path)
    torch_dtype = getattr(torch, dtype) if isinstance(dtype, str) else dtype
    marker = read_marker(path)
    if marker is not None:
        model = build_random_model(path, marker, device or model_device()).to(torch_dtype)
    else:
        model = AutoModelForCausalLM.from_pretrained(path, dtype=torch_dtype, local_files_only=True,
                                                     trust_remote_code=False)
        if device is not None:
            model.to(device)
    return model.eval(), load_base_tokenizer(path)


def load_base_tokenizer(path: str | Path) -> PreTrainedTokenizerBase:
    path = Path(path)
    if not (path / "tokenizer_config.json").is_file():
        raise FileNotFoundError(f"{path}: no tokenizer; run the base stage (python -m stages.base) first")
    return AutoTokenizer.from_pretrained(path, local_files_only=True, trust_remote_code=False)
