/* libFuzzer target: config.json text -> model_config_from_json (parse + validate), then the size
 * arithmetic every command runs on a loaded config. Built by scripts/fuzz.sh (clang). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "model/config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t n) {
    char *text = malloc(n + 1);
    if (!text) return 0;
    memcpy(text, data, n);
    text[n] = 0;
    model_config c;
    char err[600];
    if (model_config_from_json(text, &c, err, sizeof err) == ATTAMBA_OK) {
        volatile int64_t sink = model_config_param_count(&c) + model_config_cache_bytes(&c, 4096, 2);
        volatile double f = model_config_key_visits(&c, 257) + model_config_attention_flops(&c, 257);
        (void)sink;
        (void)f;
    }
    free(text);
    return 0;
}
