/* Model files: config JSON (validation names the field), parameter counts (SPEC 5), cache bytes
 * (SPEC 4), safetensors round trips and every kind of corrupt weight file. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <math.h>

#include "model/config.h"
#include "model/safetensors.h"
#include "model/weights.h"
#include "model/tokenizer.h"
#include "testutil.h"

static char tmpdir[64];

static const char *tmp_path(const char *name) {
    static char buf[4][256];
    static int k;
    if (!tmpdir[0]) {
        strcpy(tmpdir, "/tmp/attamba-io-XXXXXX");
        ck_assert_ptr_nonnull(mkdtemp(tmpdir));
    }
    k = (k + 1) % 4;
    snprintf(buf[k], sizeof buf[k], "%s/%s", tmpdir, name);
    return buf[k];
}

START_TEST(paper_60m_parameter_counts_match_spec) {
    model_config c;
    ck_assert_int_eq(model_config_preset("paper-60m", &c, NULL, 0), ATTAMBA_OK);
    ck_assert_int_eq(model_config_param_count(&c), 62751488);
    weight_info *w;
    int n;
    ck_assert_int_eq(weights_list(&c, &w, &n), ATTAMBA_OK);
    int64_t sum = 0;
    for (int i = 0; i < n; i++) sum += w[i].shape[0] * (w[i].ndim == 2 ? w[i].shape[1] : 1);
    ck_assert_int_eq(sum, 62751488);
    free(w);
    c.kind = MODEL_TRANSFORMER;
    ck_assert_int_eq(model_config_param_count(&c), 60039680);
}
END_TEST

/* Finding 10 of the hardening campaign: generate refused paper-60m models (bos/eos 1/2 against the
 * byte tokenizer's 256/257). Every preset must make a model the byte tokenizer accepts. */
START_TEST(every_preset_makes_a_model_the_byte_tokenizer_accepts) {
    const char *presets[] = {"tiny", "small", "paper-60m"};
    for (size_t i = 0; i < sizeof presets / sizeof presets[0]; i++) {
        model_config c;
        ck_assert_int_eq(model_config_preset(presets[i], &c, NULL, 0), ATTAMBA_OK);
        tokenizer *t = NULL;
        char err[300];
        ck_assert_msg(tokenizer_create("bytes", c.vocab_size, c.bos_id, c.eos_id, &t, err, sizeof err) == ATTAMBA_OK,
                      "%s: %s", presets[i], err);
        tokenizer_destroy(t);
    }
}
END_TEST

START_TEST(cache_bytes_follow_spec_formula) {
    model_config c;
    model_config_preset("paper-60m", &c, NULL, 0);
    c.boundaries = BOUNDARY_UNIFORM;
    int64_t T = 4096, d = 512, nb = 1 + T / 8; /* 0 plus 7, 15, ..., 4095 */
    int64_t constant = 2 * (3 * (256 + 64) + 256 * 32) * 4;
    ck_assert_int_eq(model_config_cache_bytes(&c, T, 4), 8 * ((nb + 8 + 1) * 2 * d * 4 + constant));
    /* f16 store: the boundaries at 2 bytes, the ring (L + 1 rows) and the SSM states still f32 */
    ck_assert_int_eq(model_config_cache_bytes(&c, T, 2), 8 * ((nb * 2 + (8 + 1) * 4) * 2 * d + constant));
    c.kind = MODEL_TRANSFORMER;
    ck_assert_int_eq(model_config_cache_bytes(&c, T, 4), 8 * T * 2 * d * 4);
    ck_assert_int_eq(model_config_cache_bytes(&c, T, 2), 8 * T * 2 * d * 2);
    c.kind = MODEL_TRANSFORMER_SWA; /* the ring only */
    ck_assert_int_eq(model_config_cache_bytes(&c, T, 4), 8 * 9 * 2 * d * 4);
    ck_assert_int_eq(model_config_cache_bytes(&c, T, 2), 8 * 9 * 2 * d * 4);
}
END_TEST

