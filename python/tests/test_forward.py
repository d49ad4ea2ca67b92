"""Model.forward against the CLI's `attamba forward` (bit for bit), init/save/load, set_attention."""
import numpy as np
import pytest

import attamba

from conftest import golden_tokens

GOLDEN_MODELS = ["attamba_cyclic", "attamba_pseudo", "attamba_random_noconv", "attamba_uniform_gqa_groups",
                 "transformer_gqa", "transformer_swa"]


def cli_forward(cli, tmp_path, model_dir, tokens, *opts):
    """Logits [B, T, V] from `attamba forward` (raw little-endian f32), for tokens [B, T]."""
    inp, out = tmp_path / "tokens.txt", tmp_path / "logits.bin"
    inp.write_text("".join(" ".join(map(str, row)) + "\n" for row in np.asarray(tokens).tolist()))
    p = cli("forward", "--model", model_dir, "--input", inp, "--output", out, *opts)
    B, T = np.asarray(tokens).shape
    raw = np.fromfile(out, dtype="<f4")
    assert raw.size % (B * T) == 0, p.stdout
    return raw.reshape(B, T, -1)


def same_bits(a, b):
    return a.shape == b.shape and a.dtype == b.dtype == np.float32 and np.array_equal(a.view(np.uint32), b.view(np.uint32))


@pytest.mark.parametrize("name", GOLDEN_MODELS)
def test_forward_matches_cli_bit_for_bit(ctx, cli, golden, tmp_path, name):
    tokens = golden_tokens(name)
    with attamba.Model.load(ctx, golden / name) as m:
        got = m.forward(tokens)
        assert got.shape == (*tokens.shape, m.vocab_size) and got.dtype == np.float32
    want = cli_forward(cli, tmp_path, golden / name, tokens)
    assert same_bits(got, want), f"max |diff| {np.abs(got - want).max()}"


def test_forward_tiny_matches_cli(tiny, tiny_dir, cli, tmp_path):
    tokens = tiny.tokenizer.encode("Bit for bit, the same kernels on the same device.")[None, :]
    assert same_bits(tiny.forward(tokens), cli_forward(cli, tmp_path, tiny_dir, tokens))


def test_set_attention_matches_cli(ctx, cli, golden, tmp_path):
    name = "attamba_cyclic"
    tokens = golden_tokens(name)
    with attamba.Model.load(ctx, golden / name) as m:
        base = m.forward(tokens)
        m.set_attention(chunk=8, window=2, boundaries="uniform")
        got = m.forward(tokens)
    assert not np.array_equal(base, got)  # the pattern did change
    want = cli_forward(cli, tmp_path, golden / name, tokens, "--chunk", 8, "--window", 2, "--boundaries", "uniform")
    assert same_bits(got, want)


def test_forward_1d_is_one_row(tiny):
    ids = tiny.tokenizer.encode("one row, one batch")
    one = tiny.forward(ids)
    assert one.shape == (ids.size, tiny.vocab_size)
    both = tiny.forward(np.stack([ids, ids[::-1]]))
    np.testing.assert_allclose(one, both[0], atol=1e-5, rtol=1e-5)
    # any integer dtype and plain lists are accepted
    np.testing.assert_array_equal(tiny.forward(ids.astype(np.int64).tolist()), one)


def test_init_save_load_identical(ctx, tiny, tiny_dir, cli, tmp_path):
    tokens = tiny.tokenizer.encode("saved and loaded again")
    want = tiny.forward(tokens)
    with attamba.Model.load(ctx, tiny_dir) as m:
        assert m.vocab_size == tiny.vocab_size
        assert same_bits(m.forward(tokens), want)
    with attamba.Model.init(ctx, "tiny", seed=1) as m:  # the same seed, the same weights
        assert same_bits(m.forward(tokens), want)
    with attamba.Model.init(ctx, tiny_dir / "config.json", seed=1) as m:  # a config path, not a preset
        assert same_bits(m.forward(tokens), want)
    with attamba.Model.init(ctx, "tiny", seed=2) as m:
        assert not np.array_equal(m.forward(tokens), want)
    cli("init", "--preset", "tiny", "--seed", 1, "--out", tmp_path / "cli_tiny")  # as `attamba init` does
    with attamba.Model.load(ctx, tmp_path / "cli_tiny") as m:
        assert same_bits(m.forward(tokens), want)
    # save of a loaded model round-trips too
    with attamba.Model.load(ctx, tiny_dir) as m:
        m.save(tmp_path / "again")
    with attamba.Model.load(ctx, tmp_path / "again") as m:
        assert same_bits(m.forward(tokens), want)
