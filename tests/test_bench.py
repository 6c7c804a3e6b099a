"""`bmw bench` on the real tiny Qwen3: packing keeps examples apart (the project's and tuned TRL's), the FLOP
convention, the run order, the FP8 loss curves, and the CLI end to end."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from matplotlib.image import imread
from transformers import Qwen3ForCausalLM

from bench.model.cli import main, parse_args, plan_runs, table
from bench.model.curves import compare
from bench.model.data import synthetic_dataset
from bench.model.evals import GEN_ENGINES, generation_throughput
from bench.model.flops import flops_per_token, matmul_params
from bench.model.shapes import build_model, default_plan
from bench.model.train import RunSpec, _attention, compiled, make_trainer, patches_liger, run_training, tuned_attention
from bmw.base.tiny import qwen3_8b_config
from bmw.base.tokenizer import load_tiny_tokenizer
from bmw.params import TrainParams, VariantParams
from bmw.train.config import ensure_packing_safe, run_config
from bmw.train.sft import build_trainer

CPU = torch.device("cpu")

ROOT = Path(__file__).resolve().parents[1]


def _nll_sum(model, ids: torch.Tensor) -> tuple[float, int]:
    logits = model(input_ids=ids[None], use_cache=False).logits[0, :-1]
    return float(F.cross_entropy(logits, ids[1:], reduction="sum")), len(ids) - 1


def _assert_packed_loss_is_per_example(model, batch) -> None:
    positions = batch["position_ids"][0]
    starts = (positions == 0).nonzero().flatten().tolist() + [len(positions)]
    assert "attention_mask" not in batch and len(starts) > 3  # several examples share one padding-free row
    with torch.no_grad():
        packed = model(input_ids=batch["input_ids"], position_ids=batch["position_ids"], labels=batch["labels"],
                       use_cache=False).loss
        parts = [_nll_sum(model, batch["input_ids"][0, a:b]) for a, b in zip(starts, starts[1:])]
        leaky = model(input_ids=batch["input_ids"], labels=batch["labels"], use_cache=False).loss
    per_example = sum(s for s, _ in parts) / sum(n for _, n in parts)
    assert float(packed) == pytest.approx(per_example, rel=1e-5)
    assert abs(float(leaky) - per_example) > 1e-3  # the check can fail: one causal run over the row differs


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_packed_batch_of_the_project_trainer_has_the_per_example_loss(tmp_path, attn):
    tokenizer = load_tiny_tokenizer()
    model, _ = build_model("tiny", "pruned", CPU, attn=attn)
    data = synthetic_dataset(12, 96, 3, len(tokenizer), seed=3)
    train = TrainParams(backend="transformers", max_length=128, batch_size=2, packing=True)
    trainer = build_trainer(model, tokenizer, run_config(train, VariantParams(method="full"), 0, tmp_path, "float32"),
                            data, data)
    _assert_packed_loss_is_per_example(model, next(iter(trainer.get_train_dataloader())))


@pytest.mark.parametrize("device", ["cpu", "cuda"], ids=["as-on-cpu", "as-on-cuda"])
def test_packed_batch_of_tuned_trl_has_the_per_example_loss(tmp_path, device):
    """Tuned TRL's padding-free batch, with the attention it trains with on `device`: SDPA on a CPU, flex attention
    on CUDA (checked here on the CPU, forward only: flex attention has no CPU backward). Every token of the row is a
    document's, so the non-padding count is every token trained."""
    attn = tuned_attention(torch.device(device))
    tokenizer = load_tiny_tokenizer()
    model, _ = build_model("tiny", "pruned", CPU, attn=attn)
    data = synthetic_dataset(12, 96, 3, len(tokenizer), seed=3)
    trainer = make_trainer(RunSpec(mode="tuned", method="full", seq=128, batch=2), model, tokenizer, data, tmp_path)
    assert trainer.model.config._attn_implementation == attn  # TRL keeps the attention the model was loaded with
    batch = next(iter(trainer.get_train_dataloader()))
    _assert_packed_loss_is_per_example(model, batch)
    assert int((batch["input_ids"] != tokenizer.pad_token_id).sum()) == batch["input_ids"].numel()


def test_switching_attention_reaches_laco_merged_layers():
    model, _ = build_model("tiny", "laco", CPU, attn="sdpa")
    assert model.config.num_hidden_layers == 26
    ensure_packing_safe(model, "eager")
    configs = [m.config for m in model.modules() if hasattr(getattr(m, "config", None), "_attn_implementation")]
    kinds = {c._attn_implementation for c in configs}
    assert kinds == {"eager"}


