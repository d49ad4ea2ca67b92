#!/usr/bin/env python3
"""The figures of bench/peers/llamacpp.sh's runs: medians over the rounds; each ratio attamba / llama.cpp
as the median over the rounds of the two engines' figures in the same round and test (run back to back,
so that a drift of the shared host cancels); the logit agreement. JSON (--out) and a markdown table
(stdout)."""
import argparse
import datetime
import json
import os
import re
import statistics

import numpy as np

TYPES = ["f32", "f16", "q8"]
LINE = re.compile(r"prefill (\d+) tokens in [\d.]+ s \(([\d.]+) tokens/s\); generated (\d+) tokens in [\d.]+ s "
                  r"\(([\d.]+) tokens/s\)")


def llama_rates(path):
    """{test: tokens/s} of one llama-bench JSON: pp512, pp2048, tg128, tg32@4096, ..."""
    out = {}
    with open(path, encoding="utf-8") as f:
        for e in json.load(f):
            p, n, d = e["n_prompt"], e["n_gen"], e.get("n_depth", 0)
            test = f"pp{p}" if p else f"tg{n}"
            out[test + (f"@{d}" if d else "")] = e["avg_ts"]
    return out


def attamba_rate(path, test):
    """The prefill rate (pp512, pp2048) or the decode rate (tg128) of one generate run's file."""
    with open(path, encoding="utf-8") as f:
        lines = [m for m in (LINE.search(line) for line in f) if m]
    if len(lines) != 1:
        raise SystemExit(f"summarize: {path}: expected 1 generate line, found {len(lines)}")
    return float(lines[0][4] if test.startswith("tg") else lines[0][2])


def attamba_depth(path):
    """{"tf:tg@4096": tokens/s, ...} of bench decode's JSON: the f16 cache (llama.cpp's) as tg@N, the f32
    one as "tg@N kv-f32"."""
    out = {}
    with open(path, encoding="utf-8") as f:
        for e in json.load(f):
            if e["op"] == "decode":
                kind = "tf" if e["model"].startswith("transformer") else "p8"
                kv = "" if e.get("cache_type") == "f16" else " kv-f32"
                out[f"{kind}:tg@{int(e['context'])}{kv}"] = e["rate"]
    return out


def median(xs):
    return statistics.median(xs) if xs else None


