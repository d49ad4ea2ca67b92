"""API 0.3 evaluation: Model.loss, argmax, validate, score_task (with attamba.generate_task), and a model
loaded with split="rows"."""
import math
import re

import numpy as np
import pytest

import attamba

from conftest import REPO


def sample_text(n):
    """n bytes of the repository's docs (plain text, deterministic)."""
    text = b"".join(p.read_bytes() for p in sorted((REPO / "docs").glob("*.md")))
    assert len(text) >= n
    return text[:n]


def cross_entropy(logits, targets):
    """The summed cross-entropy over targets >= 0 and their count, in float64 numpy."""
    x = logits.astype(np.float64)
    lse = np.log(np.exp(x - x.max(-1, keepdims=True)).sum(-1)) + x.max(-1)
    keep = targets >= 0
    picked = np.take_along_axis(x, np.where(keep, targets, 0)[..., None], -1)[..., 0]
    return float(((lse - picked) * keep).sum()), int(keep.sum())


def windows(ids, T, bos):
    """eval's windows: BOS + T-1 tokens, targets the T-1 tokens and -1 (the last position is not scored)."""
    per = T - 1
    n = len(ids) // per
    w = np.asarray(ids[:n * per], dtype=np.int32).reshape(n, per)
    tokens = np.concatenate([np.full((n, 1), bos, np.int32), w], axis=1)
    targets = np.concatenate([w, np.full((n, 1), -1, np.int32)], axis=1)
    return tokens, targets


def test_loss_equals_cross_entropy_of_forward(tiny):
    rng = np.random.default_rng(3)
    tokens = rng.integers(0, 256, size=(3, 40)).astype(np.int32)
    targets = np.roll(tokens, -1, axis=1)
    targets[:, -1] = -1
    targets[1, 5:9] = -1  # not scored
    total, count = tiny.loss(tokens, targets)
    want, want_count = cross_entropy(tiny.forward(tokens), targets)
    assert count == want_count == 3 * 39 - 4
    assert total == pytest.approx(want, rel=1e-4)
    one, n1 = tiny.loss(tokens[0], targets[0])  # [T]: one row
    assert n1 == 39 and one == pytest.approx(cross_entropy(tiny.forward(tokens[0]), targets[0])[0], rel=1e-4)
    with pytest.raises(ValueError):
        tiny.loss(tokens, targets[:, :-1])
    with pytest.raises(attamba.Error):
        tiny.loss(tokens, np.full_like(tokens, 999))


def test_loss_matches_cli_eval(tiny, tiny_dir, cli, tmp_path):
    text = sample_text(3000)
    (tmp_path / "t.txt").write_bytes(text)
    T = 64
    p = cli("eval", "--model", tiny_dir, "--data", tmp_path / "t.txt", "--seq", T, "--batch", 4)
    m = re.search(rb"tokens (\d+)\s+bytes (\d+)\s+loss (\d+\.\d+)", p.stdout)
    assert m, p.stdout
    tokens, targets = windows(list(text), T, tiny.tokenizer.bos)
    total, count = tiny.loss(tokens, targets)
    assert count == int(m.group(1))
    assert f"{total / count:.4f}" == m.group(3).decode()


def test_argmax_equals_forward_argmax(tiny):
    tokens = np.random.default_rng(4).integers(0, 258, size=(2, 33)).astype(np.int32)
    got = tiny.argmax(tokens)
    assert got.dtype == np.int32 and got.shape == tokens.shape
    assert np.array_equal(got, tiny.forward(tokens).argmax(-1))
    assert np.array_equal(tiny.argmax(tokens[1]), got[1])


def test_validate(tiny, tmp_path):
    (tmp_path / "t.txt").write_bytes(sample_text(20000))
    loss = tiny.validate(tmp_path / "t.txt", val_frac=0.1, T=32, batch=2, n_windows=4)
    assert math.isfinite(loss) and 0 < loss < 10
    assert tiny.validate(tmp_path / "t.txt", val_frac=0.1, T=32, batch=4, n_windows=4) == pytest.approx(loss, rel=1e-5)
    with pytest.raises(attamba.Error):
        tiny.validate(tmp_path / "missing.txt", T=32, batch=2, n_windows=4)


def test_score_task_mqar(tiny, tmp_path):
    path = tmp_path / "mqar.task"
    n = attamba.generate_task(path, "mqar", example=64, examples=12, pairs=[2, 4], vocab=256, seed=5)
    assert n == 12 // 2 * (2 + 4)  # each key asked once
    r = tiny.score_task(path, batch=5)
    assert (r["kind"], r["example"], r["examples"]) == ("mqar", 64, 12)
    assert r["tokens"]["total"] == n and r["all"]["total"] == n  # one token per answer
    assert 0 <= r["all"]["right"] <= n and 0 <= r["all"]["lo"] <= r["all"]["hi"] <= 1
    assert [g["key"] for g in r["group"]] == [2, 4] and sum(g["total"] for g in r["group"]) == n
    assert set(r["group"][0]) == {"key", "right", "total", "lo", "hi"}
    assert sum(t["total"] for t in r["distance"]) == n
    assert r == tiny.score_task(path, kind="mqar", batch=12)
    with pytest.raises(attamba.Error) as e:  # a file of the other kind is refused
        tiny.score_task(path, kind="passkey")
    assert e.value.status == attamba.Status.ERR_INVALID_ARG


def test_score_task_passkey(tiny, tmp_path):
    (tmp_path / "filler.txt").write_bytes(sample_text(20000))
    path = tmp_path / "pk.task"
    n = attamba.generate_task(path, "passkey", example=192, examples=4, digits=3, depth=[0.25, 0.75],
                              filler=tmp_path / "filler.txt")
    r = tiny.score_task(path, kind="passkey")
    # n counts whole answers (one per example), each of `digits` tokens
    assert r["kind"] == "passkey" and n == 4 and r["all"]["total"] == n and r["tokens"]["total"] == 3 * n
    assert sorted(g["key"] for g in r["group"]) == [25, 75]
    with pytest.raises(attamba.Error):
        attamba.generate_task(tmp_path / "x.task", "passkey")  # no filler
    with pytest.raises(attamba.Error):
        attamba.generate_task(tmp_path / "x.task", "nonsense")


def test_split_rows(ctx, tiny, tiny_dir):
    tokens = np.random.default_rng(5).integers(0, 258, size=(5, 24)).astype(np.int32)
    targets = np.roll(tokens, -1, axis=1)
    want = tiny.forward(tokens)
    with attamba.Context(ctx.device) as other:
        with attamba.Model.load([ctx, other], tiny_dir, split="rows", tensor_split=[2, 1]) as m:
            assert m.contexts == (ctx, other)
            assert np.allclose(m.forward(tokens), want, rtol=1e-5, atol=1e-5)
            assert np.array_equal(m.argmax(tokens), tiny.argmax(tokens))
            assert m.loss(tokens, targets) == pytest.approx(tiny.loss(tokens, targets), rel=1e-5)
        with attamba.Model.load([ctx, other], tiny_dir, split="layer") as m:
            assert np.allclose(m.forward(tokens), want, rtol=1e-5, atol=1e-5)
        m = attamba.Model.load([ctx, other], tiny_dir, split="rows")
    assert m.closed  # closing a context closes the models that use it
    with pytest.raises(ValueError):
        attamba.Model.load([ctx], tiny_dir, split="columns")
    with pytest.raises(ValueError):
        attamba.Model.load([ctx], tiny_dir, split="rows", tensor_split=[1, 1])
