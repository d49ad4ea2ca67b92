/* tuning.c: the table of device-dependent kernel parameters (see tuning.h), with why each row has
 * its value. CPU rows were measured on PoCL (2-core AMD EPYC, AVX-512 and AVX2 hosts); GPU rows are
 * the usual GPU shapes, not yet measured on a GPU (no GPU has been lent to this project). */
#include <cJSON.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "core/core.h"
#include "ops/tuning.h"

/* A row of the table: the default (accelerators, unknown devices), the CPU value, the GPU value
 * (every GPU vendor unless a vendor column below differs), the accepted range and the meaning.
 * VW_AUTO / RM_AUTO / INPLACE_AUTO / QV_AUTO / RK_AUTO / FROM_VW: derived from the device's preferred
 * float vector width when the table is built (FROM_VW: gemm.vw itself). */
enum { SAME = -1000000, VW_AUTO = -1, RM_AUTO = -2, INPLACE_AUTO = -3, FROM_VW = -4, QV_AUTO = -5, RK_AUTO = -6 };
static const struct {
    const char *name;
    int def, cpu, gpu;
    int nvidia, amd, intel; /* SAME: the GPU value */
    int lo, hi;
    const char *doc;
} rows[TUNE_N] = {
    /* On PoCL CLBlast's GPU-tuned kernels reach 11-18 GFLOP/s where the own register tiles reach
     * 100-200 (bench gemm); GPUs take CLBlast when the build has it. */
    [TUNE_GEMM_BACKEND] = {"gemm.backend", 1, 0, 1, SAME, SAME, SAME, 0, 1, "0 own kernels, 1 CLBlast (if built)"},
    [TUNE_GEMM_KERNEL] = {"gemm.kernel", 0, 0, 1, SAME, SAME, SAME, 0, 1, "own kernel: 0 register tiles, 1 __local tiles"},
    /* CPUs: 8 x 32 accumulators = 16 of the 32 AVX-512 registers (float16); with 8-wide AVX2 or
     * 4-wide SSE/NEON (16 registers on x86) 6 rows x 2 vectors leave room for B and the broadcast. */
    [TUNE_GEMM_VW] = {"gemm.vw", VW_AUTO, VW_AUTO, VW_AUTO, SAME, SAME, SAME, 4, 16,
                      "register tiles: vector width (default: the device's preferred float width)"},
    [TUNE_GEMM_NV] = {"gemm.nv", 2, 2, 2, SAME, SAME, SAME, 1, 4, "register tiles: vectors per row"},
    [TUNE_GEMM_RM] = {"gemm.rm", RM_AUTO, RM_AUTO, RM_AUTO, SAME, SAME, SAME, 1, 16,
                      "register tiles: rows per work-item (default 8 at 16 lanes, else 6)"},
    /* GPUs: 64 x 64 tiles, 16 x 16 groups, 4 x 4 per item, 8 KiB of __local. */
    [TUNE_GEMM_LT] = {"gemm.lt", 64, 64, 64, SAME, SAME, SAME, 8, 128, "__local tiles: LT x LT block of C per group"},
    [TUNE_GEMM_LW] = {"gemm.lw", 16, 16, 16, SAME, SAME, SAME, 1, 32, "__local tiles: LW x LW work-items per group"},
    [TUNE_GEMM_KT] = {"gemm.kt", 16, 16, 16, SAME, SAME, SAME, 1, 64, "__local tiles: KT-deep slices"},
    /* Every work-item of a group streams its panel of B again, which stays in a core's L2 up to
     * ~128 KiB (Zen 3: 512 KiB): 512x512x32000 nn 0.84 -> 0.95x OpenBLAS in passes of 2048 k. The
     * groups walk 64 panels (2 MiB of B at K = 512, in L3) over one group of rows before the next:
     * 4096x32000x512 nn 0.6 -> 1.1x; 16 measured alike, 256 worse (docs/benchmarks.md). */
    [TUNE_GEMM_KC_KIB] = {"gemm.kc_kib", 128, 128, 128, SAME, SAME, SAME, 0, 1 << 16,
                          "register tiles: KiB of a packed panel of B per pass over K (0: one pass)"},
    [TUNE_GEMM_PB] = {"gemm.pb", 64, 64, 64, SAME, SAME, SAME, 1, 4096,
                      "register tiles: panels of B per block of the launch order"},
    /* A plain B read in place costs a cache line per k and item when its rows are one line wide
     * (16-float panels: AVX2's 8 x 2 lanes), rows ldb apart sharing few cache sets: packed won on a
     * Zen 3 at every size. With 32-float panels (AVX-512) reading a B under 1 MiB in place skips a
     * pass and a launch: small's weight gradients (128-384 x 128 x 512 tn) 0.80-0.94x -> 0.88-1.20x
     * OpenBLAS on a Zen 4, larger B about even or worse (docs/benchmarks.md). */
    [TUNE_GEMM_INPLACE_B_KIB] = {"gemm.inplace_b_kib", 0, INPLACE_AUTO, 0, SAME, SAME, SAME, 0, 1 << 20,
                                 "register tiles: a plain f32 B under this many KiB is read in place, not packed "
                                 "(default 1024 at 16 lanes, else 0: only for M <= 64)"},
    /* A decode step of several sequences: each dot-product work-item takes up to gemm.dot_rm rows of x
     * against its row of W, four at a time, so W comes from memory once and from the cache for the
     * rest. PoCL (Sapphire Rapids), 4 x 32000 x 512: 10.3 ms with one row per item, 2.2-2.7 two rows
     * at a time, 1.6-1.9 four; 16 rows: 5.4-5.9 ms where the register tiles, which pack W on every
     * call, took 6.5-7.5 (bench gemm); bench batch at 4K context, 16 sequences: 3.2 -> 4.0x one
     * sequence's tokens/s. GPUs: not measured. */
    [TUNE_GEMM_DOT_M] = {"gemm.dot_m", 8, 17, 8, SAME, SAME, SAME, 1, 64,
                         "A B^T with fewer rows than this (decode) takes the dot-product kernels"},
    [TUNE_GEMM_DOT_RM] = {"gemm.dot_rm", 4, 16, 4, SAME, SAME, SAME, 1, 16,
                          "dot-product kernels: rows of A per work-item (at most; powers of two)"},
    /* PoCL runs a __local variant's barriers as loops over the group, so all BQ queries reuse a tile
     * from L1; without them each work-item streams the shared keys alone, which stays in cache only
     * while the stream is short (dense causal T = 4096: ~2x faster with __local; compressed P = 8:
     * about even). GPUs always tile through __local. */
    [TUNE_ATTN_LONG_KIB] = {"attn.long_kib", 256, 256, 0, SAME, SAME, SAME, 0, 1 << 20,
                            "prefill: __local tiles and the long block above this many KiB of shared K+V"},
    /* GPUs: 32 queries x attn.slices 8 = 256 work-items per group (the backward's groups likewise, with
     * 8-row tiles: at DH = 128 each kernel's __local stays under 48 KB) */
    [TUNE_ATTN_BQ_LONG] = {"attn.bq_long", 64, 64, 32, SAME, SAME, SAME, 1, 256, "prefill: queries per group, long"},
    [TUNE_ATTN_BQ_SHORT] = {"attn.bq_short", 16, 16, 16, SAME, SAME, SAME, 1, 256, "prefill: queries per group, short"},
    [TUNE_ATTN_TK] = {"attn.tk", 8, 8, 16, SAME, SAME, SAME, 1, 16, "prefill: keys per tile (power of two)"},
    [TUNE_ATTN_DECODE_WG] = {"attn.decode_wg", 8, 8, 32, SAME, SAME, SAME, 1, 256,
                             "decode: work-items per (sequence, head)"},
    /* Split-K decode (flash-decoding): paper-60m decoding one sequence has 8 (sequence, head) pairs,
     * one work-group each: a GPU's 100+ compute units would sit idle. There the keys of a pair are
     * split over enough groups for about 4 per compute unit (not measured on a GPU yet; a second
     * launch merges the parts). CPUs: off (two cores are full with 8 groups). */
    [TUNE_ATTN_DECODE_GROUPS] = {"attn.decode_groups", 0, 0, 4, SAME, SAME, SAME, 0, 1024,
                                 "decode: work-groups wanted per compute unit; fewer (sequence, head) pairs "
                                 "split their keys over several groups (0: never)"},
    [TUNE_ATTN_DECODE_SPLIT_KEYS] = {"attn.decode_split_keys", 64, 64, 64, SAME, SAME, SAME, 1, 1 << 20,
                                     "decode split-K: at least this many keys per group"},
    /* The attention kernels keep their rows in private memory (the forward a query and its accumulator,
     * the backward three or four rows, DH floats each): at DH = 128 they spill on gfx90a (544-1152
     * bytes of scratch per lane) and keep 1.1-2.7 KB stacks on sm_90. The sliced kernels split a row's
     * head dims over this many work-items (the largest power of two up to it dividing DH; the decode's
     * one query over the whole group), with the rows and each tile's scores in __local: no scratch or
     * stack on gfx90a and sm_90 at DH = 64 and 128 (docs/portability.md). CPUs: off (PoCL runs each
     * barrier as a loop over the group; the per-item kernels vectorise the rows). Not measured on a
     * GPU yet. */
    [TUNE_ATTN_SLICES] = {"attn.slices", 0, 0, 8, SAME, SAME, SAME, 0, 64,
                          "attention prefill, decode and backward: work-items sharing a row's head dims, rows and "
                          "scores through __local (0: a row per work-item)"},
    /* CPUs: 16 queries per work-item share each transposed key load (dense attention 1.22x the
     * per-query kernel at T = 512, 1.38x at 2048 on AVX2: docs/benchmarks.md). GPUs: off, RQ x DH
     * private floats would spill. */
    [TUNE_ATTN_RQ] = {"attn.rq", 0, 16, 0, SAME, SAME, SAME, 0, 32,
                      "dense causal prefill: queries per work-item, keys along the lanes (0 off)"},
    /* CPUs: the queries along the lanes, keys and values broadcast (cl/attention_lanes.cl): on the EPYC
     * kind against the GEMM path, P = L = 8, medians of interleaved rounds: 1.3x at T = 1024, 1.2x at
     * 4096; 3x the kernels at T = 4096, P = L = 64 (docs/benchmarks.md). 16 queries where the device
     * prefers 8 or more floats (one AVX-512 register, two AVX2 ones), else 8. GPUs: off, 2 x DH x 8 QV
     * private floats per work-item would spill. */
    [TUNE_ATTN_QV] = {"attn.qv", 0, QV_AUTO, 0, SAME, SAME, SAME, 0, 2,
                      "compressed and sliding prefill: float8s of queries per work-item along the lanes (0 off)"},
    /* Keys per group of attn_lanes: its RK score vectors of 8 qv floats take 8 registers, so RK = the
     * device's float width / qv within [4, 8]: 8 on AVX-512 (16 queries) and on AVX2 with 8, 4 on AVX2
     * with 16 (the Zen 3 kind, P = L = 8, five interleaved rounds: 16 queries x 4 keys 1.29x / 1.45x /
     * 1.23x 8 x 8 at T = 1024 / 2048 / 4096; 16 x 8 spills: 0.76x in the tuner). */
    [TUNE_ATTN_RK] = {"attn.rk", 8, RK_AUTO, 8, SAME, SAME, SAME, 4, 8,
                      "compressed and sliding prefill along the lanes: keys per group (4 to 8)"},
    /* CPUs: the register-tiled GEMM runs the scores and their products at ~3.5x the per-query
     * kernels' rate (docs/benchmarks.md). GPUs: off until measured there. */
    [TUNE_ATTN_GEMM_BQ] = {"attn.gemm_bq", 0, 128, 0, SAME, SAME, SAME, 0, 1024,
                           "prefill and backward attention through the GEMM: queries per block (0 off)"},
    /* The GEMM path also computes the scores the mask hides (a block's window columns past each query's L,
     * the boundaries its first queries do not see yet): it is taken while they are at most this share of
     * the allowed pairs. CPUs: 200. On the Sapphire Rapids kind (2026-12-02) it was faster on every
     * compressed shape measured up to 6x (op benchmarks), and paper-60m Attamba P = 8, L = 8 trained
     * 1.16x faster at T = 2048 (1.93x) and 1.0-1.03x at T = 512 (~4x); on the EPYC kind, before the row
     * pass bisected its boundaries, 7-8% slower at T = 2048 (more launches per step): so 200. Those
     * ratios are of the window through the GEMM; with the window in the row pass (attn.gemm_row_window)
     * compressed masks compute 1.1-1.2x and take the GEMMs at every T, while causal (~1.06x) does and
     * sliding windows (bq + L columns per L + 1) do not. `attamba tune` times both paths per device. */
    [TUNE_ATTN_GEMM_WASTE] = {"attn.gemm_waste", 160, 200, 160, SAME, SAME, SAME, 100, 100000,
                              "GEMM attention only while its scores are at most this % of the allowed pairs"},
    /* A query's window keys through the GEMM cost the block's bq + L columns per row, in the row pass
     * L + 1 dot products of one work-item: compressed P = 8, L = 8 forward 1.8x (T = 512) and 1.5x
     * (T = 2048) faster, backward 1.6x and 1.4x (docs/benchmarks.md, "Window in the row pass"). Up to
     * L = 32 (the row pass walks the window per query, as the kernels do; not measured beyond). */
    [TUNE_ATTN_GEMM_ROW_WINDOW] = {"attn.gemm_row_window", 32, 32, 32, SAME, SAME, SAME, -1, 4096,
                                   "GEMM attention, compressed masks: windows up to this in the row pass (-1 never)"},
    [TUNE_BWD_BQ] = {"bwd.bq", 16, 16, 32, SAME, SAME, SAME, 1, 256, "backward: queries per group (dq)"},
    [TUNE_BWD_TK] = {"bwd.tk", 8, 8, 8, SAME, SAME, SAME, 1, 16, "backward: keys per tile"},
    [TUNE_BWD_BK] = {"bwd.bk", 16, 16, 32, SAME, SAME, SAME, 1, 256, "backward: keys per group (dk, dv)"},
    [TUNE_BWD_TQ] = {"bwd.tq", 8, 8, 8, SAME, SAME, SAME, 1, 16, "backward: queries per tile"},
    [TUNE_BWD_LOCAL] = {"bwd.local", 0, 0, 1, SAME, SAME, SAME, 0, 1, "backward: 1 tiles through __local"},
    [TUNE_BWD_PER_ITEM] = {"bwd.per_item", 1, 1, 0, SAME, SAME, SAME, 0, 1,
                           "backward: 1 each work-item walks its own rows (only without __local)"},
    /* A work-item holds its k, v and dk, dv rows (or q, dout, dq) as DH / VW vectors. CPUs: the widest
     * (16 at DH = 64: one AVX-512 register each). GPUs: 8; at DH = 64 float16s made attn_bwd_dkv spill
     * 356 bytes per lane on gfx90a (256 VGPRs + 256 AGPRs), float8s none (docs/portability.md). */
    [TUNE_BWD_VW] = {"bwd.vw", 0, 0, 8, SAME, SAME, SAME, 0, 16,
                     "backward: head-dim vector width, the widest of 16, 8, 4, 1 dividing DH up to this (0: 16)"},
    /* PoCL: every barrier costs a pass over the group's work-items; 8 measured fastest there
     * (rmsnorm on [4096, 512]: ~1 ms at 8, 2.4 at 32, 7-17 at 128). GPUs want wide groups. */
    [TUNE_NORM_GROUP] = {"norm.group", 256, 8, 256, SAME, SAME, SAME, 1, 1024,
                         "norms (forward and backward rows): the largest work-group"},
    /* CPUs scan contiguous chunks (one stream per core), GPUs interleave (coalesced). */
    [TUNE_SUMSQ_SPLIT] = {"sumsq.split", 1, 0, 1, SAME, SAME, SAME, 0, 1, "sum of squares: 0 chunks, 1 interleaved"},
    [TUNE_SSM_PATH] = {"ssm.path", 0, 0, 0, SAME, SAME, SAME, 0, 3,
                       "scan: 0 by ssm.quad_max and ssm.per_cu, 1 sequential, 2 chunked, 3 quadratic"},
    /* The quadratic path's work per token grows with its segment ((P + 1) / 2 steps of N + p
     * multiply-adds per head), the recurrence's does not (3 p N). EPYC kind, bench ssm --T 4096, two
     * rounds (ms, sequential / quadratic): P = 8 1.5-2.4 / 0.67-0.75, P = 16 1.6-1.7 / 1.1-1.3, P = 32
     * 1.6 / 1.9-2.1, P = 64 1.7 / 4.0: so up to 16. GPUs: the same, not measured there (the quadratic
     * form has T x nh work-items and ~1/10 of the recurrence's FLOPs at P = 8). */
    [TUNE_SSM_QUAD_MAX] = {"ssm.quad_max", 16, 16, 16, SAME, SAME, SAME, 0, 4096,
                           "scan: the quadratic path while the longest segment has at most this many tokens"},
    /* A quadratic work-item's heads share B and C (one group), so C_t . B_s is computed once for all
     * of them; each head adds p / ssm.vp accumulators (CPUs: 8 heads x 2 float16s at p = 32 = 16 of the
     * 32 AVX-512 registers; at T = 4096, P = 8 the kernel 0.81-1.47 ms -> 0.62-0.80 ms against one
     * head). GPUs: one head (p accumulators per work-item already). Lowered to a divisor of the heads
     * per group. */
    [TUNE_SSM_QUAD_HEADS] = {"ssm.quad_heads", 1, 8, 1, SAME, SAME, SAME, 1, 64,
                             "scan, quadratic path: heads per work-item (of one group)"},
    /* enough independent scans to fill the device: a CPU core needs a few, a GPU compute unit
     * hundreds to hide memory latency */
    [TUNE_SSM_PER_CU] = {"ssm.per_cu", 256, 16, 256, SAME, SAME, SAME, 1, 1 << 20,
                         "scan: sequential while there are this many scans per compute unit"},
    /* A work-item of the prefill scan takes this many channels of a head as one vector (they share dt,
     * B and C: B[n] and C[n] broadcast, no horizontal sum for y), its state SSM_N such vectors (the
     * backward's row scan likewise, its column scan as many state columns); the
     * CPU default is gemm.vw, the device's preferred float width. PoCL (Sapphire Rapids, 16 lanes), bench
     * ssm at T = 4096, N = 32, p = 32: segments of 8 tokens 4.3-5.4 ms with one channel per work-item,
     * 3.5-3.7 with 8, 2.6-2.9 with 16; one segment of 4096 17-18, 5.5-5.8, 3.5-3.7 ms. GPUs keep one
     * channel per work-item (a state of SSM_N x 16 floats would take the registers). Lowered to a power
     * of two dividing p. */
    [TUNE_SSM_VP] = {"ssm.vp", 1, FROM_VW, 1, SAME, SAME, SAME, 1, 16,
                     "scan: channels per work-item as one vector (1, 2, 4, 8, 16; at most what divides p)"},
    [TUNE_SSM_DECODE_WG] = {"ssm.decode_wg", 256, 8, 256, SAME, SAME, SAME, 1, 1024,
                            "SSM decode step: the largest work-group"},
    /* An Attamba decode step's SSMs, out_proj, RoPE and cache append in one launch of one group per
     * (sequence, SSM) (ops_ssm_decode_append): two launches fewer per layer, for steps of up to this
     * many sequences. CPUs: 2 (two cores, two groups a sequence; PoCL spends ~10-15 us around each
     * launch, more than the out_proj takes; each group reads its SSM's out_proj for its own sequence,
     * so batches pay it again per sequence: `bench batch` at context 128, f32, fused against apart, step
     * ms 1 sequence 6.57 / 7.12, 2 6.91 / 7.34, 4 10.88 / 10.09, 13.28 / 12.11, 9.74 / 9.71, 16 28.6 /
     * 31.8, 35.0 / 27.4, 27.1 / 26.2). GPUs: 0 (the out_proj would run on 2 x B groups of a device
     * with 100+ compute units; not measured). */
    [TUNE_SSM_DECODE_APPEND] = {"ssm.decode_append", 0, 2, 0, SAME, SAME, SAME, 0, 1024,
                                "SSM decode step: the out_proj, RoPE and cache append in the same launch for "
                                "up to this many sequences (0: never)"},
    /* A conv1d work-item takes conv.vc channels (one vector) down conv.tt tokens (each x row from memory
     * once, the other taps' reads from L1). CPUs: the device's float width x 32. On the EPYC kind (bench
     * ssm --T 4096 --P 64, three interleaved rounds, medians) 8 x 32 took the forward 4.74 -> 2.77 ms and
     * the backward 8.74 -> 6.25 ms against 4 x 8 (tt 64 or 128: the same within noise); 16 x 32 (AVX-512)
     * a further ~3x on the forward, docs/benchmarks.md. GPUs keep 4 x 8 (more work-items; not measured
     * there). */
    [TUNE_CONV_TT] = {"conv.tt", 8, 32, 8, SAME, SAME, SAME, 1, 256,
                      "conv1d prefill and backward: tokens per work-item"},
    [TUNE_CONV_VC] = {"conv.vc", 4, FROM_VW, 4, SAME, SAME, SAME, 4, 16,
                      "conv1d prefill and backward: channels per work-item as one vector (4, 8 or 16)"},
};

