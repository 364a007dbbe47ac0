/* test_config.c — config getters and their errors, diffusers folders (component, variants, sharded
 * index, pipeline with model_index.json) and the `kinema inspect` command. */
#include "kt.h"
#include "io/config.h"
#include "io/modelfolder.h"
#include "io/safetensors.h"

#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static void write_text(const char *path, const char *text) {
    FILE *f = fopen(path, "w");
    if (!f) {
        kt_fail(__FILE__, __LINE__, "cannot write %s", path);
        return;
    }
    fputs(text, f);
    fclose(f);
}

KT_TEST(config_typed_getters) {
    const char *js = "{\"_class_name\": \"UNet3DConditionModel\", \"layers_per_block\": 2, \"norm_eps\": 1e-05,"
                     " \"lambda_min_clipped\": \"-inf\", \"up\": \"+Infinity\", \"two\": 2.0, \"half\": 2.5,"
                     " \"flag\": true, \"none\": null, \"block_out_channels\": [16, 32, 32, 32],"
                     " \"down_block_types\": [\"CrossAttnDownBlock3D\", \"DownBlock3D\"], \"head\": 8,"
                     " \"nested\": {\"a\": 1}, \"betas\": [0.1, \"nan\"], \"str_num\": \"3\"}  \n";
    kn_config *c = kn_config_parse(js, strlen(js), "unet/config.json");
    KT_CHECKF(c != NULL, "%s", kn_last_error());
    if (!c)
        return;
    int64_t i;
    double d;
    int b;
    const char *s;
    KT_OK(kn_config_int(c, "layers_per_block", 0, &i));
    KT_CHECK(i == 2);
    KT_OK(kn_config_int(c, "two", 0, &i));
    KT_CHECK(i == 2);
    KT_OK(kn_config_int(c, "absent", 7, &i));
    KT_CHECK(i == 7);
    KT_OK(kn_config_int(c, "none", -3, &i));
    KT_CHECK(i == -3);
    KT_OK(kn_config_float(c, "norm_eps", 0, &d));
    KT_NEAR(d, 1e-5, 0);
    KT_OK(kn_config_float(c, "lambda_min_clipped", 0, &d));
    KT_CHECK(isinf(d) && d < 0);
    KT_OK(kn_config_float(c, "up", 0, &d));
    KT_CHECK(isinf(d) && d > 0);
    KT_OK(kn_config_float(c, "str_num", 0, &d));
    KT_CHECK(d == 3.0);
    KT_OK(kn_config_bool(c, "flag", 0, &b));
    KT_CHECK(b == 1);
    KT_OK(kn_config_str(c, "_class_name", NULL, &s));
    KT_CHECK(s && !strcmp(s, "UNet3DConditionModel"));
    int64_t ch[8];
    int n;
    KT_OK(kn_config_ints(c, "block_out_channels", ch, 8, &n));
    KT_CHECK(n == 4 && ch[0] == 16 && ch[3] == 32);
    KT_OK(kn_config_ints(c, "head", ch, 8, &n)); /* int-or-tuple */
    KT_CHECK(n == 1 && ch[0] == 8);
    KT_OK(kn_config_ints(c, "absent", ch, 8, &n));
    KT_CHECK(n == 0);
    const char *types[4];
    KT_OK(kn_config_strs(c, "down_block_types", types, 4, &n));
    KT_CHECK(n == 2 && !strcmp(types[1], "DownBlock3D"));
    double fa[4];
    KT_OK(kn_config_floats(c, "betas", fa, 4, &n));
    KT_CHECK(n == 2 && fa[0] == 0.1 && isnan(fa[1]));
    KT_CHECK(kn_config_has(c, "flag") && !kn_config_has(c, "none") && !kn_config_has(c, "absent"));
    KT_CHECK(!strcmp(kn_config_type(c, "nested"), "object"));
    KT_CHECK(kn_config_count(c) == 15 && !strcmp(kn_config_key(c, 1), "layers_per_block"));
    char buf[16];
    KT_CHECK(!strcmp(kn_config_value_str(c, "block_out_channels", buf, sizeof buf), "[16,32,32,32]"));
    char small[8];
    kn_config_value_str(c, "block_out_channels", small, sizeof small);
    KT_CHECK(strlen(small) == 7 && strstr(small, "...") != NULL);

    /* type errors name the file and the key */
    KT_CHECK(kn_config_int(c, "_class_name", 0, &i) == KN_ERR_FORMAT);
    KT_CHECK(!strcmp(kn_last_error(), "unet/config.json: '_class_name' must be an integer, got string"));
    KT_CHECK(kn_config_int(c, "half", 0, &i) == KN_ERR_FORMAT);
    KT_CHECK(strstr(kn_last_error(), "'half' must be an integer, got 2.5") != NULL);
    KT_CHECK(kn_config_float(c, "_class_name", 0, &d) == KN_ERR_FORMAT);
    KT_CHECK(strstr(kn_last_error(), "'_class_name' must be a number, got string \"UNet3DConditionModel\"") != NULL);
    KT_CHECK(kn_config_bool(c, "layers_per_block", 0, &b) == KN_ERR_FORMAT);
    KT_CHECK(strstr(kn_last_error(), "'layers_per_block' must be true or false, got 2") != NULL);
    KT_CHECK(kn_config_str(c, "flag", NULL, &s) == KN_ERR_FORMAT);
    KT_CHECK(strstr(kn_last_error(), "'flag' must be a string, got bool") != NULL);
    KT_CHECK(kn_config_ints(c, "down_block_types", ch, 8, &n) == KN_ERR_FORMAT);
    KT_CHECK(strstr(kn_last_error(), "'down_block_types'[0] must be an integer, got string") != NULL);
    KT_CHECK(kn_config_ints(c, "block_out_channels", ch, 3, &n) == KN_ERR_FORMAT);
    KT_CHECK(strstr(kn_last_error(), "has 4 values, at most 3 supported") != NULL);
    KT_CHECK(kn_config_strs(c, "block_out_channels", types, 4, &n) == KN_ERR_FORMAT);
    KT_CHECK(strstr(kn_last_error(), "'block_out_channels'[0] must be a string, got number") != NULL);
    KT_CHECK(kn_config_strs(c, "nested", types, 4, &n) == KN_ERR_FORMAT);
    KT_CHECK(strstr(kn_last_error(), "'nested' must be an array of strings, got object") != NULL);
    kn_config_free(c);
}

