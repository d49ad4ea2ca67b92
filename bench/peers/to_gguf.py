#!/usr/bin/env python3
"""An attamba transformer (config.json + f32 model.safetensors) as a GGUF file of llama.cpp's `llama`
architecture, for bench/peers/llamacpp.sh. Needs numpy and the gguf package (the copy vendored in
llama.cpp's gguf-py, on PYTHONPATH).

    to_gguf.py MODEL_DIR OUT.gguf

Only `kind: transformer` converts (llama.cpp has no Attamba). The weights go over unchanged: our RoPE
already rotates adjacent pairs (2i, 2i+1) as llama.cpp's `llama` arch does, so no Q/K permutation
(that is for Hugging Face's half-split checkpoints). The vocabulary is a placeholder SentencePiece
one of vocab_size entries (<unk>, <s>, </s>, the 256 byte tokens, then fillers): the comparison
feeds token ids, never text.
"""
import json
import struct
import sys

import numpy as np
import gguf

NAMES = {  # ours -> llama.cpp's, {l} the layer
    "tok_embeddings.weight": "token_embd.weight",
    "norm.weight": "output_norm.weight",
    "output.weight": "output.weight",
    "layers.{l}.attention_norm.weight": "blk.{l}.attn_norm.weight",
    "layers.{l}.attention.wq.weight": "blk.{l}.attn_q.weight",
    "layers.{l}.attention.wk.weight": "blk.{l}.attn_k.weight",
    "layers.{l}.attention.wv.weight": "blk.{l}.attn_v.weight",
    "layers.{l}.attention.wo.weight": "blk.{l}.attn_output.weight",
    "layers.{l}.ffn_norm.weight": "blk.{l}.ffn_norm.weight",
    "layers.{l}.feed_forward.w1.weight": "blk.{l}.ffn_gate.weight",
    "layers.{l}.feed_forward.w3.weight": "blk.{l}.ffn_up.weight",
    "layers.{l}.feed_forward.w2.weight": "blk.{l}.ffn_down.weight",
}


def read_safetensors(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for name, e in header.items():
        if name == "__metadata__":
            continue
        if e["dtype"] != "F32":
            sys.exit(f"to_gguf: {name} is {e['dtype']}; convert the f32 model (quantize with llama-quantize)")
        b, en = e["data_offsets"]
        out[name] = np.frombuffer(data[b:en], dtype="<f4").reshape(e["shape"])
    return out


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    src, dst = sys.argv[1:]
    with open(f"{src}/config.json", encoding="utf-8") as f:
        c = json.load(f)
    if c.get("kind") != "transformer" or c.get("tie_embeddings"):
        sys.exit("to_gguf: needs an untied `kind: transformer` model")
    w = read_safetensors(f"{src}/model.safetensors")
    V, d, L = c["vocab_size"], c["dim"], c["n_layers"]
    g = gguf.GGUFWriter(dst, "llama")
    g.add_name("attamba-transformer")
    g.add_context_length(32768 + 1024)
    g.add_embedding_length(d)
    g.add_block_count(L)
    g.add_feed_forward_length(c["ffn_dim"])
    g.add_head_count(c["n_heads"])
    g.add_head_count_kv(c["n_kv_heads"])
    g.add_key_length(c["head_dim"])
    g.add_value_length(c["head_dim"])
    g.add_rope_dimension_count(c["head_dim"])
    g.add_rope_freq_base(c["rope_theta"])
    g.add_layer_norm_rms_eps(c["norm_eps"])
    g.add_vocab_size(V)
    g.add_file_type(gguf.LlamaFileType.ALL_F32)
    tokens = ["<unk>", "<s>", "</s>"] + [f"<0x{i:02X}>" for i in range(256)]
    types = [gguf.TokenType.UNKNOWN, gguf.TokenType.CONTROL, gguf.TokenType.CONTROL] + [gguf.TokenType.BYTE] * 256
    tokens += [f"[F{i}]" for i in range(V - len(tokens))]
    types += [gguf.TokenType.NORMAL] * (V - len(types))
    g.add_tokenizer_model("llama")
    g.add_token_list(tokens[:V])
    g.add_token_scores([0.0] * V)
    g.add_token_types(types[:V])
    g.add_unk_token_id(0)
    g.add_bos_token_id(1)
    g.add_eos_token_id(2)
    done = set()
    for ours, theirs in NAMES.items():
        for l in range(L) if "{l}" in ours else [None]:
            name = ours.format(l=l)
            g.add_tensor(theirs.format(l=l), np.ascontiguousarray(w[name]))
            done.add(name)
    left = set(w) - done
    if left:
        sys.exit(f"to_gguf: tensors with no llama.cpp name: {sorted(left)[:4]}")
    g.write_header_to_file()
    g.write_kv_data_to_file()
    g.write_tensors_to_file()
    g.close()
    print(f"wrote {dst}: llama arch, {L} layers, d={d}, V={V}, {len(w)} tensors")


if __name__ == "__main__":
    main()