typedef struct ops_tuning {
    tune_class cls;
    int value[TUNE_N];
    char source[TUNE_N][48];
} ops_tuning;

static const char *const class_names[TUNE_N_CLASSES] = {"cpu", "nvidia", "amd", "intel-gpu", "gpu", "accelerator",
                                                         "other"};

const char *ops_tune_class_name(tune_class c) { return c >= 0 && c < TUNE_N_CLASSES ? class_names[c] : "?"; }

static int has(const char *s, const char *what) { return strstr(s, what) != NULL; }

tune_class ops_tune_class(const attamba_device_info *d) {
    if (d->type & ATTAMBA_DEVICE_CPU) return TUNE_CPU;
    if (d->type & ATTAMBA_DEVICE_GPU) {
        if (has(d->vendor, "NVIDIA")) return TUNE_NVIDIA;
        if (has(d->vendor, "AMD") || has(d->vendor, "Advanced Micro Devices")) return TUNE_AMD;
        if (has(d->vendor, "Intel")) return TUNE_INTEL_GPU;
        return TUNE_GPU;
    }
    if (d->type & ATTAMBA_DEVICE_ACCELERATOR) return TUNE_ACCELERATOR;
    return TUNE_OTHER;
}

/* The class row's value of p, and which row gave it. */
static int class_value(tune_param p, tune_class c, const char **row) {
    int vendor = c == TUNE_NVIDIA ? rows[p].nvidia : c == TUNE_AMD ? rows[p].amd : c == TUNE_INTEL_GPU ? rows[p].intel
                                                                                                        : SAME;
    *row = "default";
    if (c == TUNE_CPU) return *row = "cpu", rows[p].cpu;
    if (vendor != SAME) return *row = class_names[c], vendor;
    if (c <= TUNE_GPU) return *row = "gpu", rows[p].gpu;
    return rows[p].def;
}

