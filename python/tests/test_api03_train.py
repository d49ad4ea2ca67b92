"""API 0.3 data and training: tokenize_file, standalone tokenizers, train_run, checkpoint_exists, the
data-parallel Trainer, and the context's finish, cache_stats and save_programs."""
import math
import random

import numpy as np
import pytest

import attamba

from conftest import REPO


def read_tokens(path):
    """A binary token file: "ATBTOK01", u64 count, u16 ids."""
    raw = path.read_bytes()
    assert raw[:8] == b"ATBTOK01"
    n = int(np.frombuffer(raw[8:16], dtype="<u8")[0])
    ids = np.frombuffer(raw[16:], dtype="<u2")
    assert ids.size == n
    return ids.astype(np.int32)


@pytest.fixture(scope="module")
def text_file(tmp_path_factory):
    d = tmp_path_factory.mktemp("text")
    text = b"".join(p.read_bytes() for p in sorted((REPO / "docs").glob("*.md")))[:40000]
    (d / "t.txt").write_bytes(text)
    return d / "t.txt"


def test_tokenize_file_without_a_tokenizer_gives_the_bytes(text_file, tmp_path):
    n_tok, n_bytes = attamba.tokenize_file(text_file, tmp_path / "t.tok")
    data = text_file.read_bytes()
    assert n_tok == n_bytes == len(data)
    assert np.array_equal(read_tokens(tmp_path / "t.tok"), np.frombuffer(data, dtype=np.uint8))
    # a token file read back as training reads it: the same tokens
    assert attamba.tokenize_file(tmp_path / "t.tok", tmp_path / "again.tok")[0] == n_tok
    assert np.array_equal(read_tokens(tmp_path / "again.tok"), read_tokens(tmp_path / "t.tok"))
    with pytest.raises(attamba.Error) as e:
        attamba.tokenize_file(tmp_path / "missing.txt", tmp_path / "x.tok")
    assert e.value.message


def test_standalone_sentencepiece_tokenizer(tmp_path):
    if not attamba.have_sentencepiece():
        with pytest.raises(attamba.Error) as e:
            attamba.train_tokenizer(tmp_path / "t.txt", 300, tmp_path / "t.model")
        pytest.skip("this build has no SentencePiece")
    rng = random.Random(2)
    words = "the and of to in that he it was for with light earth water said unto them upon day night".split()
    text = "".join(rng.choice(words) + rng.choice([" ", " ", ".\n", ", "]) for _ in range(12000))
    (tmp_path / "t.txt").write_text(text)
    attamba.train_tokenizer(tmp_path / "t.txt", 300, tmp_path / "t.model")
    with attamba.Tokenizer.load(tmp_path / "t.model") as tok:
        assert tok.vocab_size == 300 and tok.model is None
        ids = tok.encode("the light upon the water", add_bos=False)
        assert tok.decode(ids) == "the light upon the water" and len(ids) < len("the light upon the water")
        n_tok, n_bytes = attamba.tokenize_file(tmp_path / "t.txt", tmp_path / "t.tok", tokenizer=tok)
        assert n_bytes == len(text.encode()) and n_tok < n_bytes
        assert np.array_equal(read_tokens(tmp_path / "t.tok"), tok.encode(text, add_bos=False))
        with pytest.raises(attamba.Error):
            tok.decode([5000])
    assert tok.closed
    with pytest.raises(ValueError):
        tok.encode("x")
    assert attamba.tokenize_file(tmp_path / "t.txt", tmp_path / "p.tok", tokenizer=tmp_path / "t.model")[0] == n_tok
    cfg = attamba.Config.load("tiny").use_tokenizer(tmp_path / "t.model")
    assert cfg.describe()["tokenizer"] == "sentencepiece" and cfg.describe()["vocab_size"] == 300
    with pytest.raises(attamba.Error):
        attamba.Tokenizer.load(tmp_path / "t.txt")


def test_train_run_writes_a_model_that_loads(ctx, text_file, tmp_path):
    out = tmp_path / "run"
    assert not attamba.checkpoint_exists(out)
    val = attamba.train_run(ctx, "tiny", data=text_file, out=out, steps=3, batch=2, seq=32, val_windows=2, seed=4)
    assert math.isfinite(val) and 0 < val < 10
    assert attamba.checkpoint_exists(out)
    assert (out / "metrics.jsonl").is_file()
    with attamba.Model.load(ctx, out) as m:
        assert m.vocab_size == 258
        assert m.validate(text_file, T=32, batch=2, n_windows=2) == pytest.approx(val, rel=1e-4)
    # resume to 5 steps: the checkpoint's config (None)
    val5 = attamba.train_run([ctx], None, data=text_file, out=out, steps=5, batch=2, seq=32, val_windows=2, seed=4,
                             resume=True)
    assert math.isfinite(val5)
    with pytest.raises(TypeError):
        attamba.train_run(ctx, "tiny", data=text_file, out=out, steps=3, no_such_param=1)
    with pytest.raises(attamba.Error) as e:
        attamba.train_run(ctx, "tiny", data=tmp_path / "missing.txt", out=tmp_path / "r2", steps=2, batch=2, seq=32)
    assert e.value.message


def test_parallel_trainer(ctx, tmp_path):
    rng = np.random.default_rng(6)
    data = rng.integers(0, 256, size=4000).astype(np.int32)
    windows = np.stack([data[s:s + 33] for s in rng.integers(0, 3900, size=4)])
    with attamba.Model.init(ctx, "tiny", seed=2) as m1, attamba.Model.init(ctx, "tiny", seed=2) as m2, \
            attamba.Context(ctx.device) as other:
        one = attamba.Trainer(m1, steps=10, batch=4, seq=32)
        two = attamba.Trainer.create_parallel(m2, [ctx, other], steps=10, batch=4, seq=32)
        assert two.contexts == (ctx, other)
        text, changed = two.split()
        assert changed and "rows" in text
        a, b = one.step(windows), two.step(windows)
        assert a.step == b.step == 1 and b.loss == pytest.approx(a.loss, rel=1e-4)
        assert np.allclose(m1.forward(windows[:, :-1]), m2.forward(windows[:, :-1]), rtol=1e-3, atol=1e-3)
        with pytest.raises(attamba.Error):  # the first device must be the model's
            attamba.Trainer.create_parallel(m2, [other, ctx], steps=10, batch=4, seq=32)
    assert two.closed  # its second context was closed


def test_context_finish_cache_stats_and_programs(ctx, tiny, tmp_path):
    tiny.forward([1, 2, 3])
    ctx.finish()
    s = ctx.cache_stats()
    assert isinstance(s, attamba.CacheStats) and s.misses + s.hits + s.prebuilt > 0
    n = ctx.save_programs(tmp_path / "bundle")
    assert n > 0 and (tmp_path / "bundle" / "bundle.json").is_file()
    ctx.reset_peak()
    assert ctx.memory().peak == ctx.memory().current