START_TEST(config_json_round_trips) {
    model_config c, back;
    model_config_preset("small", &c, NULL, 0);
    c.boundaries = BOUNDARY_RANDOM;
    c.boundary_seed = 99;
    c.ssm_dt_bias = 1;
    char err[256];
    ck_assert_int_eq(model_config_save(&c, tmp_path("c.json"), err, sizeof err), ATTAMBA_OK);
    ck_assert_int_eq(model_config_load(tmp_path("c.json"), &back, err, sizeof err), ATTAMBA_OK);
    ck_assert(memcmp(&c, &back, sizeof c) == 0);
    ck_assert_int_eq(model_config_from_json("{\"kind\":\"attamba\",\"boundaries\":[3,7,11]}", &back, err, sizeof err),
                     ATTAMBA_OK);
    ck_assert_int_eq(back.boundaries, BOUNDARY_EXPLICIT);
    ck_assert_int_eq(back.n_explicit, 3);
    ck_assert_int_eq(back.explicit_positions[2], 11);
}
END_TEST

static const struct {
    const char *json, *field;
} bad_configs[] = {
    {"{\"n_heads\": 0}", "n_heads"},
    {"{\"n_heads\": 4, \"n_kv_heads\": 3}", "n_kv_heads"},
    {"{\"dim\": 48}", "dim"},
    {"{\"head_dim\": 15, \"dim\": 60}", "head_dim"},
    {"{\"ssm_heads\": 5}", "ssm_heads"},
    {"{\"ssm_groups\": 3}", "ssm_groups"},
    {"{\"chunk\": 0}", "chunk"},
    {"{\"window\": -1}", "window"},
    {"{\"kind\": \"mamba\"}", "kind"},
    {"{\"n_layers\": 2.5}", "n_layers"},
    {"{\"n_layers\": \"two\"}", "n_layers"},
    {"{\"pseudo\": 1}", "pseudo"},
    {"{\"nlayers\": 2}", "nlayers"},
    {"{\"boundaries\": \"sometimes\"}", "boundaries"},
    {"{\"boundaries\": [5, 3]}", "boundaries"},
    {"{\"boundaries\": [1, -2]}", "boundaries"},
    {"{\"tokenizer\": \"bpe\"}", "tokenizer"},
    {"{\"eos_id\": 300}", "eos_id"},
    /* finding 4/5 of the hardening campaign: sizes whose products overflow, or absurd ones */
    {"{\"n_layers\": 2147483647}", "n_layers"},
    {"{\"window\": 2147483647}", "window"},
    {"{\"head_dim\": 1073741824}", "head_dim"},
    {"{\"vocab_size\": 2000000000}", "vocab_size"},
    {"{\"n_heads\": 4096, \"n_kv_heads\": 4096, \"head_dim\": 256}", "n_heads"},
    {"{\"n_layers\": 1e12}", "n_layers"},
    {"[1, 2]", "JSON object"},
    {"{\"dim\": 64", "JSON object"},
};

START_TEST(bad_configs_are_refused_naming_the_field) {
    model_config c;
    char err[400] = "";
    attamba_status s = model_config_from_json(bad_configs[_i].json, &c, err, sizeof err);
    ck_assert_msg(s == ATTAMBA_ERR_FORMAT, "%s was accepted", bad_configs[_i].json);
    ck_assert_msg(strstr(err, bad_configs[_i].field) != NULL, "message for %s does not name %s: %s",
                  bad_configs[_i].json, bad_configs[_i].field, err);
}
END_TEST

START_TEST(missing_config_file_is_an_io_error) {
    model_config c;
    char err[256];
    ck_assert_int_eq(model_config_load("/nonexistent/config.json", &c, err, sizeof err), ATTAMBA_ERR_IO);
    ck_assert_ptr_nonnull(strstr(err, "/nonexistent/config.json"));
}
END_TEST

