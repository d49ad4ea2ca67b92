"""API 0.3 configs and model files: attamba.Config, Config.create_file, Model.create, Model.get_config,
attamba.quantize."""
import json

import numpy as np
import pytest

import attamba

IDS = np.array([[256, 72, 101, 108, 108, 111, 44, 32, 119, 111, 114, 108, 100],
                [256, 84, 104, 101, 32, 113, 117, 105, 99, 107, 32, 102, 111]], dtype=np.int32)


def test_load_describe_estimate():
    c = attamba.Config.load("tiny")
    d = c.describe()
    assert (d["kind"], d["tokenizer"], d["weights"]) == ("attamba", "bytes", "f32")
    assert (d["vocab_size"], d["bos"], d["eos"]) == (258, 256, 257) and d["parameters"] > 0
    assert d["d_model"] == c.to_dict()["dim"] and d["chunk"] == c.to_dict()["chunk"]
    assert json.loads(c.json) == c.to_dict()
    e = c.estimate(256)
    assert 0 < e["cache_bytes"] < e["cache_bytes_full"]          # compressed: less than full attention
    assert e["key_visits"] > 0 and e["attention_flops"] > 0
    assert c.estimate(512)["cache_bytes_full"] == 2 * e["cache_bytes_full"]
    h = c.estimate(256, cache_type="f16")                         # stored rows at half the bytes
    assert h["cache_bytes_full"] * 2 == e["cache_bytes_full"] and h["cache_bytes"] < e["cache_bytes"]
    with pytest.raises(ValueError, match="cache_type"):
        c.estimate(256, cache_type="q8")


def test_set_update_and_a_refused_value_changes_nothing():
    c = attamba.Config("tiny")
    c.set("chunk", 8).set("boundaries", "uniform")
    assert c.describe()["chunk"] == 8 and c.describe()["boundaries"] == "uniform"
    before = c.json
    for key, value in [("kind", "bogus"), ("n_layers", 0), ("n_heads", 3), ("no_such_field", 1)]:
        with pytest.raises(attamba.Error) as e:
            c.set(key, value)
        assert e.value.status == attamba.Status.ERR_INVALID_ARG and e.value.message
        assert c.json == before
    d = c.to_dict()
    wider = {"dim": 2 * d["dim"], "n_heads": 2 * d["n_heads"], "n_kv_heads": 2 * d["n_kv_heads"],
             "ssm_inner": 2 * d["ssm_inner"]}
    with pytest.raises(attamba.Error):  # one field at a time passes through an invalid config
        c.set("dim", wider["dim"])
    assert c.json == before
    c.update(wider)
    assert c.describe()["d_model"] == wider["dim"] and c.describe()["n_heads"] == wider["n_heads"]
    c.update(window=2, pseudo=True)
    assert (c.describe()["window"], c.describe()["pseudo"]) == (2, True)


def test_load_from_a_file_and_a_model_directory(tmp_path):
    c = attamba.Config.load("tiny").set("chunk", 6)
    (tmp_path / "c.json").write_text(c.json)
    assert attamba.Config.load(tmp_path / "c.json").to_dict() == c.to_dict()
    c.create_file(tmp_path / "m", seed=2)
    assert attamba.Config.load(tmp_path / "m").to_dict() == c.to_dict()
    with pytest.raises(attamba.Error) as e:
        attamba.Config.load(tmp_path / "nothing-here")
    assert e.value.message


def test_create_file_and_create_equal_init(ctx, tmp_path):
    c = attamba.Config.load("tiny")
    c.create_file(tmp_path / "m", seed=7)
    with attamba.Model.init(ctx, "tiny", seed=7) as ref, attamba.Model.load(ctx, tmp_path / "m") as m, \
            attamba.Model.create(ctx, c, seed=7) as made:
        want = ref.forward(IDS)
        assert np.array_equal(m.forward(IDS), want)
        assert np.array_equal(made.forward(IDS), want)
        assert made.get_config().to_dict() == c.to_dict()
    with attamba.Model.create(ctx, "tiny", seed=8) as other:
        assert not np.array_equal(other.forward(IDS), want)


def test_get_config_follows_set_attention(tiny):
    tiny.set_attention(chunk=8)
    try:
        cfg = tiny.get_config()
        assert isinstance(cfg, attamba.Config) and cfg.describe()["chunk"] == 8
        assert cfg.to_dict() == tiny.config
    finally:
        tiny.set_attention(chunk=4)


def test_measure_memory(ctx):
    r = attamba.Config.load("tiny").measure_memory(ctx, 2, 64)
    assert set(r) == {"weights", "prefill_arena", "prefill_peak", "kv_cache", "decode_arena", "decode_peak",
                      "idle_scratch"}
    assert r["weights"] > 0 and r["kv_cache"] > 0 and r["prefill_peak"] >= r["weights"] + r["prefill_arena"]
    h = attamba.Config.load("tiny").measure_memory(ctx, 2, 64, cache_type="f16")
    assert 0 < h["kv_cache"] < r["kv_cache"] and h["weights"] == r["weights"]


def test_quantize_q8_then_load(ctx, tiny, tiny_dir, tmp_path):
    n_conv, n_f32 = attamba.quantize(tiny_dir, tmp_path / "q8", "q8")
    assert n_conv > 0 and n_f32 > 0
    assert attamba.Config.load(tmp_path / "q8").describe()["weights"] == "q8"
    with attamba.Model.load(ctx, tmp_path / "q8") as q:
        got, want = q.forward(IDS), tiny.forward(IDS)
        assert np.isfinite(got).all() and got.shape == want.shape
        assert np.abs(got - want).max() < 0.1 * np.abs(want).max()
    with pytest.raises(attamba.Error):
        attamba.quantize(tiny_dir, tmp_path / "bad", "q3")