/* $name as a whole number in p's range, or -1 (a bad value is warned about and ignored). */
static int env_int(const char *name, tune_param p) {
    const char *e = getenv(name);
    if (!e || !*e) return -1;
    char *end;
    long v = strtol(e, &end, 10);
    if (*end || v < rows[p].lo || v > rows[p].hi) {
        core_log(CORE_LOG_WARN, "ignoring $%s='%s': want a whole number in [%d, %d]", name, e, rows[p].lo, rows[p].hi);
        return -1;
    }
    return (int)v;
}

/* $name as one of the words (index = value), or -1. */
static int env_word(const char *name, const char *const *words, int n) {
    const char *e = getenv(name);
    if (!e || !*e) return -1;
    for (int i = 0; i < n; i++)
        if (words[i] && !strcmp(e, words[i])) return i;
    core_log(CORE_LOG_WARN, "ignoring $%s='%s': not a known value", name, e);
    return -1;
}

static void put(ops_tuning *t, tune_param p, int v, const char *source) {
    t->value[p] = v;
    snprintf(t->source[p], sizeof t->source[p], "%s", source);
}

char *ops_tuning_path(rt_ctx *ctx) {
    if (!ctx->cache_dir) return NULL;
    const attamba_device_info *d = &ctx->dev.info;
    char *key = core_strdup_printf("%s\n%s\n%s\n%s", d->platform_name, d->name, d->driver_version, d->opencl_c_version);
    char *path = key ? core_strdup_printf("%s/tuning-%016llx.json", ctx->cache_dir,
                                          (unsigned long long)XXH64(key, strlen(key), 0))
                     : NULL;
    free(key);
    return path;
}

