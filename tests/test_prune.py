"""Layer surgery, layer scores, plans and LaCo on a real tiny Qwen3 (CPU)."""

from __future__ import annotations

import copy
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from matplotlib.image import imread
from transformers import AutoModelForCausalLM

from bmw.base.tiny import build_tiny_model
from bmw.base.tokenizer import load_tiny_tokenizer
from bmw.io import write_jsonl
from bmw.models.base import load_base, model_device
from bmw.models.plan import load_plan, save_plan, tensor_sha256, tensors_path
from bmw.models.variant import load_variant, save_variant
from bmw.models.surgery import apply_plan, decoder_layers, fold_linear_map, merge_layers
from bmw.params import LacoParams, ModelParams, ParamsError, parse_params
from bmw.prune.calibration import calibration_sequences
from bmw.prune.heal import final_states, heal_plan, mean_kl
from bmw.prune.plans import layer_sources, make_plan, parameter_counts, removed_layers, validate
from bmw.prune.plots import layer_score_rows, plot_layer_scores
from bmw.prune.replaceme import block_start
from bmw.prune.scores import layer_stats
from mirror.content import mirror_articles

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def tokenizer():
    return load_tiny_tokenizer()


@pytest.fixture(scope="module")
def base(tokenizer):
    return build_tiny_model(3, tokenizer)


def _train_rows(n: int) -> list[dict]:
    return [
        {"id": a.id, "style": "instruct", "messages": [
            {"role": "user", "content": f"Write a press release titled: {a.title}"},
            {"role": "assistant", "content": "\n\n".join(a.paragraphs)},
        ]}
        for a in mirror_articles()[:n]
    ]


@pytest.fixture(scope="module")
def sequences(tokenizer, tmp_path_factory):
    path = tmp_path_factory.mktemp("calib") / "train.jsonl"
    write_jsonl(path, _train_rows(6), "id")
    return calibration_sequences(path, tokenizer, docs=4, tokens=320, max_length=128)


@pytest.fixture(scope="module")
def stats(base, sequences):
    return layer_stats(base, sequences)


def test_calibration_takes_the_first_documents_up_to_the_token_budget(sequences, tokenizer):
    assert len(sequences) == 3 and [s.shape[-1] for s in sequences] == [128, 128, 64]
    first_row = min(_train_rows(6), key=lambda r: r["id"])  # the file is sorted by id
    first = tokenizer.apply_chat_template(first_row["messages"], tokenize=False)
    assert sequences[0][0].tolist() == tokenizer(first)["input_ids"][:128]


def _plan(model_type: str, base, stats, sequences, **model_params) -> dict:
    params = parse_params({"model": {"type": model_type, **model_params}}).model
    return make_plan(model_type, params, base, stats, sequences)


PLANS = {
    "dropped": ("dropped", {"dropped": {"layers": [16, 3]}}),
    "dropped_auto": ("dropped", {"dropped": {"layers": "auto", "count": 4}}),
    "pruned_prefix_last": ("pruned", {"pruned": {"keep": 20, "keep_last": True}}),
    "pruned_block_influence": ("pruned", {"pruned": {"keep": 30, "score": "block_influence"}}),
    "pruned_angular": ("pruned", {"pruned": {"keep": 28, "score": "angular", "keep_last": True}}),
    # T low enough that the random model accepts merges, including nested ones (I < C)
    "laco_rdsc": ("laco", {"laco": {"T": 0.3, "merge": "rdsc", "L": 8, "H": 20}}),
    "laco_last": ("laco", {"laco": {"T": 0.3, "merge": "last", "C": 4, "I": 1}}),
    "replaceme_auto": ("replaceme", {"replaceme": {"count": 4}}),
    "replaceme_last_block": ("replaceme", {"replaceme": {"count": 2, "start": 34}}),
}