KT_TEST(config_parse_errors_and_fixtures) {
    static const struct { const char *text, *expect; } bad[] = {
        {"", "invalid JSON at line 1"},
        {"{\"a\": 1,\n \"b\": }", "invalid JSON at line 2"},
        {"[1, 2]", "top level must be a JSON object, got array"},
        {"{} {}", "trailing characters after the JSON value"},
        {"\"str\"", "top level must be a JSON object, got string"},
    };
    for (size_t k = 0; k < sizeof bad / sizeof bad[0]; k++) {
        kn_config *c = kn_config_parse(bad[k].text, strlen(bad[k].text), "x.json");
        KT_CHECKF(c == NULL, "case %zu parsed", k);
        kn_config_free(c);
        KT_CHECKF(strstr(kn_last_error(), bad[k].expect) && !strncmp(kn_last_error(), "x.json: ", 8),
                  "case %zu: '%s' lacks '%s'", k, kn_last_error(), bad[k].expect);
    }
    KT_CHECK(kn_config_load("/nonexistent/config.json") == NULL);
    KT_CHECK(strstr(kn_last_error(), "/nonexistent/config.json: cannot open") != NULL);

    /* the fixture configs */
    char p[1024];
    snprintf(p, sizeof p, "%s/diffusers/unet3d/config.json", kt_fixtures());
    kn_config *c = kn_config_load(p);
    KT_CHECKF(c != NULL, "%s", kn_last_error());
    int64_t ch[8];
    int n;
    const char *types[8];
    if (c) {
        KT_OK(kn_config_ints(c, "block_out_channels", ch, 8, &n));
        KT_CHECK(n == 4 && ch[0] == 16);
        KT_OK(kn_config_strs(c, "up_block_types", types, 8, &n));
        KT_CHECK(n == 4 && !strcmp(types[0], "UpBlock3D"));
        KT_CHECK(!kn_config_has(c, "num_attention_heads")); /* null */
        kn_config_free(c);
    }
    snprintf(p, sizeof p, "%s/diffusers/schedulers/dpmpp2m_eps_n10.json", kt_fixtures());
    c = kn_config_load(p);
    KT_CHECKF(c != NULL, "%s", kn_last_error());
    if (c) {
        KT_CHECK(!strcmp(kn_config_type(c, "config"), "object"));
        kn_config_free(c);
    }
}

