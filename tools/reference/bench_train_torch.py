#!/usr/bin/env python3
"""Times one training step (forward, backward, gradient clipping, AdamW) of a PyTorch model of the
config on the CPU, for `attamba bench train --torch`, which runs it in the same run as the engine
and reports the ratio.

    bench_train_torch.py --config C.json --batch B --seq T --steps N [--threads K] [--model twin|reference]

--model twin (the default) trains torch_twin.py: the same function as the reference, written as a
performance-minded PyTorch user would (vectorised SSD scan over segments, fused K/V SSMs, one
conv, scaled_dot_product_attention where torch has it); check_twin.py shows the two agree.
--model reference trains attamba_ref.py, the readable oracle (a Python loop over time steps in the
SSM scan and over taps in the conv), which flatters the engine.

Prints one JSON object on one line: tokens_per_s, ms_per_step, threads, torch (version), model.
"""
import argparse
import json
import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import attamba_ref as R  # noqa: E402
import torch_twin  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", required=True)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--seq", type=int, default=128)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--model", choices=("twin", "reference"), default="twin")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    cfg = R.load_config(a.config)
    forward = torch_twin.forward if a.model == "twin" else R.forward
    params = R.random_params(cfg, seed=1, dtype=torch.float32)
    for v in params.values():
        v.requires_grad_(True)
    opt = torch.optim.AdamW(params.values(), lr=3e-3, betas=(0.9, 0.95), weight_decay=0.033)
    g = torch.Generator().manual_seed(2)
    tokens = torch.randint(0, cfg["vocab_size"], (a.batch, a.seq), generator=g)
    targets = torch.randint(0, cfg["vocab_size"], (a.batch, a.seq), generator=g)

    def step():
        opt.zero_grad()
        loss = R.loss(forward(params, cfg, tokens), targets)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params.values(), 1.0)
        opt.step()

    step()  # warm-up
    t0 = time.perf_counter()
    for _ in range(a.steps):
        step()
    dt = (time.perf_counter() - t0) / a.steps
    print(json.dumps({"tokens_per_s": a.batch * a.seq / dt, "ms_per_step": dt * 1e3, "threads": a.threads,
                      "torch": torch.__version__, "model": a.model}))


if __name__ == "__main__":
    main()