START_TEST(weights_round_trip_through_safetensors) {
    rt_ctx *ctx = tu_ctx();
    model_config c;
    model_config_default(&c);
    model_weights w, back;
    tu_ok(weights_alloc(ctx, &c, &w));
    float *host = malloc((size_t)w.numel * sizeof *host);
    weights_init_host(&c, w.info, w.n, 7, host);
    tu_ok(tensor_upload(&w.flat, host));
    char err[256];
    ck_assert_int_eq(weights_save(&w, tmp_path("w.safetensors"), err, sizeof err), ATTAMBA_OK);
    ck_assert_int_eq(weights_load(ctx, &c, tmp_path("w.safetensors"), &back, err, sizeof err), ATTAMBA_OK);
    float *got = tu_download(&back.flat);
    ck_assert(memcmp(got, host, (size_t)w.numel * sizeof *host) == 0);
    const tensor *wq = weights_get(&back, "layers.1.attention.wq.weight");
    ck_assert_ptr_nonnull(wq);
    ck_assert_int_eq(wq->shape[0], 64);
    ck_assert_ptr_null(weights_get(&back, "layers.1.attention.wk.weight"));
    /* init statistics: norms are ones, matrices have std ~ fan_in^-1/2 */
    const weight_info *emb = &w.info[0];
    double ss = 0;
    for (int64_t i = 0; i < emb->shape[0] * emb->shape[1]; i++) ss += (double)host[i] * host[i];
    double std = sqrt(ss / (double)(emb->shape[0] * emb->shape[1]));
    ck_assert_msg(std > 0.8 / 8 && std < 1.0 / 8, "embedding std %.4f, want ~0.125 * 0.88 (truncated)", std);
    free(got);
    free(host);
    weights_free(&w);
    weights_free(&back);
}
END_TEST

/* Writes a safetensors file with a given header and data bytes. */
static void write_raw(const char *path, const char *header, uint64_t declared_len, const void *data, size_t n) {
    FILE *f = fopen(path, "wb");
    ck_assert_ptr_nonnull(f);
    unsigned char len[8];
    for (int i = 0; i < 8; i++) len[i] = (unsigned char)(declared_len >> (8 * i));
    fwrite(len, 1, 8, f);
    fwrite(header, 1, strlen(header), f);
    if (n) fwrite(data, 1, n, f);
    fclose(f);
}

START_TEST(f16_and_bf16_files_are_converted) {
    /* 1.0, -2.0, 0.5 and a subnormal in f16; 1.0, -3.0 in bf16 */
    uint16_t half[4] = {0x3c00, 0xc000, 0x3800, 0x0001};
    uint16_t bf[2] = {0x3f80, 0xc040};
    unsigned char data[12];
    memcpy(data, half, 8);
    memcpy(data + 8, bf, 4);
    const char *h = "{\"a\":{\"dtype\":\"F16\",\"shape\":[4],\"data_offsets\":[0,8]},"
                    "\"b\":{\"dtype\":\"BF16\",\"shape\":[2],\"data_offsets\":[8,12]}}";
    write_raw(tmp_path("h.st"), h, strlen(h), data, sizeof data);
    st_file f;
    char err[256];
    ck_assert_int_eq(st_open(tmp_path("h.st"), &f, err, sizeof err), ATTAMBA_OK);
    float a[4], b[2];
    st_read_f32(&f, st_find(&f, "a"), a);
    st_read_f32(&f, st_find(&f, "b"), b);
    ck_assert_float_eq(a[0], 1.0f);
    ck_assert_float_eq(a[1], -2.0f);
    ck_assert_float_eq(a[2], 0.5f);
    ck_assert_float_eq(a[3], 5.9604645e-08f);
    ck_assert_float_eq(b[0], 1.0f);
    ck_assert_float_eq(b[1], -3.0f);
    st_close(&f);
}
END_TEST

static const struct {
    const char *what, *header;
    int64_t len_delta;  /* added to the true header length in the length field */
    size_t data_bytes;
    const char *expect;
} corrupt[] = {
    {"truncated data", "{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}", 0, 8, "outside"},
    {"offsets past the end", "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[100,108]}}", 0, 16, "outside"},
    {"overlapping tensors",
     "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},\"b\":{\"dtype\":\"F32\",\"shape\":[2],"
     "\"data_offsets\":[4,12]}}", 0, 16, "overlap"},
    {"header larger than the file", "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 1000, 4,
     "does not fit"},
    {"unknown dtype", "{\"a\":{\"dtype\":\"I64\",\"shape\":[1],\"data_offsets\":[0,8]}}", 0, 8, "dtype"},
    {"shape and offsets disagree", "{\"a\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}", 0, 8, "bytes"},
    {"header is not JSON", "{\"a\": nope", 0, 8, "JSON"},
    {"missing fields", "{\"a\":{\"dtype\":\"F32\"}}", 0, 8, "data_offsets"},
    {"negative shape", "{\"a\":{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,4]}}", 0, 8, "shape"},
};