/* Writes a safetensors file with F32 tensors named names[i], each (2) = {i, i + 0.5}. */
static void write_weights(const char *path, const char *const *names, int n, kn_dtype dt) {
    kn_st_writer *w = kn_st_writer_new();
    float v[16][2];
    uint16_t h[16][2];
    int64_t s2[1] = {2};
    for (int i = 0; i < n && i < 16; i++) {
        v[i][0] = (float)i;
        v[i][1] = (float)i + 0.5f;
        h[i][0] = kn_f32_to_f16(v[i][0]);
        h[i][1] = kn_f32_to_f16(v[i][1]);
        kn_tensor t = kn_tensor_view(dt, 1, s2, dt == KN_F16 ? (void *)h[i] : (void *)v[i]);
        KT_OK(kn_st_writer_add(w, names[i], &t));
    }
    KT_OK(kn_st_writer_write(w, path));
    kn_st_writer_free(w);
}

KT_TEST(modelfolder_sharded_variant_pipeline) {
    const char *root = kt_tmpdir();
    char p[1024], q[1024];
    /* a sharded unet: 3 tensors over 2 shards, plus an fp16 single-file variant */
    snprintf(p, sizeof p, "%s/unet", root);
    mkdir(p, 0755);
    const char *s1[] = {"conv_in.weight", "conv_in.bias"}, *s2[] = {"conv_out.weight"};
    snprintf(p, sizeof p, "%s/unet/diffusion_pytorch_model-00001-of-00002.safetensors", root);
    write_weights(p, s1, 2, KN_F32);
    snprintf(p, sizeof p, "%s/unet/diffusion_pytorch_model-00002-of-00002.safetensors", root);
    write_weights(p, s2, 1, KN_F32);
    snprintf(p, sizeof p, "%s/unet/diffusion_pytorch_model.safetensors.index.json", root);
    write_text(p, "{\"metadata\": {\"total_size\": 24}, \"weight_map\": {"
                  "\"conv_in.weight\": \"diffusion_pytorch_model-00001-of-00002.safetensors\","
                  "\"conv_in.bias\": \"diffusion_pytorch_model-00001-of-00002.safetensors\","
                  "\"conv_out.weight\": \"diffusion_pytorch_model-00002-of-00002.safetensors\"}}");
    snprintf(p, sizeof p, "%s/unet/diffusion_pytorch_model.fp16.safetensors", root);
    const char *all[] = {"conv_in.weight", "conv_in.bias", "conv_out.weight"};
    write_weights(p, all, 3, KN_F16);
    snprintf(p, sizeof p, "%s/unet/config.json", root);
    write_text(p, "{\"_class_name\": \"UNet3DConditionModel\", \"block_out_channels\": [16, 32]}");

    snprintf(p, sizeof p, "%s/unet", root);
    kn_weights *w = kn_weights_open(p);
    KT_CHECKF(w != NULL, "%s", kn_last_error());
    if (w) {
        KT_CHECK(kn_weights_nfiles(w) == 2 && kn_weights_count(w) == 3);
        KT_CHECK(strstr(kn_weights_path(w), ".safetensors.index.json") != NULL);
        kn_tensor t;
        KT_OK(kn_weights_get(w, "conv_out.weight", &t));
        KT_CHECK(t.dtype == KN_F32 && ((float *)t.data)[1] == 0.5f);
        KT_OK(kn_weights_get(w, "conv_in.bias", &t));
        KT_CHECK(((float *)t.data)[0] == 1.0f);
        KT_CHECK(kn_weights_get(w, "nope", &t) != KN_OK && strstr(kn_last_error(), "no tensor named 'nope'"));
        KT_CHECK(kn_weights_nbytes(w) == 24);
        kn_weights_close(w);
    }
    w = kn_weights_open_variant(p, "fp16");
    KT_CHECKF(w != NULL, "%s", kn_last_error());
    if (w) {
        kn_tensor t;
        KT_CHECK(kn_weights_nfiles(w) == 1 && strstr(kn_weights_path(w), ".fp16.safetensors"));
        KT_OK(kn_weights_get_f32(w, "conv_out.weight", NULL, &t));
        KT_CHECK(((float *)t.data)[0] == 2.0f && ((float *)t.data)[1] == 2.5f);
        kn_tensor_free(&t);
        kn_weights_close(w);
    }
    KT_CHECK(kn_weights_open_variant(p, "bf16") == NULL && strstr(kn_last_error(), "no bf16 weights"));

    /* a text encoder with model.safetensors, a vae with weights.safetensors, a scheduler, a tokenizer */
    const char *te[] = {"text_model.embeddings.token_embedding.weight"}, *vae[] = {"decoder.conv_in.weight"};
    snprintf(p, sizeof p, "%s/text_encoder", root);
    mkdir(p, 0755);
    snprintf(p, sizeof p, "%s/text_encoder/model.safetensors", root);
    write_weights(p, te, 1, KN_F32);
    snprintf(p, sizeof p, "%s/text_encoder/config.json", root);
    write_text(p, "{\"hidden_size\": 32}");
    snprintf(p, sizeof p, "%s/vae", root);
    mkdir(p, 0755);
    snprintf(p, sizeof p, "%s/vae/weights.safetensors", root);
    write_weights(p, vae, 1, KN_F32);
    snprintf(p, sizeof p, "%s/scheduler", root);
    mkdir(p, 0755);
    snprintf(p, sizeof p, "%s/scheduler/scheduler_config.json", root);
    write_text(p, "{\"_class_name\": \"DDIMScheduler\", \"lambda_min_clipped\": \"-inf\"}");
    snprintf(p, sizeof p, "%s/tokenizer", root);
    mkdir(p, 0755);
    snprintf(p, sizeof p, "%s/model_index.json", root);
    write_text(p, "{\"_class_name\": \"TextToVideoSDPipeline\", \"_diffusers_version\": \"0.25.1\","
                  "\"scheduler\": [\"diffusers\", \"DDIMScheduler\"], \"text_encoder\": [\"transformers\", \"CLIPTextModel\"],"
                  "\"tokenizer\": [\"transformers\", \"CLIPTokenizer\"], \"unet\": [\"diffusers\", \"UNet3DConditionModel\"],"
                  "\"vae\": [\"diffusers\", \"AutoencoderKL\"], \"safety_checker\": [null, null], \"requires_x\": false}");
    kn_pipeline_folder *pf = calloc(1, sizeof *pf);
    KT_OK(kn_pipeline_open(root, NULL, pf));
    KT_CHECK(pf->n == 5 && !strcmp(pf->cls, "TextToVideoSDPipeline") && !strcmp(pf->version, "0.25.1"));
    const kn_component *u = kn_pipeline_component(pf, "unet");
    KT_CHECK(u && !strcmp(u->cls, "UNet3DConditionModel") && strstr(u->weights, "index.json"));
    const kn_component *sc = kn_pipeline_component(pf, "scheduler");
    KT_CHECK(sc && sc->weights[0] == '\0' && strstr(sc->config, "scheduler_config.json"));
    KT_CHECK(kn_pipeline_component(pf, "safety_checker") == NULL);
    const kn_component *v = kn_pipeline_component(pf, "vae");
    KT_CHECK(v && strstr(v->weights, "vae/weights.safetensors"));
    KT_OK(kn_pipeline_open(root, "fp16", pf) == KN_OK ? KN_ERR_ARG : KN_OK); /* text_encoder has no fp16 */
    KT_CHECK(strstr(kn_last_error(), "text_encoder: no fp16 weights") != NULL);
    free(pf);

    /* the CLI on the pipeline, the sharded index and a component */
    char out[16384];
    int rc = kt_run(out, sizeof out, "%s inspect %s", kt_bin(), root);
    KT_CHECKF(rc == 0, "inspect pipeline rc %d: %s", rc, out);
    KT_CHECK(strstr(out, "diffusers pipeline TextToVideoSDPipeline (diffusers 0.25.1), 5 components") != NULL);
    KT_CHECK(strstr(out, "  unet: diffusers UNet3DConditionModel\n") != NULL);
    KT_CHECK(strstr(out, "    block_out_channels: [16,32]\n") != NULL);
    KT_CHECK(strstr(out, "diffusion_pytorch_model.safetensors.index.json: 3 tensors in 2 files, 24 B (24 bytes)") != NULL);
    KT_CHECK(strstr(out, "lambda_min_clipped: \"-inf\"") != NULL);
    snprintf(q, sizeof q, "%s/unet/diffusion_pytorch_model.safetensors.index.json", root);
    rc = kt_run(out, sizeof out, "%s inspect %s", kt_bin(), q);
    KT_CHECKF(rc == 0 && strstr(out, "conv_out.weight  F32  (2)  8\n"), "rc %d: %s", rc, out);

    /* failures: exit 1 and one line naming the problem */
    snprintf(p, sizeof p, "%s/unet/diffusion_pytorch_model-00002-of-00002.safetensors", root);
    unlink(p);
    rc = kt_run(out, sizeof out, "%s inspect %s/unet", kt_bin(), root);
    KT_CHECKF(rc == 1 && strstr(out, "diffusion_pytorch_model-00002-of-00002.safetensors (for 'conv_out.weight') is missing"),
              "rc %d: %s", rc, out);
    KT_CHECK(strchr(out, '\n') == out + strlen(out) - 1);
    snprintf(p, sizeof p, "%s/vae", root);
    snprintf(q, sizeof q, "%s/vae_moved", root);
    KT_CHECK(rename(p, q) == 0);
    rc = kt_run(out, sizeof out, "%s inspect %s", kt_bin(), root);
    KT_CHECKF(rc == 1 && strstr(out, "/vae: component 'vae' (AutoencoderKL) is listed in model_index.json but its folder is missing"),
              "rc %d: %s", rc, out);
}