def test_bench_types_are_cut_by_the_params_default_plans():
    layers = {t: build_model("tiny", t, CPU)[1]["layers_after"] for t in ("original", "dropped", "pruned", "laco")}
    # dropped.layers [16], pruned.keep 24, LaCo C=3 merges accepted until max_compression 0.3 of 36 layers
    assert layers == {"original": 36, "dropped": 35, "pruned": 24, "laco": 26}
    model, _ = build_model("tiny", "original", CPU)
    with pytest.raises(ValueError, match="type 'halved'"):
        default_plan(model, "halved")
    with pytest.raises(ValueError, match="shape 'qwen3-80b'"):
        build_model("qwen3-80b", "original", CPU)
    with pytest.raises(ValueError, match=r"token id range \[5, 5\)"):
        synthetic_dataset(2, 64, 5, 5, seed=0)


def test_synthetic_lengths_are_deterministic_and_bounded():
    a, b = synthetic_dataset(50, 256, 3, 100, seed=1), synthetic_dataset(50, 256, 3, 100, seed=1)
    assert a["input_ids"] == b["input_ids"]
    lengths = [len(r) for r in a["input_ids"]]
    assert min(lengths) >= 32 and max(lengths) <= 256 and len(set(lengths)) > 10
    walks = synthetic_dataset(50, 256, 3, 100, seed=1, successors=4)
    assert walks["input_ids"] == synthetic_dataset(50, 256, 3, 100, seed=1, successors=4)["input_ids"]
    assert [len(r) for r in walks["input_ids"]] == lengths
    following: dict[int, set[int]] = {}
    for row in walks["input_ids"]:
        for token, after in zip(row, row[1:]):
            following.setdefault(token, set()).add(after)
    assert max(len(f) for f in following.values()) <= 4 and min(min(r) for r in walks["input_ids"]) >= 3


def test_flop_convention_at_qwen3_8b_shape():
    with torch.device("meta"):
        model = Qwen3ForCausalLM(qwen3_8b_config())
    n = matmul_params(model)
    assert n == sum(p.numel() for p in model.parameters()) - 151936 * 4096  # all but the embedding table
    assert 7.5e9 < n < 7.6e9  # 6.95B in the layers + 0.62B LM head
    attention = 12 * 36 * 4096 * 2048
    assert flops_per_token(model, "full", 2048) == 6 * n + attention
    assert flops_per_token(model, "lora", 2048) == 4 * n + attention
    assert flops_per_token(model, "none", 2048, train=False) == 2 * n + 4 * 36 * 4096 * 2048


@pytest.mark.slow
def test_bmw_bench_runs_the_tiny_shape_on_cpu(tmp_path, capsys):
    out = tmp_path / "bench.json"
    main(["--shape", "tiny", "--methods", "lora", "--seq", "64", "--batch", "2", "--steps", "1", "--warmup", "1",
          "--window", "32", "--ppl-docs", "2", "--ppl-batch", "2", "--se-prompts", "1", "--se-samples", "2",
          "--new-tokens", "2", "--out", str(out)])
    result = json.loads(out.read_text())
    runs = {r["run"]: r for r in result["train"]}
    assert set(runs) == {"defaults/lora/original", "tuned/lora/original", "project/lora/original/auto"}
    base, tuned, project = (runs[n] for n in ("defaults/lora/original", "tuned/lora/original",
                                              "project/lora/original/auto"))
    assert base["activation_checkpointing"] and not base["packing"]
    for run in (tuned, project):
        assert run["packing"] and not run["activation_checkpointing"]
    for run in (base, tuned, project):
        assert run["tokens"] > 0 and run["tokens_per_s"] > 0 and run["flops_per_token"] > 0
    assert project["trainable_params"] < project["matmul_params"]  # LoRA: the adapter only
    assert result["eval"]["perplexity"]["tokens_scored"] == 2 * 31
    assert result["eval"]["semantic_entropy_sampling_project"]["generated_tokens"] > 0
    assert result["environment"]["versions"]["trl"]
    assert "tuned/lora/original" in capsys.readouterr().out


