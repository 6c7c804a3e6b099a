"""Several processes: the launch command, the training arguments of each strategy, a real two-process DDP run of
the train stage on CPU, and the FSDP2 LM-head unit closed after evaluation."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from accelerate.commands.launch import launch_command_parser

from bmw.base.tiny import build_tiny_model
from bmw.models.variant import load_variant
from bmw.params import TrainParams, VariantParams
from bmw.train.config import distributed_args, sft_config
from bmw.train.fsdp_head import CompleteHeadForward
from bmw.train.launch import launch_command
from tests.test_train import PARAMS, make_project

ROOT = Path(__file__).resolve().parents[1]
STAGE = ["stages.train", "lora"]


@pytest.fixture
def single_process(monkeypatch):
    for name in ("LOCAL_RANK", "RANK", "WORLD_SIZE"):
        monkeypatch.delenv(name, raising=False)


def test_launch_command_runs_one_process_per_gpu(single_process):
    cmd = launch_command(TrainParams(distributed="ddp"), STAGE, 4)
    assert cmd[:3] == [sys.executable, "-m", "accelerate.commands.launch"]
    assert cmd[-3:] == ["-m", *STAGE]
    args = launch_command_parser().parse_args(cmd[3:])  # accelerate itself accepts the command
    assert (args.num_processes, args.multi_gpu, args.module, args.training_script) == (4, True, True, "stages.train")
    fsdp = launch_command(TrainParams(distributed="fsdp", gpus=2), STAGE, 4)
    assert fsdp[fsdp.index("--num_processes") + 1] == "2"


def test_no_launch_when_not_asked_already_launched_or_on_one_gpu(single_process, monkeypatch, caplog):
    assert launch_command(TrainParams(), STAGE, 8) is None
    with caplog.at_level(logging.WARNING, logger="bmw.train.launch"):
        assert launch_command(TrainParams(distributed="ddp"), STAGE, 1) is None
    assert "needs 2 or more GPUs, 1 visible" in caplog.text
    with pytest.raises(ValueError, match="train.gpus: 3 processes asked for, 2 GPU"):
        launch_command(TrainParams(distributed="fsdp", gpus=3), STAGE, 2)
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert launch_command(TrainParams(distributed="ddp"), STAGE, 4) is None


def test_training_arguments_of_each_strategy(single_process, monkeypatch, tmp_path):
    fsdp = TrainParams(distributed="fsdp", gradient_checkpointing=True)
    assert distributed_args(fsdp) == {}  # a single process ignores the strategy
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert distributed_args(TrainParams(distributed="ddp")) == {"ddp_find_unused_parameters": False}
    assert distributed_args(TrainParams(distributed="none")) == {}
    # float32: bfloat16 on a CPU sets use_cpu, and accelerate would then start a CPU process group of WORLD_SIZE
    config = sft_config(fsdp, VariantParams(method="full"), 0, tmp_path, "float32")
    plugin = config.fsdp_plugin_args
    assert (plugin["fsdp_version"], plugin["auto_wrap_policy"], plugin["state_dict_type"]) == (
        2, "TRANSFORMER_BASED_WRAP", "FULL_STATE_DICT")
    # FSDP checkpoints activations itself, so the Trainer's own checkpointing is off
    assert plugin["activation_checkpointing"] is True and config.activation_checkpointing is False


@pytest.mark.slow
def test_two_processes_train_a_variant_with_ddp(tmp_path):
    """torchrun on CPU stands in for `accelerate launch` on GPUs: each process trains on half the batches, rank 0
    alone writes the variant and its metrics."""
    make_project(tmp_path, {**PARAMS, "train": {**PARAMS["train"], "distributed": "ddp"}})
    env = dict(os.environ, PYTHONPATH=str(ROOT), ACCELERATE_USE_CPU="true", OMP_NUM_THREADS="1")
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", *STAGE],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, "\n".join(line for line in proc.stderr.splitlines() if "[rank0]" not in line)[-6000:]
    assert "find_unused_parameters=True" not in proc.stderr
    metrics = json.loads((tmp_path / "metrics" / "train" / "lora" / "run.json").read_text())
    # 16 rows, 4 per process and step, 3 epochs: 6 steps on two processes (12 on one)
    assert (metrics["steps"], metrics["trained"], metrics["layers"]) == (6, True, 3)
    curve = (tmp_path / "metrics" / "train" / "lora" / "plots" / "metrics" / "loss.tsv").read_text()
    assert [row.split("\t")[0] for row in curve.splitlines()[1:]] == [str(s) for s in range(1, 7)]  # one writer
    model, _ = load_variant(tmp_path / "models" / "variants" / "lora", base_dir=tmp_path / "models" / "base")
    assert model.config.num_hidden_layers == 3
    assert not (tmp_path / "models" / "checkpoints" / "lora").exists()


def test_closing_the_lm_head_unit_calls_the_head_on_zero_rows():
    model = build_tiny_model(0)
    head = model.get_output_embeddings()
    before = head.weight.detach().clone()
    calls: list[tuple] = []
    head.register_forward_hook(lambda m, args, out: calls.append((tuple(args[0].shape), tuple(out.shape))))
    CompleteHeadForward().on_evaluate(None, None, None, model=model)
    assert calls == [((0, head.in_features), (0, head.out_features))]
    assert torch.equal(head.weight, before)
