"""A fast PyTorch twin of attamba_ref.py: the same function (SPEC.md sections 3 and 3.1 to 3.3, every
config kind the reference takes), written the way a performance-minded PyTorch user would, so that
`attamba bench train --torch` compares the engine with a fair PyTorch model. check_twin.py shows that
twin and reference agree (logits and every parameter's gradient, float64).

    logits = forward(params, cfg, tokens)          # params and cfg as in attamba_ref
    loss(logits, targets)                          # attamba_ref.loss

How it differs from the reference (the function is the same):
- The K and V SSMs of a layer run as one SSM of 2 * ssm_heads heads and 2 * ssm_groups groups: one
  in_proj GEMM, one conv, one scan.
- The scan is Mamba-2's SSD form, vectorised. Segments restart the state (SPEC 3.2), so the sequence
  is cut into pieces, each inside one segment and at most `piece` tokens long (a segment longer than
  that is split into several); the pieces of all sequences are gathered into one zero-padded tensor
  [B, pieces, Lp, ...] and, within each piece, y = (L o (C B^T)) (dt x) + D x with
  L[t, s] = exp(cumA[t] - cumA[s]) for s <= t (cumA: cumulative sums of dt * A in the piece).
  A segment of several pieces passes states between its pieces in closed form (the piece-level
  decay matrix of the SSD "chunked" algorithm, masked to pieces of the same segment). At the
  presets' P = 8 every segment is one piece and the scan is a handful of batched products over
  8 x 8 blocks (broadcast multiply-and-sum: on the CPU faster than bmm's loop over tiny matrices).
- The depthwise causal conv runs on the same layout: each piece is gathered with its w-1 tokens of
  left context, the ones before its segment's start gathered as zeros (the reference's "taps
  before the segment start count as zero"), then one unfold, a multiply and a sum over the taps
  (on the CPU faster than F.conv1d with groups = channels on these short rows).
- Attention: torch.nn.functional.scaled_dot_product_attention with the reference's boolean mask
  where this torch has it (2.0 and later); on older torch (Debian's 1.13) the same dense masked
  softmax written out: one baddbmm adds the mask to the scaled scores, and the query heads that
  share a K/V head are stacked into one GEMM rather than copying the K/V heads.
- Segment layouts, masks and RoPE tables are cached per (layer, T), not rebuilt each step.
No Python loop runs over time steps, taps or segments in the forward pass; only over layers.
"""
import functools
import math
import os
import sys

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import attamba_ref as R  # noqa: E402

loss = R.loss
PIECE = 64  # longest piece of a segment scanned in the quadratic form
_HAS_SDPA = hasattr(F, "scaled_dot_product_attention")


# ---------------------------------------------------------------------------------------------
# Cached index tables (built once per layer and sequence length; plain Python over segments)

def _bkey(cfg):
    b = cfg["boundaries"]
    return tuple(b) if isinstance(b, list) else b


class _Layout:
    """Pieces of one layer's segments for sequences of length T: gather/scatter indices and masks."""

    def __init__(self, boundaries, chunk, n_layers, layer, T, W, piece):
        self.bset = _bset(boundaries, chunk, n_layers, layer, T)
        starts = sorted({0} | {b + 1 for b in self.bset if b + 1 < T})
        ends = starts[1:] + [T]
        pieces = []  # (start, end, segment start, segment index)
        for si, (s0, s1) in enumerate(zip(starts, ends)):
            for p0 in range(s0, s1, piece):
                pieces.append((p0, min(p0 + piece, s1), s0, si))
        Lp = max(p1 - p0 for p0, p1, _, _ in pieces)
        n = len(pieces)
        self.n, self.Lp = n, Lp
        k = torch.arange(Lp)
        p0 = torch.tensor([p[0] for p in pieces])
        p1 = torch.tensor([p[1] for p in pieces])
        sg0 = torch.tensor([p[2] for p in pieces])
        pos = p0[:, None] + k[None, :]
        valid = pos < p1[:, None]
        self.idx = torch.where(valid, pos, torch.full_like(pos, T)).reshape(-1)  # T: the zero row
        self.out = torch.nonzero(valid.reshape(-1)).reshape(-1)  # flat piece slot of each t, in order
        assert self.out.numel() == T
        if W > 1:  # each piece with its W-1 tokens of left context, zero before the segment start
            kc = torch.arange(Lp + W - 1) - (W - 1)
            cpos = p0[:, None] + kc[None, :]
            cvalid = (cpos >= sg0[:, None]) & (cpos < p1[:, None])
            self.cidx = torch.where(cvalid, cpos, torch.full_like(cpos, T)).reshape(-1)
        else:
            self.cidx = self.idx
        self.causal = torch.ones(Lp, Lp, dtype=torch.bool).tril()
        # pieces of segments that span several pieces: states pass between them
        seg = [p[3] for p in pieces]
        multi = [i for i in range(n) if (i > 0 and seg[i - 1] == seg[i]) or (i + 1 < n and seg[i + 1] == seg[i])]
        if multi:
            self.J = torch.tensor(multi)
            sj = torch.tensor([seg[i] for i in multi])
            j = torch.arange(len(multi))
            self.Jmask = (sj[:, None] == sj[None, :]) & (j[None, :] < j[:, None])  # [i, j]: j feeds i
        else:
            self.J = None


