"""The sampler."""
import numpy as np
import pytest

import attamba


def draws(s, rows):
    return [s.sample(r) for r in rows]


def test_seeded_sampling_is_deterministic(ctx):
    rows = np.random.default_rng(1).normal(0, 2, size=(60, 258)).astype(np.float32)
    kw = dict(temperature=1.0, top_k=40, top_p=0.95, min_p=0.01, seed=7)
    a = draws(attamba.Sampler(ctx, **kw), rows)
    b = attamba.Sampler(ctx, **kw)
    assert draws(b, rows) == a
    b.reset()
    assert draws(b, rows) == a  # reset restarts the random numbers
    c = draws(attamba.Sampler(ctx, **dict(kw, seed=8)), rows)
    assert c != a
    assert all(0 <= t < 258 for t in a)


def test_greedy_is_argmax(ctx):
    rows = np.random.default_rng(2).normal(size=(30, 300)).astype(np.float32)
    for kw in (dict(temperature=0), dict(temperature=0.8, top_k=1)):
        s = attamba.Sampler(ctx, **kw)
        assert draws(s, rows) == rows.argmax(axis=1).tolist()
    s = attamba.Sampler(ctx, temperature=0)
    assert s.sample(rows[0].astype(np.float64)) == int(rows[0].argmax())  # converted to float32


def test_sampling_follows_the_distribution(ctx):
    logits = np.log(np.array([0.7, 0.2, 0.1, 0.0], dtype=np.float32) + 1e-30)
    s = attamba.Sampler(ctx, temperature=1.0, seed=3)
    counts = np.bincount([s.sample(logits) for _ in range(3000)], minlength=4)
    assert counts[3] == 0
    np.testing.assert_allclose(counts[:3] / 3000, [0.7, 0.2, 0.1], atol=0.04)


def test_repeat_penalty_and_accept(ctx):
    logits = np.array([1.6, 3.0, 2.9, -1.0], dtype=np.float32)
    s = attamba.Sampler(ctx, temperature=0, repeat_penalty=2.0, repeat_last_n=4)
    assert s.sample(logits) == 1  # and 1 is now counted
    assert s.sample(logits) == 2  # 3.0 / 2 < 2.9
    s.reset()
    s.accept(2)  # a prompt token, counted without a draw
    assert s.sample(logits) == 1
    assert s.sample(logits) == 0  # 1 and 2 both penalised: 1.5 and 1.45 < 1.6


def test_sampler_errors(ctx):
    with pytest.raises(attamba.Error) as e:
        attamba.Sampler(ctx, top_p=0)
    assert e.value.status == attamba.Status.ERR_INVALID_ARG and "top_p" in e.value.message
    with pytest.raises(attamba.Error):
        attamba.Sampler(ctx, repeat_last_n=0)
    with pytest.raises(attamba.Error):
        attamba.Sampler(ctx, min_p=2)
    s = attamba.Sampler(ctx, temperature=1.0)
    with pytest.raises(attamba.Error) as e:
        s.sample(np.array([0.0, np.nan], dtype=np.float32))
    assert "finite" in e.value.message
    with pytest.raises(attamba.Error):
        s.sample(np.full(4, -np.inf, dtype=np.float32))
    with pytest.raises(ValueError):
        s.sample(np.zeros((2, 3), np.float32))
    with pytest.raises(ValueError):
        s.sample([])
    with pytest.raises(ValueError):
        s.accept(2 ** 40)
    with pytest.raises(ValueError):
        attamba.Sampler(ctx, seed=-1)
