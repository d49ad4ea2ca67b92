"""An independent PyTorch implementation of ../shared/SPEC.md (the Attamba LM and its transformer
baselines), written from the spec, not from the C code. It is the oracle for whole-model tests:
make_golden.py runs it on small seeded models and commits the results under tests/golden/.

Plain and slow on purpose: dense masks, token-by-token SSM recurrence, float64 by default.
Tensor names follow docs/weights.md (PyTorch Linear convention: weight [out, in], y = x W^T).
"""
import json
import math
import struct

import numpy as np
import torch
import torch.nn.functional as F

# ---------------------------------------------------------------------------------------------
# Config

DEFAULTS = dict(kind="attamba", vocab_size=258, dim=64, n_layers=2, n_heads=4, n_kv_heads=4, head_dim=16,
                ffn_dim=128, ssm_inner=32, ssm_heads=4, ssm_state=8, ssm_groups=1, ssm_conv=4,
                ssm_dt_bias=False, chunk=4, window=4, boundaries="cyclic", pseudo=False,
                rope_theta=10000.0, norm_eps=1e-5, tie_embeddings=False)


def load_config(path):
    with open(path) as f:
        cfg = dict(DEFAULTS)
        cfg.update(json.load(f))
    return cfg


# ---------------------------------------------------------------------------------------------
# Boundaries (SPEC 3.2): a boundary is the last token of its segment; position 0 always is one.

MASK64 = (1 << 64) - 1


class Xoshiro:
    """xoshiro256** seeded through splitmix64, as the engine's core_rng (same stream by spec)."""

    def __init__(self, seed):
        x = seed & MASK64
        self.s = []
        for _ in range(4):
            x = (x + 0x9E3779B97F4A7C15) & MASK64
            z = x
            z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
            z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK64
            self.s.append(z ^ (z >> 31))

    @staticmethod
    def _rotl(x, k):
        return ((x << k) | (x >> (64 - k))) & MASK64

    def next(self):
        s = self.s
        result = (self._rotl((s[1] * 5) & MASK64, 7) * 9) & MASK64
        t = (s[1] << 17) & MASK64
        s[2] ^= s[0]
        s[3] ^= s[1]
        s[1] ^= s[2]
        s[0] ^= s[3]
        s[2] ^= t
        s[3] = self._rotl(s[3], 45)
        return result