@pytest.mark.parametrize("name", sorted(PLANS))
def test_planned_model_saves_reloads_and_generates_with_cache(name, base, stats, sequences, tokenizer, tmp_path):
    model_type, model_params = PLANS[name]
    state_before = {k: v.clone() for k, v in base.state_dict().items()}
    save_plan(tmp_path / "plan.json", _plan(model_type, base, stats, sequences, **model_params))
    plan = load_plan(tmp_path / "plan.json")  # the round trip through the files the stages read
    assert all(torch.equal(v, state_before[k]) for k, v in base.state_dict().items())  # base untouched
    assert plan["layers_after"] < plan["layers_before"] == 36
    if model_type == "laco":
        assert any(op["op"] == "merge" for op in plan["operations"])

    model = apply_plan(copy.deepcopy(base), plan)
    layers = decoder_layers(model)
    assert model.config.num_hidden_layers == len(layers) == plan["layers_after"] == len(model.config.layer_types)
    assert [layer.self_attn.layer_idx for layer in layers] == list(range(len(layers)))
    assert parameter_counts(base, plan)[1] == sum(p.numel() for p in model.parameters())

    model.save_pretrained(tmp_path / "model")
    reloaded = AutoModelForCausalLM.from_pretrained(tmp_path / "model").eval()
    assert reloaded.config.num_hidden_layers == plan["layers_after"]
    ids = sequences[0][:, :24]
    with torch.no_grad():
        assert torch.equal(model(ids).logits, reloaded(ids).logits)
    greedy = {"max_new_tokens": 8, "do_sample": False, "pad_token_id": tokenizer.pad_token_id}
    cached = reloaded.generate(ids, use_cache=True, **greedy)
    assert cached.shape[-1] == ids.shape[-1] + 8
    assert torch.equal(cached, reloaded.generate(ids, use_cache=False, **greedy))

    # rebuilding from the base reproduces the same weights
    again = apply_plan(copy.deepcopy(base), plan).state_dict()
    assert all(torch.equal(v, again[k]) for k, v in model.state_dict().items())


def test_drop_and_prune_keep_the_right_layers(base, stats, sequences):
    assert _plan("dropped", base, stats, sequences)["operations"] == [
        {"op": "keep", "layers": [i for i in range(36) if i != 16]}]
    auto = _plan("dropped", base, stats, sequences, dropped={"layers": "auto", "count": 3})
    lowest = sorted(range(36), key=lambda i: stats.block_influence[i])[:3]
    assert auto["operations"][0]["layers"] == [i for i in range(36) if i not in lowest]
    prefix = _plan("pruned", base, stats, sequences, pruned={"keep": 24})
    assert prefix["sources"] == [[i] for i in range(24)]
    last = _plan("pruned", base, stats, sequences, pruned={"keep": 24, "keep_last": True})
    assert last["sources"] == [[i] for i in list(range(23)) + [35]]
    angular = _plan("pruned", base, stats, sequences, pruned={"keep": 30, "score": "angular"})
    distance = stats.angular_distance(6)
    start = min(range(31), key=lambda s: distance[s])
    assert angular["operations"][0]["layers"] == [i for i in range(36) if not start <= i < start + 6]
    assert angular["scores"]["angular"]["block_size"] == 6
    assert _plan("original", base, stats, sequences)["operations"] == []


def test_the_removed_layers_of_each_kind_of_plan(base, stats, sequences):
    """Dropped or pruned (keep), merged into a lower layer (LaCo, nested merges included), cut for a linear map
    folded into the layer before (ReplaceMe): the layers the prune plot marks."""
    assert removed_layers(_plan("original", base, stats, sequences)) == []
    assert removed_layers(_plan("dropped", base, stats, sequences, dropped={"layers": [16, 3]})) == [3, 16]
    assert removed_layers(_plan("pruned", base, stats, sequences, pruned={"keep": 30, "keep_last": True})) == [
        29, 30, 31, 32, 33, 34]
    nested = {"type": "laco", "layers_before": 36, "layers_after": 32, "operations": [
        {"op": "merge", "start": 20, "count": 3, "rule": "rdsc"},
        {"op": "merge", "start": 18, "count": 3, "rule": "rdsc"},  # takes in the merged layer 20
    ]}
    assert removed_layers(nested) == [19, 20, 21, 22]
    replaceme = _plan("replaceme", base, stats, sequences, replaceme={"count": 2, "start": 34})
    assert replaceme["operations"][0]["op"] == "linear" and removed_layers(replaceme) == [34, 35]


def test_the_layer_score_plot_has_a_row_per_plan(stats, tmp_path):
    rows = layer_score_rows(stats.block_influence, stats.angular_distance(1))
    removed = {"dropped": [3, 16], "laco": [19, 20, 21, 22], "original": [], "replaceme": [34, 35]}
    plot_layer_scores(rows, tmp_path / "scores.png", "tiny", removed)
    plot_layer_scores(rows, tmp_path / "one.png", "tiny", {"original": []})
    # 100 dpi: 3.7 inches and 0.3 per plan's row
    assert imread(tmp_path / "scores.png").shape[:2] == (490, 800)
    assert imread(tmp_path / "one.png").shape[:2] == (400, 800)


