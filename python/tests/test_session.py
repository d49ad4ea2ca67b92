"""Decoding sessions against the full forward pass."""
import numpy as np
import pytest

import attamba

from conftest import golden_tokens

TOL = dict(atol=1e-4, rtol=1e-4)


def model_and_ids(request, ctx, golden, tiny):
    if request.param == "tiny":
        return tiny, tiny.tokenizer.encode("A session decodes what forward computes at once."), False
    m = attamba.Model.load(ctx, golden / request.param)
    return m, golden_tokens(request.param)[0], True


@pytest.fixture(params=["tiny", "attamba_random_noconv", "attamba_uniform_gqa_groups", "transformer_swa"])
def case(request, ctx, golden, tiny):
    m, ids, owned = model_and_ids(request, ctx, golden, tiny)
    yield m, ids
    if owned:
        m.close()


def test_feed_matches_forward(case):
    m, ids = case
    full = m.forward(ids)
    T = ids.size
    with attamba.Session(m, max_tokens=T) as s:
        k = 5
        np.testing.assert_allclose(s.feed(ids[:k]), full[k - 1], **TOL)  # prefill
        assert s.position() == k
        for j in range(k, T - 3):
            np.testing.assert_allclose(s.feed(ids[j]), full[j], **TOL)  # one decode step
        np.testing.assert_allclose(s.feed(ids[T - 3:]), full[T - 1], **TOL)  # several steps at once
        assert s.position() == T and s.cache_bytes() > 0
        s.reset()
        assert s.position() == 0
        np.testing.assert_allclose(s.feed(ids), full[-1], **TOL)  # after a reset: a prefill again


def test_batched_session_matches_forward(case):
    m, ids = case
    seqs = [ids[:7], ids[3:12], ids[1:4]]  # different prompts and lengths
    n_steps = 6
    rng = np.random.default_rng(0)
    steps = rng.integers(0, min(m.vocab_size, 256), size=(n_steps, len(seqs))).astype(np.int32)
    with attamba.Session(m, max_tokens=max(map(len, seqs)) + n_steps, n_seq=len(seqs)) as s:
        assert s.n_seq == 3
        for i, p in enumerate(seqs):
            np.testing.assert_allclose(s.prefill(i, p), m.forward(p)[-1], **TOL)
        for k in range(n_steps):
            out = s.step(steps[k])
            assert out.shape == (3, m.vocab_size)
            for i, p in enumerate(seqs):
                full = np.concatenate([p, steps[: k + 1, i]])
                np.testing.assert_allclose(out[i], m.forward(full)[-1], **TOL)
        assert [s.position(i) for i in range(3)] == [len(p) + n_steps for p in seqs]
        # reset one sequence and give it a new prompt; the others go on
        s.reset(1)
        assert s.position(1) == 0 and s.position(0) == len(seqs[0]) + n_steps
        np.testing.assert_allclose(s.prefill(1, ids[:2]), m.forward(ids[:2])[-1], **TOL)


def test_f16_cache_decodes_within_rounding(case):
    m, ids = case
    full = m.forward(ids)
    T = ids.size
    with attamba.Session(m, max_tokens=T, cache_type="f16") as s, attamba.Session(m, max_tokens=T) as s32:
        assert s.cache_type == "f16"
        s.feed(ids[:4])
        s32.feed(ids[:4])
        for j in range(4, T):
            np.testing.assert_allclose(s.feed(ids[j]), full[j], atol=5e-3)  # f16 rounding (docs/api.md)
            s32.feed(ids[j])
        assert s.cache_bytes() <= s32.cache_bytes()  # equal for a sliding window: only its f32 ring
    with pytest.raises(ValueError, match="cache_type"):
        attamba.Session(m, max_tokens=T, cache_type="q8")
