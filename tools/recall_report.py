#!/usr/bin/env python3
"""Tables and a plot of the recall study (scripts/recall.sh), from its eval JSON files alone, with the
standard library only.

    tools/recall_report.py OUT STEPS BATCH SEQ
    tools/recall_report.py --restore RESULTS.json OUT

Reads OUT/{mqar,passkey}/NAME-sSEED/{eval*.json,train-seconds,done}; writes OUT/results.json,
OUT/table.md and OUT/recall-vs-kv.svg (MQAR accuracy at the training length against KV-cache bytes
per layer, log scale). --restore writes the eval files, train seconds and done marker of every run in
a results.json back into OUT (runs already there are left alone), so that a fresh checkout resumes the
study from the committed results instead of retraining them; restored runs have no checkpoints.
"""
import glob
import json
import math
import os
import platform
import subprocess
import sys


def load(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def acc(t):
    """'0.912 [0.89, 0.93]' for a tally."""
    return f"{t['accuracy']:.3f} [{t['lo']:.2f}, {t['hi']:.2f}]"


def runs(out, task):
    rows = []
    for d in sorted(glob.glob(os.path.join(out, task, "*-s*"))):
        if not os.path.exists(os.path.join(d, "done")):
            continue
        base = os.path.basename(d)
        name, seed = base.rsplit("-s", 1)
        ev = load(os.path.join(d, "eval.json"))
        if not ev:
            continue
        secs = open(os.path.join(d, "train-seconds")).read().strip() if os.path.exists(
            os.path.join(d, "train-seconds")) else "?"
        r = dict(name=name, seed=int(seed), eval=ev, secs=secs, dir=d)
        for mult in (2, 4):
            r[f"x{mult}"] = load(os.path.join(d, f"eval-x{mult}.json"))
        r["test_time"] = {}
        for f in glob.glob(os.path.join(d, "eval-p*-l*.json")):
            p, l = os.path.basename(f)[6:-5].split("-l")
            r["test_time"][(int(p), int(l))] = load(f)
        rows.append(r)
    return rows


def restore(results, out):
    with open(results) as f:
        data = json.load(f)
    for task, rows in data.items():
        for r in rows:
            d = os.path.join(out, task, f"{r['name']}-s{r['seed']}")
            if os.path.exists(os.path.join(d, "done")):
                continue
            os.makedirs(d, exist_ok=True)
            files = {"eval.json": r["eval"], "eval-x2.json": r.get("x2"), "eval-x4.json": r.get("x4")}
            files |= {f"eval-{k}.json": v for k, v in r.get("test_time", {}).items()}
            for name, ev in files.items():
                if ev:
                    with open(os.path.join(d, name), "w") as f:
                        json.dump(ev, f)
            with open(os.path.join(d, "train-seconds"), "w") as f:
                f.write(f"{r['secs']}\n")
            open(os.path.join(d, "done"), "w").close()
            print(f"restored {d}")


def svg_plot(rows, path):
    pts = [(r["eval"]["kv_cache_bytes_per_layer"], r["eval"]["all"][0]["accuracy"], r["name"])
           for r in rows if r["eval"]["kv_cache_bytes_per_layer"] > 0]
    if not pts:
        return
    W, H, L, B = 760, 460, 70, 50
    xs = [math.log10(p[0]) for p in pts]
    x0, x1 = math.floor(min(xs)), math.ceil(max(xs))
    x1 = x1 if x1 > x0 else x0 + 1
    top = min(1.0, math.ceil(max(p[1] for p in pts) * 10 + 1) / 10)  # the axis ends a tenth above the best
    X = lambda v: L + (math.log10(v) - x0) / (x1 - x0) * (W - L - 20)
    Y = lambda a: H - B - a / top * (H - B - 20)
    s = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-family="sans-serif" font-size="11">',
         '<rect width="100%" height="100%" fill="white"/>']
    for a in (top * i / 4 for i in range(5)):
        s.append(f'<line x1="{L}" x2="{W-20}" y1="{Y(a):.1f}" y2="{Y(a):.1f}" stroke="#ddd"/>'
                 f'<text x="{L-8}" y="{Y(a)+4:.1f}" text-anchor="end">{a:.3g}</text>')
    for e in range(x0, x1 + 1):
        s.append(f'<line x1="{X(10**e):.1f}" x2="{X(10**e):.1f}" y1="20" y2="{H-B}" stroke="#ddd"/>'
                 f'<text x="{X(10**e):.1f}" y="{H-B+16}" text-anchor="middle">1e{e}</text>')
    s.append(f'<text x="{(W+L)/2}" y="{H-12}" text-anchor="middle">KV-cache bytes per layer at the training length (log)</text>')
    s.append(f'<text x="16" y="{H/2}" transform="rotate(-90 16 {H/2})" text-anchor="middle">MQAR accuracy</text>')
    for kv, a, name in pts:
        color = "#d62728" if name.startswith("transformer") else "#1f77b4"
        s.append(f'<circle cx="{X(kv):.1f}" cy="{Y(a):.1f}" r="4" fill="{color}"/>'
                 f'<text x="{X(kv)+6:.1f}" y="{Y(a)-5:.1f}" font-size="9">{name}</text>')
    s.append("</svg>")
    with open(path, "w") as f:
        f.write("\n".join(s) + "\n")


