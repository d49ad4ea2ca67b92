"""A model whose tokenizer is SentencePiece (attamba tokenizer train, attamba init --tokenizer)."""
import random

import pytest

import attamba

AWKWARD = ["  two leading, two trailing  ", "tabs\tand\r\nCRLF\n", "emoji 🙂🎉 and 日本語", "a literal ▁ mark",
           ""]


@pytest.fixture(scope="module")
def spm_dir(cli, tmp_path_factory):
    d = tmp_path_factory.mktemp("spm")
    rng = random.Random(1)
    words = "the and of to in that he it was for with light earth water said unto them upon day night".split()
    (d / "text.txt").write_text("".join(rng.choice(words) + rng.choice([" ", " ", " ", ".\n", ", "])
                                        for _ in range(12000)))
    p = cli("tokenizer", "train", "--vocab", 300, "--data", d / "text.txt", "--out", d / "t.model", check=False)
    if p.returncode != 0 and b"no SentencePiece" in p.stderr:
        pytest.skip("this build has no SentencePiece")
    assert p.returncode == 0, p.stderr.decode(errors="replace")
    cli("init", "--preset", "tiny", "--tokenizer", d / "t.model", "--out", d / "m")
    return d / "m"


def test_encode_decode_round_trip(ctx, spm_dir, tmp_path):
    with attamba.Model.load(ctx, spm_dir) as m:
        tok = m.tokenizer
        assert (tok.vocab_size, tok.bos, tok.eos) == (300, 1, 2) and m.vocab_size == 300
        for text in AWKWARD + ["the light upon the water said unto them.\n"]:
            ids = tok.encode(text)
            assert ids[0] == tok.bos and all(0 <= i < 300 for i in ids)
            assert tok.decode(ids) == text
            assert b"".join(tok.decode_bytes([i]) for i in ids) == text.encode("utf-8")  # token by token
        assert len(tok.encode("the light upon the water", add_bos=False)) < len("the light upon the water")
        m.save(tmp_path / "copy")  # self-contained: the tokenizer file goes along
    assert (tmp_path / "copy" / "tokenizer.model").read_bytes() == (spm_dir / "tokenizer.model").read_bytes()
    with attamba.Model.load(ctx, tmp_path / "copy") as m:
        assert m.tokenizer.decode(m.tokenizer.encode(AWKWARD[1])) == AWKWARD[1]


def test_a_missing_tokenizer_file_is_refused(ctx, spm_dir, tmp_path):
    d = tmp_path / "m"
    d.mkdir()
    for f in ("config.json", "model.safetensors"):
        (d / f).write_bytes((spm_dir / f).read_bytes())
    with pytest.raises(attamba.Error) as e:
        attamba.Model.load(ctx, d)
    assert "tokenizer.model" in e.value.message