/* The tuner's values for this device and driver, if it ran here: each one checked against its
 * parameter's range (a bad file or value is warned about and ignored, the rest kept). */
static void load_tuned(rt_ctx *ctx, ops_tuning *t) {
    char *path = ops_tuning_path(ctx), err[256];
    size_t len;
    char *text = path ? core_read_file(path, 1 << 20, &len, err, sizeof err) : NULL;
    cJSON *root = text ? cJSON_Parse(text) : NULL;
    if (text && (!root || !cJSON_IsObject(cJSON_GetObjectItemCaseSensitive(root, "params"))))
        core_log(CORE_LOG_WARN, "ignoring tuned values %s: not a tuning file", path);
    const cJSON *params = root ? cJSON_GetObjectItemCaseSensitive(root, "params") : NULL;
    for (const cJSON *v = cJSON_IsObject(params) ? params->child : NULL; v; v = v->next) {
        int p = ops_tune_find(v->string);
        if (p < 0 || !cJSON_IsNumber(v) || v->valuedouble != (int)v->valuedouble || v->valuedouble < rows[p].lo ||
            v->valuedouble > rows[p].hi)
            core_log(CORE_LOG_WARN, "ignoring tuned value %s in %s", v->string, path);
        else
            put(t, (tune_param)p, (int)v->valuedouble, "tuned");
    }
    cJSON_Delete(root);
    free(text);
    free(path);
}