def logits_agreement(runs):
    out = {}
    for t in TYPES:
        a, b = np.fromfile(f"{runs}/at-{t}.bin", "<f4"), np.fromfile(f"{runs}/lc-{t}.bin", "<f4")
        if a.size != b.size:
            raise SystemExit(f"summarize: logits of different sizes for {t}: {a.size} vs {b.size}")
        a, b = a.reshape(64, -1), b.reshape(64, -1)
        out[t] = {"max_abs": float(np.abs(a - b).max()), "mean_abs": float(np.abs(a - b).mean()),
                  "argmax_equal": int((a.argmax(1) == b.argmax(1)).sum()), "positions": 64}
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--runs", required=True)
    ap.add_argument("--rounds", type=int, required=True)
    ap.add_argument("--threads", type=int, required=True)
    ap.add_argument("--sdist", default="")
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    samples = {}  # (engine, model, type, test) -> [rate of each round]
    for r in range(1, a.rounds + 1):
        for t in TYPES:
            for test in ("pp512", "pp2048", "tg128"):
                for lt, v in llama_rates(f"{a.runs}/lc-r{r}-{t}-{test}.json").items():
                    samples.setdefault(("llama.cpp", "tf", t, lt), []).append(v)
                for m in ("tf", "p8"):
                    name = m if t == "f32" else f"{m}-{t}"
                    v = attamba_rate(f"{a.runs}/at-r{r}-{name}-{test}.txt", test)
                    samples.setdefault(("attamba", m, t, test), []).append(v)
        for test, v in llama_rates(f"{a.runs}/lc-r{r}-depth.json").items():
            samples.setdefault(("llama.cpp", "tf", "f32", test.replace("tg32", "tg")), []).append(v)
        for key, v in attamba_depth(f"{a.runs}/at-r{r}-depth.json").items():
            m, test = key.split(":")
            samples.setdefault(("attamba", m, "f32", test), []).append(v)
    for k, v in samples.items():
        if len(v) != a.rounds:
            raise SystemExit(f"summarize: {k}: {len(v)} figures for {a.rounds} rounds")
    med = {k: median(v) for k, v in samples.items()}

    def ratio(m, t, test, lt):
        """median over the rounds of attamba / llama.cpp in the same round (paired), and the ratio of the
        medians; llama.cpp runs its f16 cache only: attamba's f32-cache rows are set against the same
        figure. Prefill is judged against llama.cpp f32 (lt): for the f16 and q8 rows that is the same
        round's f32 run, a minute or so earlier."""
        xs, ys = samples.get(("attamba", m, t, test)), samples.get(("llama.cpp", "tf", lt, test.replace(" kv-f32", "")))
        if not xs or not ys:
            return None, None
        return median([x / y for x, y in zip(xs, ys)]), median(xs) / median(ys)

    rows = []
    for test in ["pp512", "pp2048", "tg128", "tg@4096", "tg@16384", "tg@4096 kv-f32", "tg@16384 kv-f32"]:
        for t in TYPES:
            if test.startswith("tg@") and t != "f32":
                continue
            # prefill is judged against llama.cpp f32, decode against the matching type
            lt = "f32" if test.startswith("pp") else t
            (rt, rtm), (rp, rpm) = ratio("tf", t, test, lt), ratio("p8", t, test, lt)
            rows.append({"test": test, "weights": t,
                         "llama.cpp": med.get(("llama.cpp", "tf", t, test.replace(" kv-f32", ""))),
                         "attamba transformer": med.get(("attamba", "tf", t, test)),
                         "attamba P=8 L=8": med.get(("attamba", "p8", t, test)),
                         "ratio transformer": rt, "ratio P=8": rp,
                         "ratio of medians transformer": rtm, "ratio of medians P=8": rpm})
    report = {"schema": "attamba-peers", "date": datetime.date.today().isoformat(), "sdist": a.sdist,
              "threads": a.threads, "rounds": a.rounds, "logits": logits_agreement(a.runs), "rows": rows,
              "samples": [{"engine": k[0], "model": k[1], "weights": k[2], "test": k[3], "tokens_per_s": v}
                          for k, v in sorted(samples.items())]}
    os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
    with open(a.out + ".tmp", "w", encoding="utf-8") as f:
        json.dump(report, f, indent=1)
    os.replace(a.out + ".tmp", a.out)

    fmt = lambda x, d=1: "-" if x is None else f"{x:.{d}f}"
    print("KV caches f16 (llama-bench's default, attamba --cache-type f16) but in the kv-f32 rows (attamba's f32).")
    print(f"Rates: medians of {a.rounds} rounds. Ratios: medians of the rounds' attamba / llama.cpp (prefill against")
    print("llama.cpp f32; the f16 and q8 pp rows are paired with its f32 run of the same round).")
    print("| test | weights | llama.cpp tok/s | attamba transformer | ratio | attamba P=8 L=8 | ratio |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['test']} | {r['weights']} | {fmt(r['llama.cpp'])} | {fmt(r['attamba transformer'])} | "
              f"{fmt(r['ratio transformer'], 2)}x | {fmt(r['attamba P=8 L=8'])} | {fmt(r['ratio P=8'], 2)}x |")
    print("\nlogits of 64 ids, attamba vs llama.cpp (flash attention off, f32 KV):")
    for t, v in report["logits"].items():
        print(f"  {t}: max abs {v['max_abs']:.2e}, mean {v['mean_abs']:.2e}, argmax equal {v['argmax_equal']}/64")
    print(f"\n-> {a.out}")


if __name__ == "__main__":
    main()
