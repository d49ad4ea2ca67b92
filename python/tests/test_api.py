"""Library, devices, contexts and object lifetimes."""
import gc
import os
import re
import subprocess
import sys

import numpy as np
import pytest

import attamba


def test_version():
    assert re.fullmatch(r"\d+\.\d+\.\d+", attamba.version())
    major, minor, _ = map(int, attamba.version().split("."))
    assert (major, minor) >= (0, 2)


def test_devices_and_context(ctx):
    devs = attamba.devices()
    assert devs and all(isinstance(d, attamba.DeviceInfo) for d in devs)
    d = ctx.device
    assert d in devs
    assert d.type in ("cpu", "gpu", "accelerator", "other")
    assert d.global_mem_bytes > 0 and d.compute_units > 0 and d.name
    assert re.fullmatch(r"\d+:\d+", d.selector)
    with attamba.Context(d) as same:  # a DeviceInfo selects its own device
        assert same.device == d


def test_memory_and_counters():
    with attamba.Context() as c:
        before = c.memory()
        assert before.current == 0
        m = attamba.Model.init(c, "tiny", seed=3)
        after = c.memory()
        assert after.current > before.current and after.peak >= after.current
        n0 = c.counters()
        m.forward([1, 2, 3])
        n1 = c.counters()
        assert n1.launches > n0.launches and n1.blocking_reads > n0.blocking_reads
        m.close()
        assert c.memory().current < after.current  # the weights are freed


def test_bad_device_raises():
    with pytest.raises(attamba.Error) as e:
        attamba.Context("97:3")
    assert e.value.status in (attamba.Status.ERR_NO_DEVICE, attamba.Status.ERR_INVALID_ARG)
    assert e.value.message and "97" in str(e.value)
    with pytest.raises(attamba.Error):
        attamba.Context("no-such-kind")


def test_children_keep_parents_alive():
    ctx = attamba.Context()
    model = attamba.Model.init(ctx, "tiny", seed=1)
    sess = attamba.Session(model, max_tokens=16)
    expect = model.forward([256, 1, 2])[-1]
    del ctx, model
    gc.collect()
    got = sess.feed([256, 1, 2])  # the model and its context are still there
    np.testing.assert_allclose(got, expect, atol=1e-4, rtol=1e-4)
    assert not sess.model.closed and not sess.model.context.closed
    sess.close()
    sess.close()  # twice is fine
    assert sess.closed


def test_close_cascades_and_is_idempotent():
    ctx = attamba.Context()
    model = attamba.Model.init(ctx, "tiny", seed=1)
    sess = attamba.Session(model, max_tokens=16)
    smp = attamba.Sampler(ctx, temperature=0)
    tok = model.tokenizer
    ctx.close()
    for obj in (ctx, model, sess, smp):
        assert obj.closed
    with pytest.raises(ValueError, match="closed"):
        model.forward([1])
    with pytest.raises(ValueError, match="closed"):
        sess.feed([1])
    with pytest.raises(ValueError, match="closed"):
        smp.sample(np.zeros(4, np.float32))
    with pytest.raises(ValueError, match="closed"):
        tok.encode("x")
    with pytest.raises(ValueError, match="closed"):
        ctx.memory()
    ctx.close()
    model.close()
    sess.close()
    smp.close()
    repr(ctx), repr(model), repr(sess), repr(smp)


def test_context_managers():
    with attamba.Context() as ctx:
        with attamba.Model.init(ctx, "tiny", seed=1) as m:
            with attamba.Session(m, 8) as s:
                s.feed([1, 2])
            assert s.closed and not m.closed
        assert m.closed and not ctx.closed
    assert ctx.closed


def test_cycles_are_freed_in_a_safe_order():
    # A reference cycle through every level: the collector finalises these in any order; the C
    # objects must still go session -> model -> context (a crash here would kill the interpreter).
    for _ in range(3):
        ctx = attamba.Context()
        model = attamba.Model.init(ctx, "tiny", seed=1)
        sess = attamba.Session(model, 8)
        smp = attamba.Sampler(ctx)
        ctx.loop = (sess, smp, model.tokenizer)
        model.loop = ctx
        del ctx, model, sess, smp
        gc.collect()


def test_missing_library_is_a_clear_import_error(tmp_path):
    code = ("import attamba\n"
            "try:\n"
            "    attamba.version()\n"
            "except ImportError as e:\n"
            "    assert isinstance(e, attamba.LibraryNotFoundError)\n"
            "    print(e)\n")
    env = dict(os.environ, ATTAMBA_LIBRARY=str(tmp_path / "libattamba.so"))
    p = subprocess.run([sys.executable, "-c", code], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       timeout=120, cwd=tmp_path)
    assert p.returncode == 0, p.stderr.decode()
    assert "ATTAMBA_LIBRARY" in p.stdout.decode()


def test_config_reads_back_the_config_in_force(ctx, tmp_path):
    import json
    with attamba.Model.init(ctx, "tiny", seed=4) as m:
        m.save(tmp_path)
        on_disk = json.loads((tmp_path / "config.json").read_text())
        assert m.config == on_disk
        assert m.config["kind"] == "attamba" and m.config["vocab_size"] == m.vocab_size
        m.set_attention(chunk=16, window=3)
        assert (m.config["chunk"], m.config["window"]) == (16, 3)