@functools.lru_cache(maxsize=512)
def _bset(boundaries, chunk, n_layers, layer, T):
    bcfg = dict(boundaries=list(boundaries) if isinstance(boundaries, tuple) else boundaries, chunk=chunk,
                n_layers=n_layers)
    return R.boundary_set(bcfg, layer, T)


@functools.lru_cache(maxsize=512)
def _layout(boundaries, chunk, n_layers, layer, T, W, piece):
    return _Layout(boundaries, chunk, n_layers, layer, T, W, piece)


@functools.lru_cache(maxsize=512)
def _mask(kind, pseudo, window, boundaries, chunk, n_layers, layer, T):
    """SPEC 3.3 as a boolean [T, T] (True = may attend), exactly attamba_ref.attention_mask."""
    t = torch.arange(T)[:, None]
    s = torch.arange(T)[None, :]
    causal = s <= t
    if kind == "transformer" or (kind == "attamba" and pseudo):
        return causal
    if kind == "transformer-swa":
        return causal & (t - s <= window)
    bset = _bset(boundaries, chunk, n_layers, layer, T)
    is_b = torch.zeros(T, dtype=torch.bool)
    is_b[bset] = True
    return causal & (is_b[None, :] | (t - s <= window))


@functools.lru_cache(maxsize=64)
def _additive_mask(kind, pseudo, window, boundaries, chunk, n_layers, layer, T, dtype, g):
    """The mask as 0 / -inf, repeated for the g query heads that share a K/V head: [g*T, T]."""
    m = _mask(kind, pseudo, window, boundaries, chunk, n_layers, layer, T)
    return torch.zeros(T, T, dtype=dtype).masked_fill(~m, float("-inf")).repeat(g, 1)


