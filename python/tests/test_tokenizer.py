"""The model's tokenizer."""
import numpy as np
import pytest

import attamba

TEXT = "Grüße, naïve café — 日本語のテキスト 🙂 ∑x² ok"


def test_round_trip_non_ascii(tiny):
    tok = tiny.tokenizer
    assert (tok.vocab_size, tok.bos, tok.eos) == (258, 256, 257)
    ids = tok.encode(TEXT)
    assert ids.dtype == np.int32 and ids[0] == tok.bos
    assert ids[1:].tolist() == list(TEXT.encode("utf-8"))  # byte-level
    assert tok.decode(ids) == TEXT  # BOS gives no text
    assert tok.decode_bytes(ids) == TEXT.encode("utf-8")
    assert tok.encode(TEXT, add_bos=False).tolist() == ids[1:].tolist()
    assert tok.encode(TEXT.encode("utf-8")).tolist() == ids.tolist()
    assert tok.decode(np.append(ids, tok.eos)) == TEXT
    assert tok.encode("", add_bos=False).size == 0 and tok.encode("").tolist() == [tok.bos]
    assert tok.decode([]) == ""
    assert tok.decode(104) == "h"


def test_decode_invalid_utf8_is_replaced(tiny):
    tok = tiny.tokenizer
    cut = tok.encode("é", add_bos=False)[:1]  # half a character
    assert tok.decode_bytes(cut) == b"\xc3"
    assert tok.decode(cut) == "\ufffd"


def test_decode_refuses_ids_outside_the_vocabulary(tiny):
    with pytest.raises(attamba.Error) as e:
        tiny.tokenizer.decode([104, 258])
    assert e.value.status == attamba.Status.ERR_INVALID_ARG and "258" in e.value.message
    with pytest.raises(attamba.Error):
        tiny.tokenizer.decode([-1])


def test_model_without_a_byte_vocabulary_has_no_tokenizer(ctx, golden):
    with attamba.Model.load(ctx, golden / "attamba_cyclic") as m:  # V = 61
        with pytest.raises(attamba.Error) as e:
            m.tokenizer
        assert "vocab" in e.value.message
        assert m.generate([0, 5, 7], 3).shape == (3,)  # ids still generate