KT_TEST(inspect_cli_files) {
    char out[65536];
    char p[1024];
    snprintf(p, sizeof p, "%s/diffusers/unet3d/io_case0.safetensors", kt_fixtures());
    int rc = kt_run(out, sizeof out, "%s inspect %s", kt_bin(), p);
    KT_CHECKF(rc == 0, "rc %d: %s", rc, out);
    KT_CHECK(strstr(out, "io_case0.safetensors: safetensors, 4 tensors") != NULL);
    KT_CHECK(strstr(out, "  generator = harness/diffusers_ref.py\n") != NULL);
    KT_CHECK(strstr(out, "  sample  F32  (2,4,4,16,16)  32768\n") != NULL);
    KT_CHECK(strstr(out, "  timestep  I64  (1)  8\n") != NULL);

    /* a component folder picks weights.safetensors among several .safetensors files */
    snprintf(p, sizeof p, "%s/diffusers/unet3d", kt_fixtures());
    rc = kt_run(out, sizeof out, "%s inspect %s", kt_bin(), p);
    KT_CHECKF(rc == 0, "rc %d: %s", rc, out);
    KT_CHECK(strstr(out, "config.json: UNet3DConditionModel\n") != NULL);
    KT_CHECK(strstr(out, "unet3d/weights.safetensors: ") != NULL);
    KT_CHECK(strstr(out, "  conv_in.weight  F32  (16,4,3,3)  2304\n") != NULL);

    /* malformed input: exit 1, one line on stderr */
    const char *dir = kt_tmpdir();
    snprintf(p, sizeof p, "%s/bad.safetensors", dir);
    FILE *f = fopen(p, "wb");
    if (f) {
        fwrite("\x40\0\0\0\0\0\0\0{\"w\":1}", 1, 15, f);
        fclose(f);
    }
    rc = kt_run(out, sizeof out, "%s inspect %s", kt_bin(), p);
    KT_CHECKF(rc == 1 && strstr(out, "kinema: ") == out && strstr(out, "header length 64 is longer than the 7 bytes after it"),
              "rc %d: %s", rc, out);
    KT_CHECK(strchr(out, '\n') == out + strlen(out) - 1);
    rc = kt_run(out, sizeof out, "%s inspect %s/nothing-here", kt_bin(), dir);
    KT_CHECK(rc == 1 && strstr(out, "nothing-here: no such file or folder"));
    rc = kt_run(out, sizeof out, "%s inspect --bogus x", kt_bin());
    KT_CHECK(rc == 1 && strstr(out, "unknown option '--bogus'"));
    rc = kt_run(out, sizeof out, "%s inspect", kt_bin());
    KT_CHECK(rc == 1 && strstr(out, "usage: kinema inspect"));
    snprintf(p, sizeof p, "%s/c.json", dir);
    write_text(p, "{\"a\": [1,");
    rc = kt_run(out, sizeof out, "%s inspect %s", kt_bin(), p);
    KT_CHECKF(rc == 1 && strstr(out, "c.json: invalid JSON at line 1"), "rc %d: %s", rc, out);
}