@functools.lru_cache(maxsize=64)
def _rope_table(T, head_dim, theta, dtype):
    i = torch.arange(head_dim // 2, dtype=dtype)
    freq = theta ** (-2.0 * i / head_dim)
    ang = torch.arange(T, dtype=dtype)[:, None] * freq[None, :]
    return torch.cos(ang)[None, :, None, :], torch.sin(ang)[None, :, None, :]


# ---------------------------------------------------------------------------------------------
# Blocks

def _rmsnorm(x, w, eps):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * w


def _rope(x, n_heads, head_dim, theta):
    B, T, _ = x.shape
    c, s = _rope_table(T, head_dim, theta, x.dtype)
    xv = x.reshape(B, T, n_heads, head_dim // 2, 2)
    a, b = xv[..., 0], xv[..., 1]
    return torch.stack([a * c - b * s, a * s + b * c], dim=-1).view(B, T, n_heads * head_dim)


def _bmm(a, b):
    """a @ b over batch dims; for short pieces (the presets' P = 8) broadcast-multiply and sum, which
    on the CPU beats bmm's loop over thousands of 8 x 8 matrices."""
    if a.shape[-2] <= 16:
        return (a[..., :, :, None] * b[..., None, :, :]).sum(-2)
    return a @ b


def _ssm_kv(x, pk, pv, cfg, lay):
    """Both K/V SSMs of SPEC 3.1 (one fused SSM of 2*nh heads), restarts at segment starts.
    x [B,T,d] -> (SSM_k(x), SSM_v(x)), each [B,T,d]."""
    E, nh, N, G, W = cfg["ssm_inner"], cfg["ssm_heads"], cfg["ssm_state"], cfg["ssm_groups"], cfg["ssm_conv"]
    hp, GN = E // nh, G * N
    Cw = E + 2 * GN  # conv channels of one SSM
    H2, G2, hpg = 2 * nh, 2 * G, nh // G
    B, T, _ = x.shape
    n, Lp = lay.n, lay.Lp

    zxbcdt = F.linear(x, torch.cat([pk["in_proj.weight"], pv["in_proj.weight"]])).view(B, T, 2, 2 * E + 2 * GN + nh)
    z, xbc, dt_raw = torch.split(zxbcdt, [E, Cw, nh], dim=-1)
    if cfg["ssm_dt_bias"]:
        dt_raw = dt_raw + torch.stack([pk["dt_bias"], pv["dt_bias"]])
    dt = F.softplus(dt_raw).reshape(B, T, H2)

    # gather into pieces [B, n, Lp, .], padding from an appended zero row (index T)
    xbc = F.pad(xbc.reshape(B, T, 2 * Cw), (0, 0, 0, 1))
    if W > 0:
        win = xbc.index_select(1, lay.cidx).view(B, n, Lp + W - 1, 2 * Cw)
        w = torch.cat([pk["conv1d.weight"], pv["conv1d.weight"]])  # [2*Cw, W]
        xbc = F.silu((win.unfold(2, W, 1) * w).sum(-1))  # [B,n,Lp,2*Cw]
    else:
        xbc = xbc.index_select(1, lay.idx).view(B, n, Lp, 2 * Cw)
    dt = F.pad(dt, (0, 0, 0, 1)).index_select(1, lay.idx).view(B, n, Lp, H2)  # 0 at padding: no effect
    xbc = xbc.reshape(B, n, Lp, 2, Cw)
    xs = xbc[..., :E].reshape(B, n, Lp, H2, hp).permute(0, 1, 3, 2, 4)  # [B,n,H2,Lp,hp]
    Bm = xbc[..., E:E + GN].reshape(B, n, Lp, G2, N).permute(0, 1, 3, 2, 4)  # [B,n,G2,Lp,N]
    Cm = xbc[..., E + GN:].reshape(B, n, Lp, G2, N).permute(0, 1, 3, 2, 4)

    A = -torch.exp(torch.cat([pk["A_log"], pv["A_log"]]))  # [H2]
    Dsk = torch.cat([pk["D"], pv["D"]])
    dtT = dt.transpose(2, 3)  # [B,n,H2,Lp]
    cum = torch.cumsum(dtT * A[:, None], dim=-1)  # [B,n,H2,Lp], inclusive
    Lmat = torch.exp((cum[..., :, None] - cum[..., None, :]).masked_fill(~lay.causal, float("-inf")))
    CB = _bmm(Cm, Bm.transpose(-1, -2))  # [B,n,G2,Lp,Lp]
    Wts = (Lmat.view(B, n, G2, hpg, Lp, Lp) * CB[:, :, :, None]).view(B, n, H2, Lp, Lp) * dtT[..., None, :]
    y = _bmm(Wts, xs) + Dsk[:, None, None] * xs  # [B,n,H2,Lp,hp]

    if lay.J is not None:  # segments longer than a piece: states pass from piece to piece
        J = lay.J
        nJ = J.numel()
        cJ = cum.index_select(1, J)  # [B,nJ,H2,Lp]
        last = cJ[..., -1:]  # padding has dt = 0: the piece's total log-decay
        BJ = Bm.index_select(1, J)[:, :, :, None].expand(B, nJ, G2, hpg, Lp, N).reshape(B, nJ, H2, Lp, N)
        CJ = Cm.index_select(1, J)[:, :, :, None].expand(B, nJ, G2, hpg, Lp, N).reshape(B, nJ, H2, Lp, N)
        xJ = xs.index_select(1, J) * (torch.exp(last - cJ) * dtT.index_select(1, J))[..., None]
        S_end = xJ.transpose(-1, -2) @ BJ  # [B,nJ,H2,hp,N]: each piece's own contribution at its end
        tot = last[..., 0]  # [B,nJ,H2]
        PC = torch.cumsum(tot, dim=1)
        # state entering piece i: sum over earlier pieces j of its segment of exp(PC[i-1] - PC[j]) S_end[j]
        M = torch.exp(((PC - tot)[:, :, None] - PC[:, None, :]).masked_fill(~lay.Jmask[None, :, :, None],
                                                                             float("-inf")))  # [B,i,j,H2]
        S_in = torch.einsum("bijh,bjhpn->bihpn", M, S_end)
        y_off = (CJ @ S_in.transpose(-1, -2)) * torch.exp(cJ)[..., None]  # [B,nJ,H2,Lp,hp]
        y = y.index_add(1, J, y_off)

    y = y.permute(0, 1, 3, 2, 4).reshape(B, n * Lp, 2, E).index_select(1, lay.out)  # [B,T,2,E]
    y = _rmsnorm(y * F.silu(z), torch.stack([pk["norm.weight"], pv["norm.weight"]]), cfg["norm_eps"])
    return F.linear(y[:, :, 0], pk["out_proj.weight"]), F.linear(y[:, :, 1], pv["out_proj.weight"])


def _attention(q, k, v, mask_bool, mask_add, H, Hkv, dh):
    """q [B,T,H*dh], k/v [B,T,Hkv*dh] -> [B,T,H*dh]; softmax(q k^T / sqrt(dh) + mask) v per head."""
    B, T, _ = q.shape
    qh = q.view(B, T, H, dh).transpose(1, 2)
    kh = k.view(B, T, Hkv, dh).transpose(1, 2)
    vh = v.reshape(B, T, Hkv, dh).transpose(1, 2)
    if _HAS_SDPA:
        if H != Hkv:
            kh, vh = kh.repeat_interleave(H // Hkv, dim=1), vh.repeat_interleave(H // Hkv, dim=1)
        o = F.scaled_dot_product_attention(qh, kh, vh, attn_mask=mask_bool)
    else:  # torch < 2.0: the same, written out; the g = H/Hkv query heads of a K/V head stacked as
        # rows of one GEMM (no copies of K/V), the mask added by the GEMM (baddbmm)
        g = H // Hkv
        qg = qh.reshape(B * Hkv, g * T, dh)
        scores = torch.baddbmm(mask_add, qg, kh.reshape(B * Hkv, T, dh).transpose(1, 2), alpha=1.0 / math.sqrt(dh))
        o = (torch.softmax(scores, dim=-1) @ vh.reshape(B * Hkv, T, dh)).view(B, H, T, dh)
    return o.transpose(1, 2).reshape(B, T, H * dh)


def _sub(params, prefix):
    return {k[len(prefix):]: v for k, v in params.items() if k.startswith(prefix)}


def forward(params, cfg, tokens, piece=PIECE):
    """tokens [B,T] int64 -> logits [B,T,V]; the function of attamba_ref.forward."""
    B, T = tokens.shape
    H, Hkv, dh, eps, theta = cfg["n_heads"], cfg["n_kv_heads"], cfg["head_dim"], cfg["norm_eps"], cfg["rope_theta"]
    kind, bk = cfg["kind"], _bkey(cfg)
    emb = params["tok_embeddings.weight"]
    h = F.embedding(tokens, emb)
    for l in range(cfg["n_layers"]):
        p = _sub(params, f"layers.{l}.")
        x = _rmsnorm(h, p["attention_norm.weight"], eps)
        if kind == "attamba":
            lay = _layout(bk, cfg["chunk"], cfg["n_layers"], l, T, cfg["ssm_conv"], piece)
            q = F.linear(x, p["attention.wq.weight"])
            sk, sv = _ssm_kv(x, _sub(p, "ssm_k."), _sub(p, "ssm_v."), cfg, lay)
            k, v = x + sk, x + sv
        else:
            qkv = F.linear(x, torch.cat([p["attention.wq.weight"], p["attention.wk.weight"], p["attention.wv.weight"]]))
            q, k, v = torch.split(qkv, [H * dh, Hkv * dh, Hkv * dh], dim=-1)
        mkey = (kind, bool(cfg["pseudo"]), cfg["window"], bk, cfg["chunk"], cfg["n_layers"], l, T)
        mask_bool = _mask(*mkey) if _HAS_SDPA else None
        mask_add = None if _HAS_SDPA else _additive_mask(*mkey, h.dtype, H // Hkv)
        o = _attention(_rope(q, H, dh, theta), _rope(k, Hkv, dh, theta), v, mask_bool, mask_add, H, Hkv, dh)
        h = h + F.linear(o, p["attention.wo.weight"])
        y = _rmsnorm(h, p["ffn_norm.weight"], eps)
        a, b = F.linear(y, torch.cat([p["feed_forward.w1.weight"], p["feed_forward.w3.weight"]])).chunk(2, dim=-1)
        h = h + F.linear(F.silu(a) * b, p["feed_forward.w2.weight"])
    h = _rmsnorm(h, params["norm.weight"], eps)
    return F.linear(h, emb if cfg["tie_embeddings"] else params["output.weight"])