def test_bmw_bench_loss_curve_writes_every_step_and_a_plot(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("PYTORCH_CUDA_ALLOC_CONF", "expandable_segments:True")  # recorded: an A/B of the allocator
    out = tmp_path / "curve.json"
    main(["--shape", "tiny", "--methods", "lora", "--seq", "64", "--batch", "2", "--loss-curve", "5", "--warmup",
          "1", "--curve-window", "3", "--ablate-fp8", "--ablate-compile", "--no-eval", "--out", str(out)])
    result = json.loads(out.read_text())
    runs = {r["run"].removeprefix("project/lora/original/auto").replace("/bigram", ""): r for r in result["train"]}
    assert set(runs) == {"", "/fp8", "/compiled", "/seed1"}  # a CPU: auto keeps the layers eager, the ablation compiles
    assert [r["compiled_layers"] for r in runs.values()] == [run == "/compiled" for run in runs]
    assert all(len(r["losses"]) == 5 and r["losses"][-1] == r["final_loss"] for r in runs.values())
    assert runs["/fp8"]["losses"] != runs[""]["losses"]
    # float32 on a CPU: the compiled layers compute what the eager ones do, to rounding
    assert runs["/compiled"]["losses"] == pytest.approx(runs[""]["losses"], rel=1e-4)
    assert all(r["warmup_s"] > 0 for r in runs.values())  # the warm-up step, compilation included
    summary = result["loss_curve"]["lora"]
    assert summary["window"] == 3 and set(summary["within_noise"]) == {
        "project/lora/original/auto/bigram/fp8", "project/lora/original/auto/bigram/compiled"}
    assert imread(out.with_suffix(".png")).shape[1] > 600
    assert result["environment"]["alloc_conf"] == "expandable_segments:True"
    assert "the noise" in capsys.readouterr().out


@pytest.mark.parametrize("engine", GEN_ENGINES)
def test_generation_throughput_times_each_engine(engine):
    tokenizer = load_tiny_tokenizer()
    model = build_model("tiny", "original", CPU)[0].eval()
    result = generation_throughput(model, tokenizer, prompts=2, samples=2, new_tokens=3, engine=engine)
    assert result["engine"] == engine and 4 <= result["generated_tokens"] <= 12 and result["seconds"] > 0
    assert "top_kernels" not in result


def test_training_profile_ranks_the_operators_of_two_warmup_steps():
    """`--profile` on a training run: warm-up steps 3-4 profiled, their operators (CPU here; kernels on a GPU)
    ranked with shares of one total; the timed steps still timed."""
    spec = RunSpec(mode="project", method="lora", seq=64, batch=2, steps=1, warmup=5, profile=True)
    result = run_training(spec, CPU)
    kernels = result["top_kernels"]
    assert result["tokens_per_s"] > 0 and kernels and sum(k["self_share"] for k in kernels) <= 1.0
    assert [k["self_ms"] for k in kernels] == sorted((k["self_ms"] for k in kernels), reverse=True)
    assert not any(k["name"].startswith("ProfilerStep") for k in kernels)  # step ranges would count time twice
    # the shares are of every operator's time, which the listed ones (15 at most) do not exceed
    assert result["kernel_ms_per_step"] * 2 >= 0.99 * sum(k["self_ms"] for k in kernels)
    listed = sum(k["self_share"] for k in kernels)
    assert result["kernel_ms_per_step"] * 2 * listed == pytest.approx(sum(k["self_ms"] for k in kernels), rel=0.02)
    assert result["device_busy"] > 0


def test_generation_profile_names_where_the_decoding_time_goes():
    """`--profile`: one more call of the engine under torch.profiler (CPU time here), its operators ranked."""
    tokenizer = load_tiny_tokenizer()
    model = build_model("tiny", "original", CPU)[0].eval()
    result = generation_throughput(model, tokenizer, prompts=2, samples=2, new_tokens=3, profile=True)
    kernels = result["top_kernels"]
    assert kernels and all(k["self_ms"] >= 0 and k["calls"] > 0 for k in kernels)
    assert [k["self_ms"] for k in kernels] == sorted((k["self_ms"] for k in kernels), reverse=True)
    assert any("scaled_dot_product_attention" in k["name"] or "mm" in k["name"] for k in kernels)
    assert result["kernel_ms"] >= sum(k["self_ms"] for k in kernels) and result["device_busy"] > 0


def test_bench_runs_every_run_without_liger_before_the_first_with_it(monkeypatch):
    """Liger patches transformers' Qwen3 classes process-wide: every run that turns it on comes after every run that
    does not. The project's own runs are the train stage's (train.compile: auto): compiled, without Liger, on CUDA."""
    flags = ["--methods", "lora,full", "--ablate-liger", "--ablate-casts", "--ablate-fused", "--ablate-compile"]
    assert [r.name for r in plan_runs(parse_args(flags))] == [
        "defaults/lora/original", "defaults/full/original",
        "project/lora/original/auto", "project/full/original/auto",
        "project/lora/original/auto/compiled", "project/full/original/auto/compiled",  # a CPU: auto is eager
        "project/lora/original/auto/no-liger/eager", "project/full/original/auto/no-liger/eager",
        "project/lora/original/auto/adapter-casts", "project/lora/original/auto/unfused",
        "tuned/lora/original", "tuned/full/original",
    ]
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    runs = plan_runs(parse_args(flags))
    assert [r.name for r in runs] == [
        "defaults/lora/original", "defaults/full/original",
        "project/lora/original/auto", "project/full/original/auto",  # compiled on one CUDA GPU
        "project/lora/original/auto/no-liger/eager", "project/full/original/auto/no-liger/eager",
        "project/lora/original/auto/adapter-casts", "project/lora/original/auto/unfused",
        "tuned/lora/original", "tuned/full/original",
        "project/lora/original/auto/eager", "project/full/original/auto/eager",  # the ablation: eager with Liger
    ]
    assert [compiled(r) for r in runs if r.mode == "project"] == [True, True, False, False, True, True, False, False]
    patching = [patches_liger(r) for r in runs]
    assert patching == sorted(patching) and sum(patching) == 4
    ddp = plan_runs(parse_args(["--methods", "lora", "--baselines", "tuned", "--distributed", "lora=ddp"]))
    assert [r.name for r in ddp] == ["tuned/lora/original", "project/lora/original/auto/ddp"]  # eager, Liger on
    monkeypatch.undo()
    assert [r.name for r in plan_runs(parse_args(["--methods", "lora", "--baselines", "tuned"]))] == [
        "project/lora/original/auto", "tuned/lora/original"]
    tuned = plan_runs(parse_args(["--methods", "lora", "--baselines", "tuned", "--tuned-attn", "auto,sdpa"]))
    assert [r.name for r in tuned] == ["project/lora/original/auto", "tuned/lora/original", "tuned/lora/original/sdpa"]
    assert [_attention(r, torch.device("cuda")) for r in tuned[1:]] == ["flex_attention", "sdpa"]
    assert [r.name for r in plan_runs(parse_args(["--methods", "lora", "--no-baseline"]))] == [
        "project/lora/original/auto"]


def test_fp8_runs_come_last_and_the_loss_curve_runs_replace_the_timing_runs(monkeypatch):
    runs = plan_runs(parse_args(["--methods", "lora,full", "--no-baseline", "--ablate-fp8",
                                 "--fp8-recipes", "tensorwise,rowwise", "--profile"]))
    assert [r.name for r in runs] == [
        "project/lora/original/auto", "project/full/original/auto",
        "project/lora/original/auto/fp8", "project/lora/original/auto/fp8-rowwise",
        "project/full/original/auto/fp8", "project/full/original/auto/fp8-rowwise"]
    assert all(r.profile for r in runs)  # the FP8 runs are profiled like the runs they are measured against
    recast = plan_runs(parse_args(["--methods", "lora,full", "--no-baseline", "--ablate-fp8", "--ablate-recast"]))
    assert [r.name.removeprefix("project/") for r in recast][-1:] == ["lora/original/auto/fp8/recast"]
    curves = plan_runs(parse_args(["--methods", "lora,full", "--loss-curve", "200", "--warmup", "5", "--profile"]))
    assert [r.name for r in curves] == [f"project/{m}/original/auto/bigram{s}" for m in ("lora", "full")
                                        for s in ("", "/fp8", "/seed1")]
    assert {(r.steps + r.warmup, r.batch, r.bigram, r.profile) for r in curves} == {(200, 2, True, False),
                                                                                  (200, 1, True, False)}
    flipped = ["--methods", "lora,full", "--loss-curve", "200", "--ablate-compile"]
    assert [r.name.removeprefix("project/").replace("/original/auto", "") for r in plan_runs(parse_args(flipped))] == [
        "lora/bigram", "lora/bigram/compiled", "lora/bigram/seed1",  # a CPU: the reference is eager
        "full/bigram", "full/bigram/compiled", "full/bigram/seed1"]
    both = ["--methods", "lora", "--no-baseline", "--ablate-compile", "--ablate-fp8"]
    assert [r.name.removeprefix("project/lora/original/auto") for r in plan_runs(parse_args(both))] == [
        "", "/compiled", "/fp8/compiled", "/fp8"]
    assert [r.name.removeprefix("project/lora/original/auto") for r in plan_runs(parse_args([*both, "--loss-curve",
                                                                                              "200"]))] == [
        "/bigram", "/bigram/fp8", "/bigram/compiled", "/bigram/seed1"]
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # auto compiles: the ablation is eager, with Liger
    assert [r.name.removeprefix("project/").replace("/original/auto", "") for r in plan_runs(parse_args(flipped))] == [
        "lora/bigram", "lora/bigram/seed1", "full/bigram", "full/bigram/seed1",
        "lora/bigram/eager", "full/bigram/eager"]  # after every run without Liger
    assert [r.name.removeprefix("project/lora/original/auto") for r in plan_runs(parse_args(both))] == [
        "", "/fp8", "/eager", "/fp8/eager"]
    with pytest.raises(SystemExit):
        parse_args(["--loss-curve", "5", "--warmup", "5"])


def test_loss_curves_compare_each_fp8_run_with_the_noise_of_two_bf16_runs():
    def run(fp8, seed, losses, method="lora"):
        return {"run": f"{method}/{fp8}/{seed}", "method": method, "fp8": fp8, "compile": "auto", "seed": seed,
                "losses": losses}

    runs = [run(None, 0, [5.0, 4.0, 3.0, 2.0]), run("tensorwise", 0, [5.0, 4.1, 3.1, 1.9]),
            run("rowwise", 0, [5.0, 4.0, 3.4, 2.6]), run(None, 1, [5.2, 3.8, 3.2, 1.8]),
            run(None, 0, [5.0, 4.0, 3.0, 2.05]) | {"run": "lora/compiled", "compile": True},
            run(None, 0, [], "full") | {"error": "OutOfMemoryError: "}]
    summary = compare(runs, window=3)
    assert set(summary) == {"lora"}  # the failed run has no curve
    lora = summary["lora"]
    assert lora["window"] == 3 and lora["reference"] == "lora/None/0"
    assert lora["noise"] == pytest.approx(0.2) and lora["mean_loss"]["lora/None/0"] == pytest.approx(3.0)
    assert lora["mean_abs_diff"]["lora/tensorwise/0"] == pytest.approx(0.1)
    assert lora["within_noise"] == {"lora/tensorwise/0": True, "lora/rowwise/0": False, "lora/compiled": True}


def test_the_table_compares_each_run_with_trl_defaults_and_the_faster_peer():
    rows = [("defaults", "lora", 100.0), ("tuned", "lora", 250.0), ("project", "lora", 500.0),
            ("defaults", "full", 200.0), ("project", "full", 300.0)]
    results = {"train": [{"run": f"{mode}/{method}", "mode": mode, "method": method, "tokens_per_s": rate,
                          "mfu": 0.1} for mode, method, rate in rows]
               + [{"run": "tuned/full", "mode": "tuned", "method": "full", "error": "OutOfMemoryError: "}]}
    lines = {line.split()[0]: line.split()[1:] for line in table(results).splitlines()[1:]}
    assert lines["project/lora"][-2:] == ["5.00", "2.00"]  # x TRL defaults, x best peer (tuned TRL)
    assert lines["tuned/lora"][-2:] == ["2.50", "1.00"]
    assert lines["project/full"][-2:] == ["1.50", "1.50"]  # the failed tuned run is no peer
    assert lines["tuned/full"] == ["OutOfMemoryError:"]


def test_bench_heal_measures_each_type_healed_and_not(tmp_path, monkeypatch, capsys):
    from bench.heal import main as heal_main

    monkeypatch.chdir(ROOT)  # the plans come from params.yaml's model section
    out = tmp_path / "heal.json"
    heal_main(["--base", "tiny", "--types", "pruned", "--steps", "12", "--fit", "6", "--heldout", "4",
               "--json", str(out)])
    row = json.loads(out.read_text())["types"]["pruned"]
    assert row["layers"] == 20 and row["heal"]["steps"] == 12
    assert row["healed_kl"] < row["kl"] and row["healed_perplexity"] < row["perplexity"]
    assert "| pruned | 20 |" in capsys.readouterr().out