def test_a_folded_linear_map_multiplies_the_projections_output():
    torch.manual_seed(0)
    projection, transform, x = torch.nn.Linear(6, 4), torch.randn(4, 4), torch.randn(3, 6)
    expected = projection(x) @ transform
    fold_linear_map(projection, transform)
    torch.testing.assert_close(projection(x), expected)
    with pytest.raises(ValueError, match="shape \\(5, 5\\) does not fold into a projection to 4 features"):
        fold_linear_map(projection, torch.eye(5))


def _block_states(model, sequences, start: int, count: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(output of layer start-1, input of layer start+count) per sequence: what the cut must keep equal."""
    outputs = []
    with torch.no_grad():
        for ids in sequences:
            states = model.get_decoder()(input_ids=ids, output_hidden_states=True, use_cache=False).hidden_states
            outputs.append((states[start], states[start + count]))
    return outputs


def test_replaceme_fits_the_block_better_than_cutting_it_and_an_identity_map_is_a_cut(base, stats, sequences):
    plan = _plan("replaceme", base, stats, sequences, replaceme={"count": 4})
    (op,) = plan["operations"]
    start = op["start"]
    assert start == block_start(stats, 4) == min(range(1, 33), key=lambda s: (stats.angular_distance(4)[s], s))
    assert plan["layers_after"] == 32 and plan["sources"][start - 1] == list(range(start - 1, start + 4))
    # on the calibration text, layer start-1 of the new model hands on what the block handed on, more closely than
    # the same layer without the map (which is what dropping the block does)
    replaced = apply_plan(copy.deepcopy(base), plan)
    target = [after for _, after in _block_states(base, sequences, start, 4)]
    with_map = [out for out, _ in _block_states(replaced, sequences, start, 0)]
    without = [out for out, _ in _block_states(base, sequences, start, 4)]
    error = lambda outs: sum(float((o - t).pow(2).sum()) for o, t in zip(outs, target))  # noqa: E731
    assert error(with_map) < 0.9 * error(without)
    # T = I folds to nothing: the model is the base with the block dropped, weight for weight
    identity = {**plan, "operations": [{**op, "transform": torch.eye(base.config.hidden_size)}]}
    dropped = {"type": "dropped", "layers_before": 36, "operations": [
        {"op": "keep", "layers": [i for i in range(36) if not start <= i < start + 4]}]}
    folded, cut = apply_plan(copy.deepcopy(base), identity).state_dict(), apply_plan(copy.deepcopy(base), dropped)
    assert all(torch.equal(v, folded[k]) for k, v in cut.state_dict().items())


def test_a_plans_tensor_is_checked_when_loaded(base, stats, sequences, tmp_path):
    path = tmp_path / "replaceme.json"
    plan = _plan("replaceme", base, stats, sequences, replaceme={"count": 2, "start": 3})
    save_plan(path, plan)
    stored = json.loads(path.read_text())["operations"][0]["transform"]
    assert stored["tensor"] == "operations.0.transform" and len(stored["sha256"]) == 64
    assert torch.equal(load_plan(path)["operations"][0]["transform"], plan["operations"][0]["transform"])
    other = {**plan, "operations": [{**plan["operations"][0], "transform": torch.eye(base.config.hidden_size)}]}
    save_plan(tmp_path / "other.json", other)
    tensors_path(tmp_path / "other.json").replace(tensors_path(path))  # another plan's tensors beside this plan
    with pytest.raises(ValueError, match="tensor 'operations.0.transform' is missing or not the one replaceme.json"):
        load_plan(path)
    tensors_path(path).unlink()
    with pytest.raises(FileNotFoundError, match="its tensors file replaceme.safetensors is missing"):
        load_plan(path)


def test_an_untrained_replaceme_variant_links_its_plans_tensors_and_reloads_as_planned(
        base, stats, sequences, tokenizer, tmp_path):
    base_dir, plan_file, variant_dir = tmp_path / "base", tmp_path / "plans" / "replaceme.json", tmp_path / "variant"
    base.save_pretrained(base_dir)
    tokenizer.save_pretrained(base_dir)
    save_plan(plan_file, _plan("replaceme", base, stats, sequences, replaceme={"count": 2}))
    plan = load_plan(plan_file)
    manifest = {"name": "replaceme", "method": "none", "type": "replaceme", "layers": 34,
                "base": {"path": str(base_dir), "dtype": "float32"}}
    save_variant(variant_dir, None, tokenizer, manifest, plan, plan_file=plan_file)
    # one inode for the stage's plan tensors and the variant's copy (DVC would keep a second copy as it is)
    assert os.path.samefile(tensors_path(plan_file), variant_dir / "plan.safetensors")
    model, _ = load_variant(variant_dir)
    ids = sequences[0][:, :24]
    with torch.no_grad():
        assert torch.equal(model(ids).logits, apply_plan(copy.deepcopy(base), plan)(ids).logits)


def test_rdsc_merge_by_hand(base):
    a, b, c = (decoder_layers(base)[i] for i in (4, 5, 6))
    rdsc = merge_layers([a, b, c], "rdsc")
    for name in ["mlp.down_proj.weight", "input_layernorm.weight", "self_attn.k_norm.weight"]:
        ta, tb, tc = (dict(layer.named_parameters())[name] for layer in (a, b, c))
        assert torch.allclose(dict(rdsc.named_parameters())[name], ta + (tb - ta) + (tc - ta), atol=1e-7)
    i, j = 3, 5  # one element, written out
    w = [dict(layer.named_parameters())["mlp.down_proj.weight"][i, j].item() for layer in (a, b, c)]
    assert math.isclose(rdsc.mlp.down_proj.weight[i, j].item(), w[0] + (w[1] - w[0]) + (w[2] - w[0]), abs_tol=1e-7)
    last = merge_layers([a, b, c], "last")
    assert all(torch.equal(p, dict(c.named_parameters())[n]) for n, p in last.named_parameters())
    assert last is not c and a.mlp.down_proj.weight.data_ptr() != rdsc.mlp.down_proj.weight.data_ptr()


def test_linear_scope_merges_the_projections_and_keeps_the_first_layers_norms(base):
    a, b, c = (decoder_layers(base)[i] for i in (4, 5, 6))
    merged = merge_layers([a, b, c], "rdsc", "linear")
    params = {layer: dict(layer.named_parameters()) for layer in (a, b, c)}
    for name, value in merged.named_parameters():
        ta, tb, tc = (params[layer][name] for layer in (a, b, c))
        if name.endswith("proj.weight"):
            assert torch.allclose(value, ta + (tb - ta) + (tc - ta), atol=1e-7), name
        else:  # input/post-attention layernorms, q/k norms
            assert torch.equal(value, ta), name
    last = merge_layers([a, b, c], "last", "linear")
    assert torch.equal(last.mlp.up_proj.weight, c.mlp.up_proj.weight)
    assert torch.equal(last.input_layernorm.weight, a.input_layernorm.weight)
    with pytest.raises(ValueError, match="merge scope 'norms'"):
        merge_layers([a, b], "rdsc", "norms")


def test_laco_with_an_interval_below_c_minus_one_clamps_merges_to_the_layers_left(base, sequences):
    """I=1 < C-1=2: after an accepted merge at l, the next trial starts at l-1, whose C layers may run past the
    (shrunk) model's end; the merge takes the layers that exist, as LaCo's official code does."""
    model = _near_identical(base)
    stats = layer_stats(model, sequences)
    laco = {"C": 3, "L": 30, "H": 36, "I": 1, "T": 0.99, "max_compression": 0.3}
    plan = _plan("laco", model, stats, sequences, laco=laco)
    counts = [op["count"] for op in plan["operations"]]
    assert plan["operations"][0]["start"] == 33 and counts[0] == 3
    assert 2 in counts  # a clamped merge
    assert plan["layers_after"] == 36 - sum(c - 1 for c in counts)
    replayed = apply_plan(copy.deepcopy(model), plan)  # the recorded operations replay on the base
    assert len(decoder_layers(replayed)) == plan["layers_after"]


def test_nested_laco_merges_replay_exactly(base):
    plan = {"type": "laco", "layers_before": 36, "layers_after": 32, "operations": [
        {"op": "merge", "start": 20, "count": 3, "rule": "rdsc"},
        {"op": "merge", "start": 18, "count": 3, "rule": "rdsc"},  # takes in the merged layer 20
    ]}
    assert layer_sources(36, plan["operations"])[18] == [18, 19, 20, 21, 22]
    model = apply_plan(copy.deepcopy(base), plan)
    layer = lambda k: dict(decoder_layers(base)[k].named_parameters())["self_attn.q_proj.weight"]  # noqa: E731
    inner = layer(20) + (layer(21) - layer(20)) + (layer(22) - layer(20))
    outer = layer(18) + (layer(19) - layer(18)) + (inner - layer(18))
    assert torch.allclose(decoder_layers(model)[18].self_attn.q_proj.weight, outer, atol=1e-6)
    assert torch.equal(decoder_layers(model)[19].self_attn.q_proj.weight, layer(23))


def test_block_influence_and_angular_distance_by_hand(base, sequences, stats):
    layer, n = 7, 2
    cosines, angles = [], []
    with torch.no_grad():
        for ids in sequences:
            hidden = base(ids, output_hidden_states=True).hidden_states  # [k] is the input of layer k (k < 36)
            x, y = hidden[layer][0], hidden[layer + 1][0]
            cosines += ((x * y).sum(-1) / (x.norm(dim=-1) * y.norm(dim=-1))).tolist()
            u, v = hidden[layer][0, -1], hidden[layer + n][0, -1]
            angles.append(math.acos(min(1.0, float(u @ v / (u.norm() * v.norm())))) / math.pi)
    assert stats.tokens == len(cosines) == 320
    assert math.isclose(stats.block_influence[layer], 1 - sum(cosines) / len(cosines), abs_tol=1e-5)
    assert math.isclose(stats.angular_distance(n)[layer], sum(angles) / len(angles), abs_tol=1e-4)
    assert len(stats.block_influence) == 36 and len(stats.angular_distance(n)) == 35


def _near_identical(base):
    """Every layer a copy of layer 0 with its residual writes scaled down: merging changes almost nothing."""
    model = copy.deepcopy(base)
    with torch.no_grad():
        template = decoder_layers(model)[0]
        template.self_attn.o_proj.weight.mul_(1e-3)
        template.mlp.down_proj.weight.mul_(1e-3)
        for layer in decoder_layers(model)[1:]:
            layer.load_state_dict(template.state_dict())
    return model


def test_laco_merges_near_identical_layers_within_cap_and_bounds(base, sequences):
    model = _near_identical(base)
    stats = layer_stats(model, sequences)
    laco = {"C": 3, "L": 6, "H": 22, "I": 2, "T": 0.99, "max_compression": 0.2}
    plan = _plan("laco", model, stats, sequences, laco=laco)
    # every trial accepted: start at H-C, step down by I, stop at the cap (int(0.2 * 36) = 7 layers: 3 merges)
    assert [t["start"] for t in plan["trials"]] == [19, 17, 15]
    assert all(t["accepted"] and t["similarity"] > 0.99 for t in plan["trials"])
    assert plan["layers_after"] == 30 and 36 - plan["layers_after"] <= int(0.2 * 36)
    merged = [i for t in plan["trials"] for i in t["original_layers"]]
    assert min(merged) >= laco["L"] and max(merged) <= laco["H"] - 1
    assert plan["sources"][15] == list(range(15, 22))  # nested merges: 19..21, then 17..19, then 15..17


def test_laco_steps_down_by_one_after_a_rejection(base, sequences, stats):
    plan = _plan("laco", base, stats, sequences, laco={"C": 3, "L": 10, "H": 16, "T": 1.0})
    assert [t["start"] for t in plan["trials"]] == [13, 12, 11, 10]
    assert not any(t["accepted"] for t in plan["trials"]) and plan["operations"] == []


@pytest.mark.parametrize(
    ("model_params", "key"),
    [
        ({"type": "dropped", "dropped": {"layers": [3, 36]}}, "model.dropped.layers: \\[36\\] out of range"),
        ({"type": "dropped", "dropped": {"layers": [3, 3]}}, "model.dropped.layers: .* duplicates"),
        ({"type": "dropped", "dropped": {"layers": "auto", "count": 36}}, "model.dropped.count"),
        ({"type": "pruned", "pruned": {"keep": 37}}, "model.pruned.keep: 37 exceeds"),
        ({"type": "laco", "laco": {"H": 40}}, "model.laco.H: 40 exceeds"),
        ({"type": "laco", "laco": {"L": 26, "H": 28}}, "model.laco.L: 26"),
        ({"type": "laco", "laco": {"max_compression": 0.05}}, "model.laco.max_compression"),
        ({"type": "replaceme", "replaceme": {"count": 36}}, "model.replaceme.count: 36 .* at most 35"),
        ({"type": "replaceme", "replaceme": {"count": 3, "start": 34}}, "model.replaceme.start: a block of 3 from"),
    ],
)
def test_bad_plan_params_name_the_key(model_params, key):
    params = parse_params({"model": model_params}).model
    with pytest.raises(ParamsError, match=key):
        validate(params.type, params, 36)


def test_apply_plan_rejects_a_plan_for_another_model(base):
    plan = {"type": "dropped", "layers_before": 28, "layers_after": 27, "operations": [{"op": "keep", "layers": [0]}]}
    with pytest.raises(ValueError, match="made for 28 layers; this model has 36"):
        apply_plan(copy.deepcopy(base), plan)
    bad = {"type": "dropped", "layers_before": 36, "operations": [{"op": "keep", "layers": [40]}]}
    with pytest.raises(ValueError, match="out of range"):
        apply_plan(copy.deepcopy(base), bad)
    with pytest.raises(ValueError, match="merge rule 'mean'"):
        merge_layers(list(decoder_layers(base)[:2]), "mean")
    assert ModelParams().laco == LacoParams()


@pytest.mark.slow
def test_base_and_prune_stages_are_deterministic(tmp_path):
    heal = {"method": "lora", "steps": 2, "rank": 2, "calibration_docs": 2, "calibration_tokens": 128}
    params = {
        "model": {"type": "laco", "calibration_tokens": 128, "laco": {"calibration_docs": 2, "T": 0.5}, "heal": heal},
        "variants": {"baseline": {"method": "none"}, "pruned_lora": {"method": "lora", "type": "pruned"},
                     "original": {"method": "none", "type": "original"}},
    }
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params), encoding="utf-8")
    write_jsonl(tmp_path / "data/processed/train.jsonl", _train_rows(3), "id")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    plans = ["baseline.json", "baseline.safetensors", "original.json", "pruned_lora.json", "pruned_lora.safetensors"]
    outputs = ["metrics/prune.json", "metrics/layer_scores.json", "plots/layer_scores.png",
               "models/plans/_summary.json"] + [f"models/plans/{name}" for name in plans]
    subprocess.run([sys.executable, "-m", "stages.base"], cwd=tmp_path, env=env, check=True)
    runs = []
    for _ in range(2):
        subprocess.run([sys.executable, "-m", "stages.prune"], cwd=tmp_path, env=env, check=True)
        runs.append({name: (tmp_path / name).read_bytes() for name in outputs})
    assert runs[0] == runs[1]
    # one plan per variant: the plan of its type, and the healing updates of each reduced type beside it
    assert sorted(p.name for p in (tmp_path / "models/plans").iterdir()) == sorted(["_summary.json"] + plans)
    metrics = json.loads(runs[0]["metrics/prune.json"])  # model.type's (laco) sizes
    laco = json.loads(runs[0]["models/plans/baseline.json"])
    assert laco["type"] == "laco" and json.loads(runs[0]["models/plans/pruned_lora.json"])["type"] == "pruned"
    assert set(metrics) == {"layers_after", "compression", "heal"} and metrics["layers_after"] == laco["layers_after"]
    assert laco["operations"][-1]["op"] == "lowrank" and metrics["heal"] == {
        k: laco["heal"][k] for k in ("kl_before", "kl_after")}
    summary = json.loads(runs[0]["models/plans/_summary.json"])
    assert {k: summary["laco"][k] for k in metrics} == metrics and summary["laco"]["layers_before"] == 36
    assert summary["pruned"]["layers_after"] == 24
    assert "heal" not in summary["original"] and "heal" not in json.loads(runs[0]["models/plans/original.json"])
    assert 0 < summary["pruned"]["compression"] < 1
    rows = json.loads(runs[0]["metrics/layer_scores.json"])
    assert [r["layer"] for r in rows] == list(range(36)) and set(rows[0]) == {"layer", "block_influence", "angular"}
    assert runs[0]["plots/layer_scores.png"].startswith(b"\x89PNG")


# --- the same on a pretrained Llama: SmolLM2-135M-Instruct (no layer_types in its config) ---------------------------

SMOLLM2_PLANS = {
    "drop16": {"type": "dropped", "layers_before": 30, "layers_after": 29,
               "operations": [{"op": "keep", "layers": [i for i in range(30) if i != 16]}]},
    "laco": {"type": "laco", "layers_before": 30, "layers_after": 27, "operations": [
        {"op": "merge", "start": 20, "count": 3, "rule": "rdsc", "scope": "linear"},
        {"op": "merge", "start": 14, "count": 2, "rule": "rdsc", "scope": "all"}]},
}


@pytest.fixture(scope="module")
def smollm2(smollm2_dir):
    return load_base(smollm2_dir)


@pytest.mark.parametrize("name", sorted(SMOLLM2_PLANS))
def test_surgery_on_smollm2_saves_reloads_and_generates_with_cache(name, smollm2, tmp_path):
    base, tokenizer = smollm2
    plan = SMOLLM2_PLANS[name]
    model = apply_plan(copy.deepcopy(base), plan)
    layers = decoder_layers(model)
    assert model.config.num_hidden_layers == len(layers) == plan["layers_after"]
    assert [layer.self_attn.layer_idx for layer in layers] == list(range(len(layers)))
    assert getattr(model.config, "layer_types", None) is None  # nothing the config does not have
    model.save_pretrained(tmp_path)
    reloaded = AutoModelForCausalLM.from_pretrained(tmp_path).eval()
    prompt = tokenizer.apply_chat_template([{"role": "user", "content": "Tell me about the BMW iX3."}],
                                           add_generation_prompt=True, return_tensors="pt", return_dict=True)
    with torch.no_grad():
        assert torch.equal(model(**prompt).logits, reloaded(**prompt).logits)
    greedy = {"max_new_tokens": 12, "do_sample": False}
    cached = reloaded.generate(**prompt, use_cache=True, **greedy)
    assert torch.equal(cached, reloaded.generate(**prompt, use_cache=False, **greedy))


def test_scores_on_smollm2_rank_the_first_and_last_layers_above_the_middle(smollm2, tmp_path):
    model, tokenizer = smollm2
    path = tmp_path / "train.jsonl"
    write_jsonl(path, _train_rows(8), "id")
    stats = layer_stats(model, calibration_sequences(path, tokenizer, docs=8, tokens=2048, max_length=256))
    influence = stats.block_influence
    middle = influence[10:20]
    assert min(influence[0], influence[29]) > max(middle)
    assert influence[0] == max(influence)  # the embedding-adjacent layer changes its input most
    # real structure, unlike random weights: the strongest layer dwarfs the typical one
    assert max(influence) > 10 * sorted(influence)[15]


def test_calibration_runs_where_models_run(monkeypatch):
    """The prune stage loads the base on `model_device()`: this process's GPU where there is one, else the CPU
    (where every plan above is made, as before)."""
    monkeypatch.delenv("LOCAL_RANK", raising=False)
    assert model_device() == (torch.device("cuda", 0) if torch.cuda.is_available() else torch.device("cpu"))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setenv("LOCAL_RANK", "1")  # the second process of `accelerate launch`
    assert model_device() == torch.device("cuda", 1)


def _perplexity(model, sequences) -> float:
    nll = tokens = 0.0
    with torch.no_grad():
        for ids in sequences:
            nll += model(input_ids=ids, labels=ids).loss.item() * (ids.shape[-1] - 1)
            tokens += ids.shape[-1] - 1
    return math.exp(nll / tokens)


def test_replaceme_on_smollm2_loses_less_than_dropping_its_block(smollm2, tmp_path):
    """The map is fitted on one set of articles and judged on others: a real model, held-out text."""
    model, tokenizer = smollm2
    rows = sorted(_train_rows(70), key=lambda r: r["id"])
    write_jsonl(tmp_path / "fit.jsonl", rows[:50])
    write_jsonl(tmp_path / "heldout.jsonl", rows[50:])
    fit = calibration_sequences(tmp_path / "fit.jsonl", tokenizer, docs=50, tokens=8192, max_length=512)
    heldout = calibration_sequences(tmp_path / "heldout.jsonl", tokenizer, docs=20, tokens=4096, max_length=512)
    params = parse_params({"model": {"type": "replaceme", "replaceme": {"count": 3}}}).model
    plan = make_plan("replaceme", params, model, layer_stats(model, fit), fit)
    (op,) = plan["operations"]
    cut = {"type": "dropped", "layers_before": 30, "operations": [
        {"op": "keep", "layers": [i for i in range(30) if not op["start"] <= i < op["start"] + 3]}]}
    base_ppl = _perplexity(model, heldout)
    replaced = _perplexity(apply_plan(copy.deepcopy(model), plan), heldout)
    dropped = _perplexity(apply_plan(copy.deepcopy(model), cut), heldout)
    assert base_ppl < replaced < 0.9 * dropped, (base_ppl, replaced, dropped)


# --- healing: a short distillation of the reduced model towards the original, stored in the plan ---------------------

HEAL = {"method": "lora", "steps": 12, "lr": 1e-2, "rank": 4, "calibration_docs": 3, "calibration_tokens": 320}


def test_a_lowrank_operation_adds_b_times_a_and_round_trips_through_the_plan_file(base, tmp_path):
    torch.manual_seed(0)
    a, b = torch.randn(3, 64), torch.randn(64, 3)  # the tiny model's hidden size: 64
    module = "model.layers.2.self_attn.o_proj"  # layer 2 of the model after the keep: the base's layer 3
    plan = {"type": "dropped", "layers_before": 36, "layers_after": 35, "operations": [
        {"op": "keep", "layers": [i for i in range(36) if i != 1]},
        {"op": "lowrank", "module": module, "a": a, "b": b}]}
    save_plan(tmp_path / "plan.json", plan)
    stored = json.loads((tmp_path / "plan.json").read_text())["operations"][1]
    assert stored["a"]["sha256"] == tensor_sha256(a) and stored["b"]["sha256"] == tensor_sha256(b)
    loaded = load_plan(tmp_path / "plan.json")
    assert torch.equal(loaded["operations"][1]["a"], a) and torch.equal(loaded["operations"][1]["b"], b)

    healed = apply_plan(copy.deepcopy(base), loaded).state_dict()
    cut = apply_plan(copy.deepcopy(base), {**plan, "operations": plan["operations"][:1]}).state_dict()
    weight = f"{module}.weight"
    expected = (decoder_layers(base)[3].self_attn.o_proj.weight.double() + b.double() @ a.double()).float()
    assert torch.equal(healed[weight], expected) and not torch.equal(healed[weight], cut[weight])
    assert all(torch.equal(v, cut[k]) for k, v in healed.items() if k != weight)  # nothing else moves

    for op, message in [({"module": "model.layers.2.mlp", "a": a, "b": b}, "'model.layers.2.mlp' is no linear"),
                        ({"module": "model.layers.40.mlp.up_proj", "a": a, "b": b}, "is no linear layer"),
                        ({"module": module, "a": a, "b": b.T}, "do not make an update of a weight of shape"),
                        ({"module": module, "a": {"tensor": "x"}, "b": b}, "no factors")]:
        with pytest.raises(ValueError, match=message):
            apply_plan(copy.deepcopy(base), {"operations": [{"op": "lowrank", **op}]})


def _heal(base, plan, sequences, **heal):
    return heal_plan(base, plan, sequences, parse_params({"model": {"heal": HEAL | heal}}).model.heal, seed=7)


def test_healing_lowers_the_kl_to_the_original_on_held_out_text(base, stats, sequences, tokenizer, tmp_path):
    """Fitted on the calibration documents, judged on other articles; the plan file rebuilds the healed model."""
    plan = _plan("pruned", base, stats, sequences, pruned={"keep": 24})
    healed = _heal(base, plan, sequences)
    ops = healed["operations"][len(plan["operations"]):]
    assert healed["operations"][: len(plan["operations"])] == plan["operations"]
    assert len(ops) == 24 * 7 and {op["op"] for op in ops} == {"lowrank"}  # q k v o gate up down of each layer
    record = healed["heal"]
    assert record["steps"] == 12 and record["documents"] == 3 and record["tokens"] == 320
    assert record["kl_after"] < 0.8 * record["kl_before"]

    write_jsonl(tmp_path / "heldout.jsonl", sorted(_train_rows(9), key=lambda r: r["id"])[6:], "id")
    heldout = calibration_sequences(tmp_path / "heldout.jsonl", tokenizer, docs=3, tokens=384, max_length=128)
    targets, head = final_states(base, heldout), base.get_output_embeddings()
    save_plan(tmp_path / "healed.json", healed)
    rebuilt = apply_plan(copy.deepcopy(base), load_plan(tmp_path / "healed.json"))
    unhealed = apply_plan(copy.deepcopy(base), plan)
    assert mean_kl(rebuilt, heldout, targets, head) < 0.9 * mean_kl(unhealed, heldout, targets, head)
    assert math.isclose(mean_kl(rebuilt, sequences, final_states(base, sequences), head), record["kl_after"],
                        abs_tol=1e-6)  # the record (6 decimals) is of the merged model, as variants get it


def test_healing_is_deterministic_and_leaves_the_base_alone(base, stats, sequences):
    state = {k: v.clone() for k, v in base.state_dict().items()}
    plan = _plan("replaceme", base, stats, sequences, replaceme={"count": 2})
    first, second = (_heal(base, plan, sequences, steps=3) for _ in range(2))
    assert first["heal"] == second["heal"]
    assert all(x.keys() == y.keys() and all(torch.equal(x[k], y[k]) if isinstance(x[k], torch.Tensor) else x[k] == y[k]
                                            for k in x) for x, y in zip(first["operations"], second["operations"]))
    assert all(torch.equal(v, state[k]) for k, v in base.state_dict().items())
    other = _heal(base, plan, sequences, steps=3, rank=2)
    assert other["operations"][-1]["a"].shape == (2, base.config.intermediate_size)  # down_proj: A is r x in