KT_TEST(modelfolder_fixture_pipeline) {
    /* a pipeline folder whose components are the fixture folders (symlinked) */
    const char *root = kt_tmpdir();
    char p[1024], q[1024];
    static const char *comps[][2] = {{"unet", "unet3d"}, {"vae", "vae"}, {"text_encoder", "clip_text_gelu"}};
    for (int i = 0; i < 3; i++) {
        snprintf(p, sizeof p, "%s/diffusers/%s", kt_fixtures(), comps[i][1]);
        snprintf(q, sizeof q, "%s/%s", root, comps[i][0]);
        KT_CHECKF(symlink(p, q) == 0, "symlink %s", q);
    }
    snprintf(p, sizeof p, "%s/model_index.json", root);
    write_text(p, "{\"_class_name\": \"TextToVideoSDPipeline\", \"text_encoder\": [\"transformers\", \"CLIPTextModel\"],"
                  " \"unet\": [\"diffusers\", \"UNet3DConditionModel\"], \"vae\": [\"diffusers\", \"AutoencoderKL\"]}");
    kn_pipeline_folder *pf = calloc(1, sizeof *pf);
    KT_OK(kn_pipeline_open(root, NULL, pf));
    for (int i = 0; i < pf->n; i++) {
        const kn_component *k = &pf->comp[i];
        kn_weights *w = kn_weights_open(k->weights);
        KT_CHECKF(w && kn_weights_count(w) > 10, "%s: %s", k->name, kn_last_error());
        kn_config *c = kn_config_load(k->config);
        KT_CHECKF(c != NULL, "%s", kn_last_error());
        if (w && !strcmp(k->name, "unet")) {
            /* the config and the weights agree: conv_in has block_out_channels[0] outputs */
            int64_t ch[8];
            int n = 0;
            kn_tensor t;
            KT_OK(kn_config_ints(c, "block_out_channels", ch, 8, &n));
            KT_OK(kn_weights_get(w, "conv_in.weight", &t));
            KT_CHECK(n >= 1 && t.ndim == 4 && t.shape[0] == ch[0]);
        }
        kn_config_free(c);
        kn_weights_close(w);
    }
    KT_CHECK(pf->n == 3);
    free(pf);
    char out[8192];
    int rc = kt_run(out, sizeof out, "%s inspect %s", kt_bin(), root);
    KT_CHECKF(rc == 0 && strstr(out, "  vae: diffusers AutoencoderKL\n") && strstr(out, "vae/weights.safetensors: "),
              "rc %d: %.300s", rc, out);
}
