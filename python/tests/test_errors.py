"""Failures raise attamba.Error (from the library) or TypeError/ValueError (caught here first);
none may crash the interpreter."""
import numpy as np
import pytest

import attamba


def test_error_type():
    assert issubclass(attamba.Error, RuntimeError)
    e = attamba.Error(attamba.Status.ERR_IO, "cannot read x")
    assert e.status_name == "I/O error" and str(e) == "I/O error: cannot read x"


def test_bad_model_dir_names_the_path(ctx, tmp_path):
    missing = tmp_path / "no-such-model"
    with pytest.raises(attamba.Error) as e:
        attamba.Model.load(ctx, missing)
    assert str(missing) in e.value.message and str(missing) in str(e.value)
    assert e.value.status != attamba.Status.OK
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "config.json").write_text('{"kind": "attamba", "dim": "wide"}')
    with pytest.raises(attamba.Error) as e:
        attamba.Model.load(ctx, bad)
    assert e.value.status in (attamba.Status.ERR_FORMAT, attamba.Status.ERR_IO)
    assert e.value.message


def test_bad_init(ctx, tmp_path):
    with pytest.raises(attamba.Error) as e:
        attamba.Model.init(ctx, "enormous")
    assert "enormous" in e.value.message
    with pytest.raises(attamba.Error):
        attamba.Model.init(ctx, tmp_path / "missing.json")
    with pytest.raises(ValueError):
        attamba.Model.init(ctx, "tiny", seed=-1)
    with pytest.raises(TypeError):
        attamba.Model.init("not a context")
    with pytest.raises(TypeError):
        attamba.Model()


def test_save_to_bad_dir(tiny, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(attamba.Error):
        tiny.save(blocker / "sub")


def test_out_of_range_tokens(tiny):
    V = tiny.vocab_size
    with pytest.raises(attamba.Error) as e:
        tiny.forward([1, 2, V])
    assert e.value.status == attamba.Status.ERR_INVALID_ARG and str(V) in e.value.message
    with pytest.raises(attamba.Error):
        tiny.forward([[-1, 2]])
    with pytest.raises(ValueError):  # would wrap to a valid id as int32
        tiny.forward(np.array([1, 2 ** 32 + 1], dtype=np.int64))
    with pytest.raises(TypeError):
        tiny.forward([1.0, 2.0])
    with pytest.raises(TypeError):
        tiny.forward("text")
    with pytest.raises(ValueError):
        tiny.forward(np.zeros((1, 2, 3), np.int32))
    with pytest.raises(ValueError):
        tiny.forward(np.zeros((0, 4), np.int32))
    with pytest.raises(ValueError):
        tiny.forward([])
    with pytest.raises(attamba.Error):
        tiny.generate([1, V + 5], 3)


def test_session_errors(tiny):
    V = tiny.vocab_size
    with pytest.raises(attamba.Error):
        attamba.Session(tiny, max_tokens=0)
    with pytest.raises(attamba.Error):
        attamba.Session(tiny, max_tokens=8, n_seq=0)
    with attamba.Session(tiny, max_tokens=6, n_seq=2) as s:
        with pytest.raises(ValueError, match="one token per sequence"):
            s.step([1])  # C would read two
        with pytest.raises(attamba.Error) as e:
            s.feed([1, 2])  # feed is for one sequence
        assert "prefill" in e.value.message
        with pytest.raises(attamba.Error):
            s.prefill(2, [1, 2])
        with pytest.raises(attamba.Error):
            s.prefill(0, [1, V])
        s.prefill(0, [1, 2])
        with pytest.raises(attamba.Error) as e:
            s.prefill(0, [3])
        assert "not empty" in e.value.message
        with pytest.raises(attamba.Error):
            s.prefill(1, list(range(7)))  # longer than max_tokens
        with pytest.raises(IndexError):
            s.position(2)
        with pytest.raises(IndexError):
            s.cache_bytes(-1)
        with pytest.raises(attamba.Error):
            s.reset(5)
        with pytest.raises(ValueError):
            s.prefill(1, [])
        with pytest.raises(attamba.Error):
            s.step([V, 0])
    with attamba.Session(tiny, max_tokens=3) as s:
        s.feed([1, 2, 3])
        with pytest.raises(attamba.Error):  # the cache is full
            s.feed([4])


def test_set_attention_errors(ctx, tiny_dir):
    with attamba.Model.load(ctx, tiny_dir) as m:
        with pytest.raises(attamba.Error):
            m.set_attention(boundaries="sideways")
        with pytest.raises(ValueError):
            m.set_attention(chunk=0)
        with pytest.raises(ValueError):
            m.set_attention(window=-2)
        with pytest.raises(ValueError):
            m.set_attention(boundaries="uni\0form")