START_TEST(corrupt_safetensors_are_refused) {
    unsigned char zeros[64] = {0};
    const char *path = tmp_path("bad.st");
    write_raw(path, corrupt[_i].header, (uint64_t)((int64_t)strlen(corrupt[_i].header) + corrupt[_i].len_delta), zeros,
              corrupt[_i].data_bytes);
    st_file f;
    char err[400] = "";
    ck_assert_msg(st_open(path, &f, err, sizeof err) == ATTAMBA_ERR_FORMAT, "%s was accepted", corrupt[_i].what);
    ck_assert_msg(strstr(err, corrupt[_i].expect) != NULL, "%s: message '%s' lacks '%s'", corrupt[_i].what, err,
                  corrupt[_i].expect);
    ck_assert_ptr_nonnull(strstr(err, path));
}
END_TEST

START_TEST(tiny_and_empty_files_are_refused) {
    st_file f;
    char err[256];
    write_raw(tmp_path("short.st"), "", 0, NULL, 0);
    ck_assert_int_eq(st_open(tmp_path("short.st"), &f, err, sizeof err), ATTAMBA_ERR_FORMAT);
    FILE *fp = fopen(tmp_path("three.st"), "wb");
    fputs("abc", fp);
    fclose(fp);
    ck_assert_int_eq(st_open(tmp_path("three.st"), &f, err, sizeof err), ATTAMBA_ERR_FORMAT);
    ck_assert_int_eq(st_open("/nonexistent.st", &f, err, sizeof err), ATTAMBA_ERR_IO);
}
END_TEST

START_TEST(weights_that_disagree_with_the_config_are_refused) {
    rt_ctx *ctx = tu_ctx();
    model_config c, other;
    model_config_default(&c);
    model_weights w, back;
    tu_ok(weights_alloc(ctx, &c, &w));
    tu_ok(tensor_fill(&w.flat, 0.5));
    char err[400];
    ck_assert_int_eq(weights_save(&w, tmp_path("w2.safetensors"), err, sizeof err), ATTAMBA_OK);
    /* a wider FFN: shapes disagree */
    other = c;
    other.ffn_dim = 96;
    ck_assert_int_eq(weights_load(ctx, &other, tmp_path("w2.safetensors"), &back, err, sizeof err), ATTAMBA_ERR_FORMAT);
    ck_assert_ptr_nonnull(strstr(err, "feed_forward"));
    ck_assert_ptr_nonnull(strstr(err, "[128, 64]"));
    /* a third layer: missing tensors */
    other = c;
    other.n_layers = 3;
    ck_assert_int_eq(weights_load(ctx, &other, tmp_path("w2.safetensors"), &back, err, sizeof err), ATTAMBA_ERR_FORMAT);
    ck_assert_ptr_nonnull(strstr(err, "missing tensor 'layers.2."));
    /* tied embeddings: output.weight is one tensor too many */
    other = c;
    other.tie_embeddings = 1;
    ck_assert_int_eq(weights_load(ctx, &other, tmp_path("w2.safetensors"), &back, err, sizeof err), ATTAMBA_ERR_FORMAT);
    ck_assert_ptr_nonnull(strstr(err, "output.weight"));
    uint64_t cur;
    weights_free(&w);
    attamba_context_memory(ctx, &cur, NULL);
    ck_assert_uint_eq(cur, 0); /* failed loads leave nothing allocated */
}
END_TEST

int main(void) {
    Suite *s = suite_create("model_io");
    TCase *t = tcase_create("config");
    tcase_add_test(t, paper_60m_parameter_counts_match_spec);
    tcase_add_test(t, cache_bytes_follow_spec_formula);
    tcase_add_test(t, every_preset_makes_a_model_the_byte_tokenizer_accepts);
    tcase_add_test(t, config_json_round_trips);
    tcase_add_loop_test(t, bad_configs_are_refused_naming_the_field, 0, (int)(sizeof bad_configs / sizeof bad_configs[0]));
    tcase_add_test(t, missing_config_file_is_an_io_error);
    suite_add_tcase(s, t);
    t = tcase_create("weights");
    tcase_add_test(t, weights_round_trip_through_safetensors);
    tcase_add_test(t, f16_and_bf16_files_are_converted);
    tcase_add_loop_test(t, corrupt_safetensors_are_refused, 0, (int)(sizeof corrupt / sizeof corrupt[0]));
    tcase_add_test(t, tiny_and_empty_files_are_refused);
    tcase_add_test(t, weights_that_disagree_with_the_config_are_refused);
    suite_add_tcase(s, t);
    return tu_run(s);
}
