/* attamba_model_create: a model of a config object with seeded random weights, on one device or with
 * its layers split over several (include/attamba/attamba.h). */
#include "model.h"

attamba_status attamba_model_create(const attamba_config *c, const attamba_model_params *p, uint64_t seed,
                                    attamba_model **out) {
    *out = NULL;
    if (!p || !p->devices || p->n_devices < 1 || !p->devices[0]) return ATTAMBA_ERR_INVALID_ARG;
    rt_ctx *ctx = p->devices[0];
    if (!c) return rt_fail(ctx, ATTAMBA_ERR_INVALID_ARG, "attamba_model_create: NULL config");
    model *m = NULL;
    if (p->split_mode == ATTAMBA_SPLIT_LAYER) {
        RT_TRY(model_create_split(p->devices, p->n_devices, &c->c, p->tensor_split, &m));
    } else if (p->split_mode == ATTAMBA_SPLIT_NONE && p->n_devices == 1) {
        RT_TRY(model_create(ctx, &c->c, &m));
    } else {
        return rt_fail(ctx, ATTAMBA_ERR_INVALID_ARG,
                       "attamba_model_create: %d devices with split mode %d (one device, or ATTAMBA_SPLIT_LAYER; "
                       "split rows is for saved models: attamba_model_load_with)", p->n_devices, (int)p->split_mode);
    }
    attamba_status s = model_init_random(m, seed);
    if (s) model_destroy(m);
    else *out = m;
    return s;
}

void attamba_context_memory_reset_peak(attamba_context *ctx) { ctx->mem_peak = ctx->mem_current; }
