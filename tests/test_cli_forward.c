/* test_cli_forward.c — `kinema forward` on the fixture components: the written outputs equal the
 * references, and bad input fails with one line. */
#include "kt.h"

#include "io/safetensors.h"

#include <string.h>

static void check_out(const char *out_path, const char *ref_path, const char *out_name, const char *ref_name,
                      double rel, int elementwise) {
    kn_safetensors *o = kn_st_open(out_path), *r = kn_st_open(ref_path);
    KT_CHECKF(o && r, "%s", kn_last_error());
    if (o && r) {
        kn_tensor a, b;
        KT_OK(kn_st_get(o, out_name, &a));
        KT_OK(kn_st_get(r, ref_name, &b));
        if (kn_tensor_numel(&a) == kn_tensor_numel(&b)) {
            int64_t n = kn_tensor_numel(&a);
            if (elementwise) {
                int bad = 0;
                for (int64_t i = 0; i < n; i++)
                    bad += !(fabsf(((float *)a.data)[i] - ((float *)b.data)[i]) <= rel + rel * fabsf(((float *)b.data)[i]));
                KT_CHECKF(bad == 0, "%s: %d elements out of tolerance", out_name, bad);
            } else {
                double e = kt_max_abs_diff(a.data, b.data, n), t = rel * kt_max_abs(b.data, n);
                KT_CHECKF(e <= t, "%s: max err %g > %g", out_name, e, t);
            }
        } else {
            KT_CHECKF(0, "%s: %lld values, reference %lld", out_name, (long long)kn_tensor_numel(&a),
                      (long long)kn_tensor_numel(&b));
        }
    }
    if (o) kn_st_close(o);
    if (r) kn_st_close(r);
}

KT_TEST(cli_forward_components_match_fixtures) {
    char out[4096], o[700], in[700];
    const char *fx = kt_fixtures();
    snprintf(o, sizeof o, "%s/o.safetensors", kt_tmpdir());
    /* unet, component folder */
    snprintf(in, sizeof in, "%s/diffusers/unet3d/io_case0.safetensors", fx);
    int rc = kt_run(out, sizeof out, "%s forward -m %s/diffusers/unet3d -c unet -i %s -o %s --repeat 2", kt_bin(), fx, in, o);
    KT_CHECKF(rc == 0 && strstr(out, "ms/run"), "%s", out);
    check_out(o, in, "out.sample", "out.sample", 1e-4, 0);
    /* vae decode and encode */
    snprintf(in, sizeof in, "%s/diffusers/vae/decode_case0.safetensors", fx);
    rc = kt_run(out, sizeof out, "%s forward -m %s/diffusers/vae -c vae-decode -i %s -o %s", kt_bin(), fx, in, o);
    KT_CHECKF(rc == 0, "%s", out);
    check_out(o, in, "sample", "sample", 1e-4, 0);
    snprintf(in, sizeof in, "%s/diffusers/vae/encode_case0.safetensors", fx);
    rc = kt_run(out, sizeof out, "%s forward -m %s/diffusers/vae -c vae-encode -i %s -o %s", kt_bin(), fx, in, o);
    KT_CHECKF(rc == 0, "%s", out);
    check_out(o, in, "mean", "mean", 1e-4, 0);
    check_out(o, in, "logvar", "logvar", 1e-4, 0);
    /* text encoder */
    snprintf(in, sizeof in, "%s/diffusers/clip_text_quickgelu/io.safetensors", fx);
    rc = kt_run(out, sizeof out, "%s forward -m %s/diffusers/clip_text_quickgelu -c text-encoder -i %s -o %s", kt_bin(),
                fx, in, o);
    KT_CHECKF(rc == 0, "%s", out);
    check_out(o, in, "last_hidden_state", "last_hidden_state", 1e-4, 0);
    /* TAESD decoder from a weights file, on inputs renamed from the fixture's "randn.latents" */
    char lat[700];
    snprintf(lat, sizeof lat, "%s/lat.safetensors", kt_tmpdir());
    rc = kt_run(out, sizeof out,
                "/usr/bin/env python3 -c \"import struct,json,sys;b=open(sys.argv[1],'rb').read();n=struct.unpack('<Q',b[:8])[0];"
                "h=json.loads(b[8:8+n]);e=h['randn.latents'];o0,o1=e['data_offsets'];d=b[8+n+o0:8+n+o1];"
                "hh=json.dumps({'latents':{'dtype':'F32','shape':e['shape'],'data_offsets':[0,len(d)]}}).encode();"
                "hh+=b' '*((8-len(hh)%%8)%%8);open(sys.argv[2],'wb').write(struct.pack('<Q',len(hh))+hh+d)\" "
                "%s/taesd/ref_public.safetensors %s", fx, lat);
    KT_CHECKF(rc == 0, "%s", out);
    rc = kt_run(out, sizeof out, "%s forward -m %s/taesd/taef2_decoder.safetensors -c taesd-decode -i %s -o %s", kt_bin(),
                fx, lat, o);
    KT_CHECKF(rc == 0, "%s", out);
    snprintf(in, sizeof in, "%s/taesd/ref_public.safetensors", fx);
    check_out(o, in, "decoded", "randn.decoded", 1e-4, 1);
}

KT_TEST(cli_forward_bad_input_fails_cleanly) {
    char out[4096];
    const char *fx = kt_fixtures();
    struct { const char *args, *msg; } cases[] = {
        {"-c unet -i X -o Y", "required"},
        {"-m M/diffusers/unet3d -c bogus -i X -o Y", "unknown component"},
        {"-m M/diffusers/unet3d -c unet -i /nonexistent.safetensors -o Y", "/nonexistent.safetensors"},
        {"-m M/diffusers/unet3d -c unet -i M/diffusers/vae/decode_case0.safetensors -o Y", "no input tensor"},
        {"-m M/diffusers/vae -c unet -i M/diffusers/unet3d/io_case0.safetensors -o Y", "UNet3DConditionModel"},
        {"-m M/diffusers/unet3d -c unet -i M/diffusers/unet3d/io_case0.safetensors -o /nonexistent/o.st", "/nonexistent"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char args[1200], *p;
        snprintf(args, sizeof args, "%s", cases[i].args);
        char exp[2400] = "";
        for (char *s = args; (p = strchr(s, 'M')) && p[1] == '/';) { /* M/ -> fixtures/ */
            strncat(exp, s, (size_t)(p - s));
            strcat(exp, fx);
            s = p + 1;
            if (!strchr(s, 'M') || strchr(s, 'M')[1] != '/') { strcat(exp, s); break; }
        }
        if (!exp[0]) snprintf(exp, sizeof exp, "%s", args);
        int rc = kt_run(out, sizeof out, "%s forward %s", kt_bin(), exp);
        KT_CHECKF(rc != 0 && strstr(out, cases[i].msg) && strchr(out, '\n') == strrchr(out, '\n'),
                  "case %zu (%s): rc %d, %s", i, exp, rc, out);
    }
}