static ops_tuning *build(rt_ctx *ctx, int with_tuned) {
    ops_tuning *t = calloc(1, sizeof *t);
    if (!t) return NULL;
    t->cls = ops_tune_class(&ctx->dev.info);
    /* $ATTAMBA_TUNE_CLASS: another class's rows on this device (runs the GPU variants on a CPU device:
     * tests, and `attamba compile` enumerating a GPU's variants) */
    int forced = env_word("ATTAMBA_TUNE_CLASS", class_names, TUNE_N_CLASSES);
    if (forced >= 0) t->cls = (tune_class)forced;
    for (int p = 0; p < TUNE_N; p++) {
        const char *row;
        int v = class_value((tune_param)p, t->cls, &row);
        put(t, (tune_param)p, v, forced >= 0 ? "env ATTAMBA_TUNE_CLASS" : row);
    }
    if (t->value[TUNE_GEMM_VW] == VW_AUTO) {
        cl_uint w = 4;
        if (clGetDeviceInfo(ctx->dev.device, CL_DEVICE_PREFERRED_VECTOR_WIDTH_FLOAT, sizeof w, &w, NULL) != CL_SUCCESS)
            w = 4;
        put(t, TUNE_GEMM_VW, w >= 16 ? 16 : w >= 8 ? 8 : 4, "device: preferred float width");
    }
    for (int p = 0; p < TUNE_N; p++)
        if (t->value[p] == FROM_VW) put(t, (tune_param)p, t->value[TUNE_GEMM_VW], "from gemm.vw");
    if (t->value[TUNE_GEMM_RM] == RM_AUTO) put(t, TUNE_GEMM_RM, t->value[TUNE_GEMM_VW] >= 16 ? 8 : 6, "from gemm.vw");
    if (t->value[TUNE_ATTN_QV] == QV_AUTO) put(t, TUNE_ATTN_QV, t->value[TUNE_GEMM_VW] >= 8 ? 2 : 1, "from gemm.vw");
    if (t->value[TUNE_ATTN_RK] == RK_AUTO) {
        int qv = t->value[TUNE_ATTN_QV] > 0 ? t->value[TUNE_ATTN_QV] : 1, rk = t->value[TUNE_GEMM_VW] / qv;
        put(t, TUNE_ATTN_RK, rk >= 8 ? 8 : 4, "from gemm.vw, attn.qv");
    }
    if (t->value[TUNE_GEMM_INPLACE_B_KIB] == INPLACE_AUTO)
        put(t, TUNE_GEMM_INPLACE_B_KIB, t->value[TUNE_GEMM_VW] >= 16 ? 1024 : 0, "from gemm.vw");
    if (with_tuned) load_tuned(ctx, t);
    static const char *const gemm_words[] = {"own", "clblast"};
    static const char *const path_words[] = {NULL, "sequential", "chunked", "quadratic", "seq"};
    int v;
    if ((v = env_word("ATTAMBA_GEMM", gemm_words, 2)) >= 0) put(t, TUNE_GEMM_BACKEND, v, "env ATTAMBA_GEMM");
    if ((v = env_int("ATTAMBA_NORM_GROUP", TUNE_NORM_GROUP)) >= 0) put(t, TUNE_NORM_GROUP, v, "env ATTAMBA_NORM_GROUP");
    if ((v = env_word("ATTAMBA_SSM_PATH", path_words, 5)) >= 0)
        put(t, TUNE_SSM_PATH, v == 4 ? 1 : v, "env ATTAMBA_SSM_PATH");
    return t;
}

