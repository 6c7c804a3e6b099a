"""One run of the Unsloth peer of `bmw bench model`, in a process of its own; writes its row as JSON.

    python -m bench.model.unsloth_run --spec '{"mode": "unsloth", "method": "lora", ...}' --out row.json

bench.model.unsloth_peer starts it with Unsloth's environment first on PYTHONPATH (/tmp/site-unsloth) and reads the
row back. Unsloth is imported first, as it requires: it patches transformers, PEFT and TRL for the whole process.
Its CPU fallback (stock transformers + PEFT + TRL, none of Unsloth's kernels) is off unless the caller sets
UNSLOTH_DISABLE_CPU_FALLBACK=0: without a GPU the import fails with Unsloth's own error, and the row says so.
"""

import argparse
import gc
import json
import logging
import os
import sys
from pathlib import Path

os.environ.setdefault("UNSLOTH_DISABLE_CPU_FALLBACK", "1")

import unsloth  # noqa: E402  before transformers, PEFT and TRL: see above

import torch  # noqa: E402
from trl import SFTTrainer  # noqa: E402

from bench.model.cli import PACKAGES as CLI_PACKAGES, environment  # noqa: E402
from bench.model.shapes import build_model, default_plan  # noqa: E402
from bench.model.train import RunSpec, bench_variant, peer_args, run_training  # noqa: E402
from bmw.io import write_json  # noqa: E402
from bmw.params import TrainParams  # noqa: E402
from bmw.train.backend import unsloth_model  # noqa: E402
from bmw.train.config import CHECKPOINTING_ARG  # noqa: E402

PACKAGES = (*CLI_PACKAGES, "unsloth", "unsloth_zoo", "xformers", "bitsandbytes")  # the child's own environment


def prepare(spec: RunSpec, tokenizer, dataset, out: Path, device: torch.device) -> tuple[SFTTrainer, dict]:
    """Unsloth as its documentation recommends for speed. The random model of the shape is written to `out`
    (Unsloth's loader reads a folder: 16 GB at Qwen3-8B's shape, in the run's temporary folder under $TMPDIR or
    /tmp) and loaded by FastLanguageModel the way `train.backend: unsloth` loads a base (unsloth_model: the plan
    applied, for LoRA Unsloth's adapter on all linears with the params' r and alpha). TRL's SFTTrainer with
    `packing`, which Unsloth turns into its padding-free packed batches (packed_seq_lengths to its varlen
    attention), and no activation checkpointing, like the other fast runs (Unsloth's default, its offloaded
    checkpointing, trades speed for memory)."""
    model = build_model(spec.shape, "original", device)[0]
    plan = default_plan(model.eval(), spec.type)
    dtype = str(model.dtype).removeprefix("torch.")
    base = out / "base"
    model.save_pretrained(base)
    tokenizer.save_pretrained(base)
    del model
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
    train = TrainParams(backend="unsloth", max_length=spec.seq, batch_size=spec.batch, gradient_checkpointing=False)
    model, tokenizer = unsloth_model(base, dtype, plan, bench_variant(spec), train, seed=0)
    args = peer_args(spec, out / "run", packing=True, **{CHECKPOINTING_ARG: False})
    return SFTTrainer(model=model, args=args, train_dataset=dataset, processing_class=tokenizer), plan


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s", stream=sys.stderr)
    p = argparse.ArgumentParser(prog="python -m bench.model.unsloth_run", description=__doc__.splitlines()[0])
    p.add_argument("--spec", required=True, help="the run's RunSpec as JSON (mode unsloth)")
    p.add_argument("--out", required=True, help="where the row goes")
    a = p.parse_args(argv)
    spec = RunSpec(**json.loads(a.spec))
    if spec.mode != "unsloth":
        p.error(f"--spec: mode {spec.mode!r}; this runs the unsloth peer only")
    device = torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")
    row = run_training(spec, device, prepare=prepare)
    write_json(a.out, row | {"unsloth_device": unsloth.DEVICE_TYPE, "environment": environment(device, PACKAGES)})


if __name__ == "__main__":
    main()