def main():
    if sys.argv[1] == "--restore":
        restore(sys.argv[2], sys.argv[3])
        return
    out, steps, batch, seq = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    mqar, passkey = runs(out, "mqar"), runs(out, "passkey")
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")),
               platform.machine())
    lines = [f"Budget per model: {steps} steps x {batch} x {seq} tokens (passkey: {max(batch // 4, 1)} x {4 * seq}); "
             f"commit {commit}; {cpu}, {os.cpu_count()} cores, PoCL. Accuracy: exact match (greedy), 95% Wilson "
             "interval.", ""]
    if mqar:
        groups = sorted({g["key"] for r in mqar for g in r["eval"]["by_group"]})
        lines += ["### MQAR", "",
                  "| model | seed | KV bytes/layer @T | all | " + " | ".join(f"{g} pairs" for g in groups) +
                  f" | T={2*seq} | T={4*seq} | train s |",
                  "|---|---:|---:|---|" + "---|" * len(groups) + "---|---|---:|"]
        for r in mqar:
            e = r["eval"]
            by = {g["key"]: g for g in e["by_group"]}
            cells = [acc(by[g]) if g in by else "-" for g in groups]
            ext = [acc(r[k]["all"][0]) if r[k] else "-" for k in ("x2", "x4")]
            lines.append(f"| {r['name']} | {r['seed']} | {e['kv_cache_bytes_per_layer']:,} | {acc(e['all'][0])} | " +
                         " | ".join(cells) + " | " + " | ".join(ext) + f" | {r['secs']} |")
        offs = [r for r in mqar if r["eval"]["by_offset"]]
        if offs:
            lines += ["", "By the pair's position in its chunk (model position of the value mod P, as a fraction"
                      " of P in eighths; with uniform boundaries a chunk's boundary token is at offset P-1, cyclic"
                      " ones shift it by layer):", "",
                      "| model | seed | " + " | ".join(f"{i}/8" for i in range(8)) + " |", "|---|---:|" + "---:|" * 8]
            for r in offs:
                P = r["eval"]["chunk"]
                cells = []
                for i in range(8):  # the offsets o with o * 8 // P == i
                    g = [t for t in r["eval"]["by_offset"] if t["key"] * 8 // P == i]
                    right, n = sum(t["right"] for t in g), sum(t["items"] for t in g)
                    cells.append(f"{right / n:.3f}" if n else "")
                lines.append(f"| {r['name']} | {r['seed']} | " + " | ".join(cells) + " |")
        tt = [r for r in mqar if r["test_time"]]
        if tt:
            keys = sorted({k for r in tt for k in r["test_time"]})
            lines += ["", "P and L changed at test time (trained with the P and L of the name):", "",
                      "| model | seed | " + " | ".join(f"P={p} L={l}" for p, l in keys) + " |",
                      "|---|---:|" + "---:|" * len(keys)]
            for r in tt:
                lines.append(f"| {r['name']} | {r['seed']} | " + " | ".join(
                    f"{r['test_time'][k]['all'][0]['accuracy']:.3f}" if r["test_time"].get(k) else "-"
                    for k in keys) + " |")
    if passkey:
        depths = sorted({g["key"] for r in passkey for g in r["eval"]["by_group"]})
        lines += ["", "### Passkey", "",
                  "| model | seed | KV bytes/layer @T | all | digits one by one | " +
                  " | ".join(f"depth {d}%" for d in depths) + " | train s |",
                  "|---|---:|---:|---|---:|" + "---|" * len(depths) + "---:|"]
        for r in passkey:
            e = r["eval"]
            by = {g["key"]: g for g in e["by_group"]}
            tok = e["tokens"][0]["accuracy"] if e.get("tokens") else float("nan")
            lines.append(f"| {r['name']} | {r['seed']} | {e['kv_cache_bytes_per_layer']:,} | {acc(e['all'][0])} | "
                         f"{tok:.3f} | " + " | ".join(acc(by[d]) if d in by else "-" for d in depths) +
                         f" | {r['secs']} |")
    text = "\n".join(lines) + "\n"
    with open(os.path.join(out, "table.md"), "w") as f:
        f.write(text)
    with open(os.path.join(out, "results.json"), "w") as f:
        json.dump({"mqar": [{k: v for k, v in r.items() if k not in ("test_time",)} | {
            "test_time": {f"p{p}-l{l}": v for (p, l), v in r["test_time"].items()}} for r in mqar],
                   "passkey": passkey}, f)
    svg_plot([r for r in mqar if r["seed"] == 1], os.path.join(out, "recall-vs-kv.svg"))
    print(text)


if __name__ == "__main__":
    main()