/* rt.h's on_kernel_failure: a program failed to build or a kernel to launch. Whatever the cause, the
 * tuner's values are dropped for the defaults (they are what differs from the tested rows), with a
 * warning; 1 when there were any. */
static int drop_tuned(rt_ctx *ctx, const char *what) {
    ops_tuning *t = ctx->tuning, *d = NULL;
    int n = 0;
    for (int p = 0; t && p < TUNE_N; p++) {
        if (strcmp(t->source[p], "tuned")) continue;
        if (!d && !(d = build(ctx, 0))) return 0;
        put(t, (tune_param)p, d->value[p], "default: the tuned value failed");
        n++;
    }
    free(d);
    if (!n) return 0;
    ctx->tuning_fallbacks++;
    core_log(CORE_LOG_WARN, "%s failed on %s with the tuned kernel parameters: %d of them are off for this "
             "context, the defaults are used (run `attamba tune` again)", what, ctx->dev.info.name, n);
    return 1;
}

static ops_tuning *table(rt_ctx *ctx) {
    if (!ctx->tuning) {
        ctx->tuning = build(ctx, 1);
        ctx->on_kernel_failure = drop_tuned;
    }
    return ctx->tuning;
}

attamba_status ops_tuning_save(rt_ctx *ctx) {
    char *path = ops_tuning_path(ctx);
    if (!path)
        return rt_fail(ctx, ATTAMBA_ERR_UNSUPPORTED, "tuned values live in the kernel cache directory, which is off");
    ops_tuning *t = table(ctx);
    cJSON *o = cJSON_CreateObject(), *params = cJSON_CreateObject();
    const attamba_device_info *d = &ctx->dev.info;
    cJSON_AddStringToObject(o, "schema", "attamba-tuning");
    cJSON_AddNumberToObject(o, "version", 1);
    cJSON_AddStringToObject(o, "device", d->name);
    cJSON_AddStringToObject(o, "platform", d->platform_name);
    cJSON_AddStringToObject(o, "driver", d->driver_version);
    for (int p = 0; t && p < TUNE_N; p++)
        if (!strcmp(t->source[p], "tuned")) cJSON_AddNumberToObject(params, rows[p].name, t->value[p]);
    cJSON_AddItemToObject(o, "params", params);
    char *text = cJSON_Print(o);
    int bad = core_mkdirs(ctx->cache_dir) || !text || core_write_file_atomic(path, text);
    attamba_status s = bad ? rt_fail(ctx, ATTAMBA_ERR_IO, "cannot write the tuned values to %s", path) : ATTAMBA_OK;
    free(text);
    cJSON_Delete(o);
    free(path);
    return s;
}

