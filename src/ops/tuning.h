/* tuning.h: every device-dependent choice of every kernel (tile sizes, work-group sizes, which
 * variant of an op), in one table: a default for each parameter and rows for device classes. An op
 * asks ops_tune(ctx, PARAM) and applies only the device's hard limits (largest work-group, local
 * memory) on top; no other file decides by device type. The table is built for a context at its
 * first use, from the class rows, then the tuner's values for this device and driver (`attamba
 * tune`), then the environment overrides ($ATTAMBA_GEMM, $ATTAMBA_NORM_GROUP, $ATTAMBA_SSM_PATH), then
 * values set later (ops_tune_set). `attamba tune --show` prints it. */
#ifndef ATTAMBA_OPS_TUNING_H
#define ATTAMBA_OPS_TUNING_H

#include <stdio.h>

#include "runtime/rt.h"

typedef enum tune_class {
    TUNE_CPU,
    TUNE_NVIDIA,      /* GPUs by vendor: they take the GPU row unless their own is set */
    TUNE_AMD,
    TUNE_INTEL_GPU,
    TUNE_GPU,         /* any other GPU */
    TUNE_ACCELERATOR, /* FPGAs and other accelerators */
    TUNE_OTHER,
    TUNE_N_CLASSES
} tune_class;

typedef enum tune_param {
    TUNE_GEMM_BACKEND,   /* 0 the own kernels, 1 CLBlast (when built with it) */
    TUNE_GEMM_KERNEL,    /* own kernel for M >= 8: 0 register tiles, 1 __local tiles */
    TUNE_GEMM_VW,        /* register tiles: vector width (4, 8, 16) */
    TUNE_GEMM_NV,        /*   vectors per row: NW = VW * NV columns per work-item */
    TUNE_GEMM_RM,        /*   rows per work-item */
    TUNE_GEMM_LT,        /* __local tiles: LT x LT block of C per group */
    TUNE_GEMM_LW,        /*   LW x LW work-items per group */
    TUNE_GEMM_KT,        /*   KT-deep slices */
    TUNE_GEMM_KC_KIB,    /* register tiles: KiB of a packed panel of B per pass over K (0: one pass) */
    TUNE_GEMM_PB,        /*   panels per block of the launch order */
    TUNE_GEMM_INPLACE_B_KIB, /* register tiles: a plain f32 B smaller than this is read in place, not packed */
    TUNE_GEMM_DOT_M,     /* A B^T with fewer rows than this (decode) takes the dot-product kernels */
    TUNE_GEMM_DOT_RM,    /*   rows of A per work-item there (at most) */
    TUNE_ATTN_LONG_KIB,  /* prefill: __local key tiles and the long query block when the keys every
                            query of a block shares exceed this many KiB of K + V per head */
    TUNE_ATTN_BQ_LONG,   /*   queries per group then */
    TUNE_ATTN_BQ_SHORT,  /*   queries per group otherwise */
    TUNE_ATTN_TK,        /*   keys per tile */
    TUNE_ATTN_DECODE_WG, /* decode attention: work-items per (sequence, head) */
    TUNE_ATTN_DECODE_GROUPS, /*   work-groups per compute unit wanted: fewer (sequence, head) pairs split
                                their keys (split-K; 0: never) */
    TUNE_ATTN_DECODE_SPLIT_KEYS, /* at least this many keys per split */
    TUNE_ATTN_SLICES,    /* attention prefill, decode, backward: head dims split over work-items (0: a row each) */
    TUNE_ATTN_RQ,        /* dense causal prefill: queries per work-item with the keys along the lanes (0: off) */
    TUNE_ATTN_QV,        /* compressed and sliding prefill: float8s of queries per work-item along the lanes (0: off) */
    TUNE_ATTN_RK,        /* the same kernel: keys per group (4 to 8) */
    TUNE_ATTN_GEMM_BQ,   /* prefill and backward attention through the GEMM: queries per block (0: off) */
    TUNE_ATTN_GEMM_WASTE, /*   ... only while its scores are at most this many % of the pairs the mask allows */
    TUNE_ATTN_GEMM_ROW_WINDOW, /*   compressed windows up to this: each query's window keys in the row pass */
    TUNE_BWD_BQ,         /* prefill attention backward: queries per group (dq pass) */
    TUNE_BWD_TK,         /*   keys per tile */
    TUNE_BWD_BK,         /*   keys per group (dk/dv pass) */
    TUNE_BWD_TQ,         /*   queries per tile */
    TUNE_BWD_LOCAL,      /*   1: tiles through __local */
    TUNE_BWD_PER_ITEM,   /*   1: each work-item walks its own rows (without __local) */
    TUNE_BWD_VW,         /*   head-dim vector width of a work-item's rows: at most this (0: 16) */
    TUNE_NORM_GROUP,     /* norms and row reductions: the largest work-group */
    TUNE_SUMSQ_SPLIT,    /* sum of squares: 0 contiguous chunks per work-item, 1 interleaved */
    TUNE_SSM_PATH,       /* scan: 0 by the rules below, 1 sequential, 2 chunked, 3 quadratic */
    TUNE_SSM_QUAD_MAX,   /*   quadratic while the longest segment has at most this many tokens */
    TUNE_SSM_QUAD_HEADS, /*   quadratic: heads per work-item */
    TUNE_SSM_PER_CU,     /*   sequential while there are this many scans per compute unit */
    TUNE_SSM_VP,         /*   channels per work-item as one vector (1: one channel, its state along the lanes) */
    TUNE_SSM_DECODE_WG,  /* SSM decode step: the largest work-group */
    TUNE_SSM_DECODE_APPEND, /*   with the out_proj, RoPE and cache append in one launch, up to this many
                               sequences (0: never) */
    TUNE_CONV_TT,        /* conv1d prefill and backward: tokens per work-item */
    TUNE_CONV_VC,        /*   channels per work-item as one vector (4, 8 or 16) */
    TUNE_N
} tune_param;

/* The class of a device (type, then vendor for GPUs). */
tune_class ops_tune_class(const attamba_device_info *d);
const char *ops_tune_class_name(tune_class c);
/* The value of p on ctx's device. */
int ops_tune(rt_ctx *ctx, tune_param p);
/* Overrides p on ctx (tests, a tuner); `source` says where the value came from (copied). A value
 * outside the parameter's range is refused (ATTAMBA_ERR_INVALID_ARG, message on ctx). */
attamba_status ops_tune_set(rt_ctx *ctx, tune_param p, int value, const char *source);
/* Where p's value on ctx came from ("cpu", "gpu", "default", "tuned", "env ...", a setter's label). */
const char *ops_tune_source(rt_ctx *ctx, tune_param p);
/* The parameter named `name` ("gemm.rm"), or -1. */
int ops_tune_find(const char *name);
const char *ops_tune_name(tune_param p);
/* Where the tuner's values for ctx's device and driver live: <cache dir>/tuning-<hash>.json, or NULL
 * when the cache is off. They are loaded when the table is built (source "tuned"), after the class
 * rows and before the environment. */
char *ops_tuning_path(rt_ctx *ctx);
/* Writes every value whose source is "tuned" to ops_tuning_path (through a temporary and a rename). */
attamba_status ops_tuning_save(rt_ctx *ctx);
/* The table in force on ctx: class, then per parameter its name, value, source and meaning. */
void ops_tuning_print(rt_ctx *ctx, FILE *f);

#endif
