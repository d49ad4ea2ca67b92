#!/usr/bin/env python3
"""Checks that torch_twin.py (the fast PyTorch model bench_train_torch.py trains) computes the same
function as attamba_ref.py, the oracle: on small seeded float64 models of every config kind the
reference takes (make_golden.py's cases, plus cases that split long segments into several pieces,
longer sequences, wide convs), the logits and the gradient of the loss with respect to every
parameter must agree to 1e-9 and 1e-8, relative to the largest reference value of each.

    /usr/bin/python3 tools/reference/check_twin.py      # needs python3-torch; a few seconds

Prints a table; exits 1 if any case fails.
"""
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import attamba_ref as R  # noqa: E402
import make_golden as G  # noqa: E402
import torch_twin as TT  # noqa: E402

LOGIT_TOL, GRAD_TOL = 1e-9, 1e-8

# name -> (config overrides on make_golden.BASE, B, T, piece): the golden cases at their size and
# with the twin's default piece length, then cases for the paths the golden sizes do not reach
CASES = {name: (over, G.B, G.T, TT.PIECE) for name, over in G.CASES.items()}
CASES.update({
    # segments longer than a piece: states pass between pieces
    "long_chunk_pieces8": (G.CASES["attamba_long_chunk"], 2, 23, 8),
    "random_pieces3": (dict(chunk=5, window=2, boundaries="random:3", n_layers=3), 2, 23, 3),
    "explicit_pieces2_conv6": (dict(window=1, boundaries=[3, 4, 10, 17], ssm_conv=6), 2, 23, 2),
    "single_segment_T100": (dict(chunk=256, window=3, boundaries="uniform", ssm_dt_bias=True), 1, 100, TT.PIECE),
    # longer sequence, presets' P, groups, GQA
    "cyclic_P8_T70_groups": (dict(chunk=8, window=8, n_layers=3, n_heads=4, n_kv_heads=2, head_dim=16,
                                  ssm_heads=4, ssm_groups=2, ssm_dt_bias=True), 2, 70, TT.PIECE),
    "uniform_P1": (dict(chunk=1, window=0, boundaries="uniform"), 2, 23, TT.PIECE),
    "explicit_late_conv2_tied": (dict(window=0, boundaries=[22], ssm_conv=2, tie_embeddings=True), 2, 23, 4),
    "pseudo_random_pieces4": (dict(chunk=6, window=2, pseudo=True, boundaries="random:9"), 2, 40, 4),
    "transformer_swa_gqa_T50": (dict(kind="transformer-swa", window=7, n_heads=4, n_kv_heads=1), 2, 50, TT.PIECE),
})


def rel(a, b):
    if a is None or b is None:  # a parameter one side does not use
        return float("inf")
    return ((a - b).abs().max() / b.abs().max().clamp_min(1e-300)).item()


def run_case(i, over, B, T, piece):
    cfg = dict(R.DEFAULTS)
    cfg.update(G.BASE)
    cfg.update(over)
    params = R.random_params(cfg, seed=300 + i)
    g = torch.Generator().manual_seed(400 + i)
    tokens = torch.randint(0, cfg["vocab_size"], (B, T), generator=g)
    targets = torch.randint(0, cfg["vocab_size"], (B, T), generator=g)
    targets[0, min(3, T - 1)] = -1  # not scored
    out = []
    for fwd in (R.forward, lambda p, c, t: TT.forward(p, c, t, piece=piece)):
        ps = {k: v.clone().requires_grad_(True) for k, v in params.items()}
        logits = fwd(ps, cfg, tokens)
        R.loss(logits, targets).backward()
        out.append((logits.detach(), {k: v.grad for k, v in ps.items()}))
    (lr, gr), (lt, gt) = out
    grad_errs = {k: rel(gt[k], gr[k]) for k in gr}
    worst = max(grad_errs, key=grad_errs.get)
    return rel(lt, lr), grad_errs[worst], worst, len(gr)


def main():
    torch.set_num_threads(1)
    print(f"torch {torch.__version__}, attention via {'scaled_dot_product_attention' if TT._HAS_SDPA else 'matmul+softmax'}")
    print(f"{'case':28s} {'B':>2s} {'T':>4s} {'piece':>5s} {'logits rel':>11s} {'grads rel':>11s}  worst grad ({'n'})")
    failed = 0
    for i, (name, (over, B, T, piece)) in enumerate(sorted(CASES.items())):
        le, ge, worst, n = run_case(i, over, B, T, piece)
        ok = le < LOGIT_TOL and ge < GRAD_TOL
        failed += not ok
        print(f"{name:28s} {B:2d} {T:4d} {piece:5d} {le:11.2e} {ge:11.2e}  {worst} ({n}){'' if ok else '  FAIL'}")
    print(f"{len(CASES) - failed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
