#!/usr/bin/env python3
"""Plots training curves (metrics.jsonl of `attamba train`) as one SVG, with the standard library only.

    tools/plot_curves.py OUT.svg NAME=DIR/metrics.jsonl [NAME=...]

Solid lines: training loss (smoothed over 20 steps); dots: validation loss. Both in nats per byte.
"""
import json
import math
import sys

COLORS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
          "#bcbd22", "#17becf", "#393b79", "#637939"]


def read(path):
    train, val = [], []
    with open(path) as f:
        for line in f:
            try:
                r = json.loads(line)
            except ValueError:
                continue
            if "loss" in r:
                train.append((r["step"], r["loss"]))
            if "val_loss" in r:
                val.append((r["step"], r["val_loss"]))
    return train, val


def smooth(points, k=20):
    out, acc = [], []
    for s, v in points:
        acc.append(v)
        if len(acc) > k:
            acc.pop(0)
        out.append((s, sum(acc) / len(acc)))
    return out


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    series = []
    for arg in sys.argv[2:]:
        name, path = arg.split("=", 1)
        series.append((name,) + read(path))
    W, H, L, R, T, B = 760, 440, 60, 230, 30, 45
    xmax = max((p[0] for _, tr, _ in series for p in tr), default=1)
    ys = [v for _, tr, va in series for _, v in smooth(tr) + va]
    ymin = math.floor(min(ys) * 2) / 2 if ys else 0
    ymax = min(max(ys), ymin + 4) if ys else 1
    X = lambda s: L + (W - L - R) * s / xmax
    Y = lambda v: T + (H - T - B) * (1 - (min(max(v, ymin), ymax) - ymin) / (ymax - ymin))
    out = [f"<svg xmlns='http://www.w3.org/2000/svg' width='{W}' height='{H}' font-family='sans-serif' font-size='12'>",
           "<rect width='100%' height='100%' fill='white'/>",
           f"<text x='{L}' y='18' font-size='14'>loss (nats/byte) vs step: lines train (smoothed), dots validation</text>",
           f"<line x1='{L}' y1='{H-B}' x2='{W-R}' y2='{H-B}' stroke='black'/>",
           f"<line x1='{L}' y1='{T}' x2='{L}' y2='{H-B}' stroke='black'/>"]
    v = ymin
    while v <= ymax + 1e-9:
        out.append(f"<line x1='{L}' x2='{W-R}' y1='{Y(v):.1f}' y2='{Y(v):.1f}' stroke='#ddd'/>"
                   f"<text x='{L-6}' y='{Y(v)+4:.1f}' text-anchor='end'>{v:.1f}</text>")
        v += 0.5
    for i in range(5):
        s = xmax * i / 4
        out.append(f"<text x='{X(s):.1f}' y='{H-B+16}' text-anchor='middle'>{int(s)}</text>")
    for j, (name, tr, va) in enumerate(series):
        c = COLORS[j % len(COLORS)]
        pts = " ".join(f"{X(s):.1f},{Y(v):.1f}" for s, v in smooth(tr))
        out.append(f"<polyline fill='none' stroke='{c}' stroke-width='1.5' points='{pts}'/>")
        for s, v in va:
            out.append(f"<circle cx='{X(s):.1f}' cy='{Y(v):.1f}' r='3' fill='{c}'/>")
        out.append(f"<text x='{W-R+10}' y='{T+15*(j+1)}' fill='{c}'>{name}</text>")
    out.append(f"<text x='{(L+W-R)//2}' y='{H-10}' text-anchor='middle'>optimiser step</text></svg>")
    with open(sys.argv[1], "w") as f:
        f.write("\n".join(out) + "\n")


if __name__ == "__main__":
    main()