int ops_tune(rt_ctx *ctx, tune_param p) {
    ops_tuning *t = table(ctx);
    if (t) return t->value[p];
    /* out of host memory for a few hundred bytes: the class value still holds */
    const char *row;
    int v = class_value(p, ops_tune_class(&ctx->dev.info), &row);
    if (v == VW_AUTO || v == FROM_VW) return 4;
    return v == RM_AUTO ? 6 : v == INPLACE_AUTO ? 0 : v == QV_AUTO ? 1 : v == RK_AUTO ? 8 : v;
}

attamba_status ops_tune_set(rt_ctx *ctx, tune_param p, int value, const char *source) {
    if (p < 0 || p >= TUNE_N) return rt_fail(ctx, ATTAMBA_ERR_INVALID_ARG, "ops_tune_set: no parameter %d", (int)p);
    if (value < rows[p].lo || value > rows[p].hi)
        return rt_fail(ctx, ATTAMBA_ERR_INVALID_ARG, "ops_tune_set: %s = %d is outside [%d, %d]", rows[p].name, value,
                       rows[p].lo, rows[p].hi);
    ops_tuning *t = table(ctx);
    if (!t) return rt_fail(ctx, ATTAMBA_ERR_OUT_OF_MEMORY, "ops_tune_set: out of host memory");
    put(t, p, value, source ? source : "set");
    return ATTAMBA_OK;
}

const char *ops_tune_source(rt_ctx *ctx, tune_param p) {
    ops_tuning *t = table(ctx);
    return t && p >= 0 && p < TUNE_N ? t->source[p] : "class";
}

int ops_tune_find(const char *name) {
    for (int p = 0; p < TUNE_N; p++)
        if (!strcmp(rows[p].name, name)) return p;
    return -1;
}

const char *ops_tune_name(tune_param p) { return p >= 0 && p < TUNE_N ? rows[p].name : "?"; }

void ops_tuning_print(rt_ctx *ctx, FILE *f) {
    const attamba_device_info *d = &ctx->dev.info;
    ops_tuning *t = table(ctx);
    fprintf(f, "device %d:%d %s (%s): class %s\n", d->platform_index, d->device_index, d->name, d->platform_name,
            class_names[t ? t->cls : ops_tune_class(d)]);
    fprintf(f, "%-16s %8s  %-30s %s\n", "parameter", "value", "from", "meaning");
    for (int p = 0; p < TUNE_N; p++) {
        fprintf(f, "%-16s %8d  %-30s %s\n", rows[p].name, ops_tune(ctx, (tune_param)p), t ? t->source[p] : "class",
                rows[p].doc);
    }
}
