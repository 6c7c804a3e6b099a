"""The params schema: the shipped files validate; bad keys fail naming the key and the accepted values."""

from pathlib import Path

import pytest
import yaml

from bmw.params import ParamsError, load_params, parse_params

ROOT = Path(__file__).resolve().parents[1]


def _default() -> dict:
    return yaml.safe_load((ROOT / "params.yaml").read_text())


def test_embedded_default_and_real_preset_validate():
    default = load_params(ROOT / "params.yaml")
    real = load_params(ROOT / "presets" / "real.yaml")
    assert default.base.name == "smollm2-135m-instruct" and default.scrape.source == "bundled"
    assert real.base.name == "Qwen/Qwen3-8B" and real.scrape.source.startswith("https://")
    assert real.variants["lora"].r == 16 and real.variants["lora"].lr == 2e-4
    # The preset only changes values: both files have the same keys.
    def keys(d, prefix=""):
        return {prefix + k for k in d} | {x for k, v in d.items() if isinstance(v, dict) and k != "variants"
                                          for x in keys(v, prefix + k + ".")}
    assert keys(_default()) == keys(yaml.safe_load((ROOT / "presets" / "real.yaml").read_text()))


@pytest.mark.parametrize(
    "patch, expected",
    [
        ({"scrape": {"sourse": "bundled"}}, "scrape.sourse: unknown key"),
        ({"model": {"type": "prunned"}}, "model.type: Input should be 'original', 'dropped', 'pruned', 'laco' or 'replaceme'"),
        ({"clean": {"extraction": "ocr"}}, "clean.extraction: Input should be 'plain' or 'layout'"),
        ({"variants": {"lora": {"method": "qlora"}}}, "variants.lora.method: Input should be 'none', 'full' or 'lora'"),
        ({"variants": {"lora": {"r": 0}}}, "variants.lora.r:"),
        ({"scrape": {"source": "ftp://x"}}, "scrape.source: Value error, must be 'bundled', 'mirror:DIR'"),
        ({"scrape": {"source": "mirror:/no/such/site"}}, "scrape.source: Value error, /no/such/site: no such folder"),
        ({"eval": {"window": 64, "stride": 128}}, "eval: Value error, stride must not exceed window"),
        ({"format": {"split": {"validation": 0.6, "test": 0.5}}}, "format.split: Value error"),
        ({"model": {"laco": {"merge": "mean"}}}, "model.laco.merge: Input should be 'rdsc' or 'last'"),
        ({"model": {"replaceme": {"start": 0}}}, "model.replaceme.start: Value error, 0: the map folds into the layer"),
        ({"unknown_section": {}}, "unknown_section: unknown key"),
        ({"base": {"name": "random:llama"}},
         "base.name: Value error, unknown random shape; the random bases are random:qwen3-8b, random:tiny"),
    ],
)
def test_bad_keys_are_named(patch, expected):
    data = _default()
    for section, value in patch.items():
        if isinstance(value, dict) and isinstance(data.get(section), dict):
            data[section] = _merge(data[section], value)
        else:
            data[section] = value
    with pytest.raises(ParamsError) as err:
        parse_params(data, "params.yaml")
    assert expected in str(err.value)
    assert str(err.value).startswith("params.yaml is invalid:")


def _merge(base: dict, patch: dict) -> dict:
    out = dict(base)
    for k, v in patch.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def test_variant_type_follows_model_type_unless_pinned():
    data = _default()
    data["model"]["type"] = "pruned"
    data["variants"]["dropped_lora"] = {"method": "lora", "type": "dropped"}
    p = parse_params(data)
    assert p.variant_type("lora") == "pruned"
    assert p.variant_type("dropped_lora") == "dropped"
    with pytest.raises(ParamsError, match="variants.nope: no such variant"):
        p.variant("nope")


def test_bad_variant_name_is_named():
    data = _default()
    data["variants"]["Bad-Name"] = {"method": "lora"}
    with pytest.raises(ParamsError, match=r"variants.Bad-Name.\[key\]"):
        parse_params(data)


def test_random_bases_are_named_by_shape():
    data = _default()
    for shape in ("qwen3-8b", "tiny"):
        data["base"]["name"] = f"random:{shape}"
        assert parse_params(data).base.random_shape == shape
    for name in ("smollm2-135m-instruct", "tiny", "Qwen/Qwen3-8B"):
        data["base"]["name"] = name
        assert parse_params(data).base.random_shape is None


def test_a_mirror_source_must_be_a_built_site(tmp_path):
    data = _default()
    data["scrape"]["source"] = f"mirror:{tmp_path}"
    with pytest.raises(ParamsError, match=r"scrape.source: .* no readable routes.json: not a built mirror site"):
        parse_params(data)
    (tmp_path / "routes.json").write_text('{"/robots.txt": {}}')
    with pytest.raises(ParamsError, match=r"scrape.source: .* has no route '/'"):
        parse_params(data)
    (tmp_path / "routes.json").write_text('{"/": {"file": "overview/page-1.html", "type": "text/html", "status": 200}}')
    assert parse_params(data).scrape.mirror_dir == tmp_path
    assert load_params(ROOT / "params.yaml").scrape.mirror_dir is None
