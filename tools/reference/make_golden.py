#!/usr/bin/env python3
"""Regenerates tests/golden/: small seeded models, token batches and the logits of
attamba_ref.forward (float64), for the C whole-model test (tests/test_model.c).

    /usr/bin/python3 tools/reference/make_golden.py      # needs python3-torch (scripts/setup.sh --torch)

Each case directory holds config.json, model.safetensors (f32), tokens.json (with targets, -1 = not
scored) and logits.safetensors, and grads.safetensors: the mean cross-entropy loss ("loss", [1]) and
its gradient for every parameter (same names as the weights), from autograd.
"""
import json
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import attamba_ref as R  # noqa: E402

BASE = dict(vocab_size=61, dim=32, n_layers=2, n_heads=4, n_kv_heads=4, head_dim=8, ffn_dim=48,
            ssm_inner=16, ssm_heads=2, ssm_state=8, ssm_groups=1, ssm_conv=4, bos_id=0, eos_id=1)

CASES = {
    "attamba_cyclic": dict(chunk=4, window=4, boundaries="cyclic"),
    "attamba_uniform_gqa_groups": dict(chunk=3, window=0, boundaries="uniform", n_heads=4, n_kv_heads=2,
                                       head_dim=16, ssm_heads=4, ssm_groups=2, ssm_dt_bias=True),
    "attamba_random_noconv": dict(chunk=5, window=2, boundaries="random:5", ssm_conv=0, n_layers=3),
    "attamba_explicit_tied": dict(window=1, boundaries=[3, 4, 10, 17], tie_embeddings=True),
    "attamba_long_chunk": dict(chunk=64, window=3, boundaries="uniform", ssm_state=16),
    "attamba_pseudo": dict(chunk=4, window=2, pseudo=True),
    "transformer_gqa": dict(kind="transformer", n_heads=4, n_kv_heads=2),
    "transformer_swa": dict(kind="transformer-swa", window=3, n_heads=2, n_kv_heads=2, head_dim=8),
}
B, T = 2, 23


def main():
    out_root = os.path.join(os.path.dirname(__file__), "..", "..", "tests", "golden")
    for i, (name, over) in enumerate(sorted(CASES.items())):
        cfg = dict(R.DEFAULTS)
        cfg.update(BASE)
        cfg.update(over)
        params = R.random_params(cfg, seed=100 + i)
        g = torch.Generator().manual_seed(200 + i)
        tokens = torch.randint(0, cfg["vocab_size"], (B, T), generator=g)
        # the stored weights are f32: compute the reference from exactly those values
        params = {k: v.float().double().clone() for k, v in params.items()}
        targets = torch.randint(0, cfg["vocab_size"], (B, T), generator=g)
        targets[0, 3] = -1  # not scored
        targets[1, T - 1] = -1
        for v in params.values():
            v.requires_grad_(True)
        logits = R.forward(params, cfg, tokens)
        loss = R.loss(logits, targets, ignore_id=-1)
        loss.backward()
        grads = {k: v.grad.detach() for k, v in params.items()}
        grads["loss"] = loss.detach().reshape(1)
        logits = logits.detach()
        d = os.path.join(out_root, name)
        os.makedirs(d, exist_ok=True)
        file_cfg = {k: v for k, v in cfg.items()}
        with open(os.path.join(d, "config.json"), "w") as f:
            json.dump(file_cfg, f, indent=1)
            f.write("\n")
        R.save_safetensors(os.path.join(d, "model.safetensors"), params, {"format": "attamba"})
        with open(os.path.join(d, "tokens.json"), "w") as f:
            json.dump({"B": B, "T": T, "tokens": tokens.reshape(-1).tolist(),
                       "targets": targets.reshape(-1).tolist()}, f)
            f.write("\n")
        R.save_safetensors(os.path.join(d, "logits.safetensors"), {"logits": logits})
        R.save_safetensors(os.path.join(d, "grads.safetensors"), grads)
        print(f"{name}: logits {tuple(logits.shape)}, |logits| max {logits.abs().max().item():.3f}, "
              f"loss {loss.item():.5f}")


if __name__ == "__main__":
    main()