def boundary_set(cfg, layer, T):
    strategy, P, n_layers = cfg["boundaries"], cfg["chunk"], cfg["n_layers"]
    out = {0}
    if isinstance(strategy, list):  # explicit
        out.update(p for p in strategy if p < T)
    elif strategy in ("uniform", "cyclic"):
        o = min(P - 1, layer * (P // n_layers)) if strategy == "cyclic" else 0
        out.update(range(P - 1 - o, T, P))
    elif strategy.startswith("random"):
        seed = int(strategy.split(":")[1]) if ":" in strategy else 0
        rng = Xoshiro((seed * 0x9E3779B97F4A7C15 + layer + 1) & MASK64)
        gap = lambda: 1 + rng.next() % (2 * P - 1)
        b = gap() - 1
        while b < T:
            out.add(b)
            b += gap()
    else:
        raise ValueError(strategy)
    return sorted(p for p in out if p < T)


def segment_starts(bset, T):
    starts, start, bs = [], 0, set(bset)
    for t in range(T):
        starts.append(start)
        if t in bs:
            start = t + 1
    return starts


# ---------------------------------------------------------------------------------------------
# Blocks

def rmsnorm(x, w, eps):
    return x * torch.rsqrt((x * x).mean(-1, keepdim=True) + eps) * w


def rope(x, n_heads, head_dim, theta, pos0=0):
    B, T, _ = x.shape
    xv = x.reshape(B, T, n_heads, head_dim // 2, 2)
    i = torch.arange(head_dim // 2, dtype=x.dtype)
    freq = theta ** (-2.0 * i / head_dim)
    ang = (pos0 + torch.arange(T, dtype=x.dtype))[:, None] * freq[None, :]  # [T, dh/2]
    c, s = torch.cos(ang)[None, :, None, :], torch.sin(ang)[None, :, None, :]
    a, b = xv[..., 0], xv[..., 1]
    return torch.stack([a * c - b * s, a * s + b * c], dim=-1).reshape(B, T, n_heads * head_dim)


def conv_segmented(x, w, starts):
    """Depthwise causal conv, taps before the segment start count as zero. x [B,T,C], w [C,W]."""
    B, T, C = x.shape
    W = w.shape[1]
    t = torch.arange(T)
    start = torch.as_tensor(starts)
    out = torch.zeros_like(x)
    for j in range(W):
        shift = W - 1 - j  # tap j reads x[t - shift]
        src = t - shift
        keep = (src >= start).to(x.dtype)[None, :, None]
        shifted = torch.cat([torch.zeros(B, shift, C, dtype=x.dtype), x[:, :T - shift]], dim=1) if shift else x
        out = out + w[:, j] * shifted * keep
    return out


def ssm(x, p, cfg, starts):
    """The K/V SSM of SPEC 3.1 with restarts at segment starts. x [B,T,d] -> [B,T,d]."""
    E, nh, N, G = cfg["ssm_inner"], cfg["ssm_heads"], cfg["ssm_state"], cfg["ssm_groups"]
    hp = E // nh
    B, T, _ = x.shape
    zxbcdt = x @ p["in_proj.weight"].T
    z, xbc, dt_raw = torch.split(zxbcdt, [E, E + 2 * G * N, nh], dim=-1)
    if cfg["ssm_conv"] > 0:  # SPEC 3.1: ssm_conv = 0 means no conv and no SiLU (xs, B, C pass raw)
        xbc = F.silu(conv_segmented(xbc, p["conv1d.weight"], starts))
    xs, Bm, Cm = torch.split(xbc, [E, G * N, G * N], dim=-1)
    dt = F.softplus(dt_raw + (p["dt_bias"] if cfg["ssm_dt_bias"] else 0.0))  # [B,T,nh]
    A = -torch.exp(p["A_log"])  # [nh]
    xs = xs.reshape(B, T, nh, hp)
    Bm = Bm.reshape(B, T, G, N)
    Cm = Cm.reshape(B, T, G, N)
    group = torch.arange(nh) // (nh // G)
    S = torch.zeros(B, nh, hp, N, dtype=x.dtype)
    ys = []
    for t in range(T):
        if starts[t] == t:
            S = torch.zeros_like(S)
        decay = torch.exp(dt[:, t] * A)  # [B,nh]
        Bt, Ct = Bm[:, t, group], Cm[:, t, group]  # [B,nh,N]
        S = decay[:, :, None, None] * S + (dt[:, t, :, None] * xs[:, t])[..., None] * Bt[:, :, None, :]
        y = (S * Ct[:, :, None, :]).sum(-1) + p["D"][None, :, None] * xs[:, t]
        ys.append(y.reshape(B, E))
    y = torch.stack(ys, dim=1)
    y = rmsnorm(y * F.silu(z), p["norm.weight"], cfg["norm_eps"])
    return y @ p["out_proj.weight"].T


def attention_mask(cfg, bset, T):
    t = torch.arange(T)[:, None]
    s = torch.arange(T)[None, :]
    causal = s <= t
    kind, L = cfg["kind"], cfg["window"]
    if kind == "transformer" or (kind == "attamba" and cfg["pseudo"]):
        return causal
    if kind == "transformer-swa":
        return causal & (t - s <= L)
    is_b = torch.zeros(T, dtype=torch.bool)
    is_b[bset] = True
    return causal & (is_b[None, :] | (t - s <= L))


def sub(params, prefix):
    return {k[len(prefix):]: v for k, v in params.items() if k.startswith(prefix)}


def forward(params, cfg, tokens):
    """tokens [B,T] int64 -> logits [B,T,V]."""
    B, T = tokens.shape
    d, H, Hkv, dh = cfg["dim"], cfg["n_heads"], cfg["n_kv_heads"], cfg["head_dim"]
    eps = cfg["norm_eps"]
    h = params["tok_embeddings.weight"][tokens]
    for l in range(cfg["n_layers"]):
        p = sub(params, f"layers.{l}.")
        x = rmsnorm(h, p["attention_norm.weight"], eps)
        q = x @ p["attention.wq.weight"].T
        if cfg["kind"] == "attamba":
            bset = boundary_set(cfg, l, T)
            starts = segment_starts(bset, T)
            k = x + ssm(x, sub(p, "ssm_k."), cfg, starts)
            v = x + ssm(x, sub(p, "ssm_v."), cfg, starts)
        else:
            bset = []
            k = x @ p["attention.wk.weight"].T
            v = x @ p["attention.wv.weight"].T
        q = rope(q, H, dh, cfg["rope_theta"])
        k = rope(k, Hkv, dh, cfg["rope_theta"])
        qh = q.reshape(B, T, H, dh).transpose(1, 2)
        kh = k.reshape(B, T, Hkv, dh).transpose(1, 2).repeat_interleave(H // Hkv, dim=1)
        vh = v.reshape(B, T, Hkv, dh).transpose(1, 2).repeat_interleave(H // Hkv, dim=1)
        scores = qh @ kh.transpose(-1, -2) / math.sqrt(dh)
        scores = scores.masked_fill(~attention_mask(cfg, bset, T), float("-inf"))
        o = (torch.softmax(scores, dim=-1) @ vh).transpose(1, 2).reshape(B, T, H * dh)
        h = h + o @ p["attention.wo.weight"].T
        y = rmsnorm(h, p["ffn_norm.weight"], eps)
        w1, w2, w3 = p["feed_forward.w1.weight"], p["feed_forward.w2.weight"], p["feed_forward.w3.weight"]
        h = h + (F.silu(y @ w1.T) * (y @ w3.T)) @ w2.T
    h = rmsnorm(h, params["norm.weight"], eps)
    out = params["tok_embeddings.weight"] if cfg["tie_embeddings"] else params["output.weight"]
    return h @ out.T


def loss(logits, targets, ignore_id=-1):
    V = logits.shape[-1]
    return F.cross_entropy(logits.reshape(-1, V), targets.reshape(-1), ignore_index=ignore_id)


# ---------------------------------------------------------------------------------------------
# Parameters: shapes (docs/weights.md), seeded random values, safetensors I/O without extra packages

def param_shapes(cfg):
    d, H, Hkv, dh, Fd, V = cfg["dim"], cfg["n_heads"], cfg["n_kv_heads"], cfg["head_dim"], cfg["ffn_dim"], cfg["vocab_size"]
    E, nh, N, G, W = cfg["ssm_inner"], cfg["ssm_heads"], cfg["ssm_state"], cfg["ssm_groups"], cfg["ssm_conv"]
    shapes = {"tok_embeddings.weight": (V, d)}
    for l in range(cfg["n_layers"]):
        pre = f"layers.{l}."
        shapes[pre + "attention_norm.weight"] = (d,)
        shapes[pre + "attention.wq.weight"] = (H * dh, d)
        if cfg["kind"] == "attamba":
            for s in ("ssm_k.", "ssm_v."):
                shapes[pre + s + "in_proj.weight"] = (2 * E + 2 * G * N + nh, d)
                if W > 0:
                    shapes[pre + s + "conv1d.weight"] = (E + 2 * G * N, W)
                if cfg["ssm_dt_bias"]:
                    shapes[pre + s + "dt_bias"] = (nh,)
                shapes[pre + s + "A_log"] = (nh,)
                shapes[pre + s + "D"] = (nh,)
                shapes[pre + s + "norm.weight"] = (E,)
                shapes[pre + s + "out_proj.weight"] = (d, E)
        else:
            shapes[pre + "attention.wk.weight"] = (Hkv * dh, d)
            shapes[pre + "attention.wv.weight"] = (Hkv * dh, d)
        shapes[pre + "attention.wo.weight"] = (d, H * dh)
        shapes[pre + "ffn_norm.weight"] = (d,)
        shapes[pre + "feed_forward.w1.weight"] = (Fd, d)
        shapes[pre + "feed_forward.w2.weight"] = (d, Fd)
        shapes[pre + "feed_forward.w3.weight"] = (Fd, d)
    shapes["norm.weight"] = (d,)
    if not cfg["tie_embeddings"]:
        shapes["output.weight"] = (V, d)
    return shapes


def random_params(cfg, seed, dtype=torch.float64):
    """Values of realistic scale (not the engine's init): fan-in scaled normals, norms near 1."""
    g = torch.Generator().manual_seed(seed)
    params = {}
    for name, shape in param_shapes(cfg).items():
        if name.endswith("A_log"):
            v = torch.log(torch.empty(shape).uniform_(0.5, 2.0, generator=g))
        elif name.endswith(".D"):
            v = 1.0 + 0.1 * torch.randn(shape, generator=g)
        elif name.endswith("dt_bias"):
            v = 0.3 * torch.randn(shape, generator=g) - 2.0
        elif name.endswith("norm.weight"):
            v = 1.0 + 0.1 * torch.randn(shape, generator=g)
        elif name.endswith("conv1d.weight"):
            v = torch.empty(shape).uniform_(-0.5, 0.5, generator=g)
        else:
            v = torch.randn(shape, generator=g) / math.sqrt(shape[-1] if len(shape) > 1 else 1)
        params[name] = v.to(dtype)
    return params


def save_safetensors(path, tensors, metadata=None):
    header, offset, blobs = {}, 0, []
    for name in sorted(tensors):
        a = np.ascontiguousarray(tensors[name].detach().cpu().numpy().astype("<f4"))
        header[name] = {"dtype": "F32", "shape": list(a.shape), "data_offsets": [offset, offset + a.nbytes]}
        offset += a.nbytes
        blobs.append(a.tobytes())
    if metadata:
        header["__metadata__"] = metadata
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)


def load_safetensors(path, dtype=torch.float64):
    with open(path, "rb") as f:
        data = f.read()
    n = struct.unpack("<Q", data[:8])[0]
    header = json.loads(data[8:8 + n])
    base = 8 + n
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        assert info["dtype"] == "F32", info["dtype"]
        a, b = info["data_offsets"]
        arr = np.frombuffer(data[base + a:base + b], dtype="<f4").reshape(info["shape"])
        out[name] = torch.from_numpy(arr.copy()).to(dtype)
    return out
