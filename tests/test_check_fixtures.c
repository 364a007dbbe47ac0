/* test_check_fixtures.c — scripts/check-fixtures over shared/fixtures: every discovered check
 * passes, and a broken fixture copy is reported as failing. */
#include "kt.h"

#include <string.h>

KT_TEST(check_fixtures_all_pass_on_shared_fixtures) {
    static char out[1 << 20];
    int rc = kt_run(out, sizeof out, "KINEMA_BIN=%s scripts/check-fixtures '%s' --threads 2", kt_bin(), kt_fixtures());
    const char *last = strstr(out, " passed, ");
    while (last && strstr(last + 1, " passed, ")) last = strstr(last + 1, " passed, ");
    int passed = -1, failed = -1;
    if (last) {
        const char *b = last;
        while (b > out && b[-1] != '\n') b--;
        sscanf(b, "%d passed, %d failed", &passed, &failed);
    }
    KT_CHECKF(rc == 0 && failed == 0, "check-fixtures: rc %d, %d failed:\n%.2000s", rc, failed, out);
    /* every kind of fixture was discovered: models, schedulers, pipeline, tokenizer, TAEs */
    const char *kinds[] = {"unet3d/io_case0", "vae/encode_case0", "vae/decode_case0", "clip_text_gelu/io",
                           "clip_text_quickgelu/io", "schedulers/ddpm_eps_n10", "schedulers/dpmpp2m_v_n10",
                           "pipeline_t2v frames_uint8", "tokenizer_ref.json", "taesd/ref_", "taehv/ref_"};
    for (size_t i = 0; i < sizeof kinds / sizeof kinds[0]; i++)
        KT_CHECKF(strstr(out, kinds[i]) != NULL, "no check of %s ran", kinds[i]);
    KT_CHECKF(passed >= 300, "only %d checks passed", passed);
}

KT_TEST(check_fixtures_reports_a_wrong_reference) {
    /* a copy of the scheduler traces with one reference tensor perturbed must fail */
    char out[1 << 16];
    const char *t = kt_tmpdir();
    int rc = kt_run(out, sizeof out,
                    "mkdir -p '%s/fx' && cp -r '%s/diffusers/schedulers' '%s/fx/' && "
                    "python3 -c \"import sys,struct,json;p=sys.argv[1];b=bytearray(open(p,'rb').read());"
                    "n=struct.unpack('<Q',b[:8])[0];h=json.loads(b[8:8+n]);o=h['step002.prev_sample']['data_offsets'][0];"
                    "v=struct.unpack('<f',b[8+n+o:12+n+o])[0];b[8+n+o:12+n+o]=struct.pack('<f',v+1.0);open(p,'wb').write(b)\" "
                    "'%s/fx/schedulers/ddim_eps_n10.safetensors'",
                    t, kt_fixtures(), t, t);
    KT_CHECKF(rc == 0, "setup failed: %s", out);
    static char res[1 << 18];
    rc = kt_run(res, sizeof res, "%s check-fixtures '%s/fx'", kt_bin(), t);
    KT_CHECKF(rc != 0, "a perturbed reference passed");
    KT_CHECK(strstr(res, "FAIL") && strstr(res, "ddim_eps_n10") && strstr(res, "step002.prev_sample"));
    KT_CHECK(strstr(res, " 0 failed") == NULL && strstr(res, " failed") != NULL);
    /* an empty folder has nothing to check: not a pass */
    KT_CHECK(kt_run(res, sizeof res, "mkdir -p '%s/empty' && %s check-fixtures '%s/empty'", t, kt_bin(), t) != 0);
}
