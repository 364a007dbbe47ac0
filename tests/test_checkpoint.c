/* test_checkpoint.c — exact resume: a toy training loop (linear model on Philox data, MSE, AdamW +
 * clipping + warm-up/cosine LR + EMA) run straight vs. interrupted + restored must give the same
 * bits; a SIGKILLed child's last checkpoint resumes to the same bits; corrupt or mismatched
 * checkpoints are rejected with clear errors. */
#include "kt.h"

#include "io/checkpoint_io.h"
#include "io/safetensors.h"

#include <dirent.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

enum { IN = 16, OUT = 8, B = 32, STEPS = 20 };

typedef struct {
    kn_params P;
    kn_adamw opt;
    kn_ema ema;
    kn_train_state S;
    kn_lr_schedule lr;
    kn_arena *A;
    float wtrue[OUT * IN];
} toy;

static void toy_init(toy *t, uint64_t init_seed) {
    memset(t, 0, sizeof *t);
    int64_t ws[2] = {OUT, IN}, bs[1] = {OUT};
    kn_param_decl(&t->P, 2, ws, "lin.weight");
    kn_param_decl(&t->P, 1, bs, "lin.bias");
    KN_ASSERT(kn_params_alloc(&t->P) == KN_OK && kn_params_alloc_grads(&t->P) == KN_OK);
    kn_params_init_default(&t->P, init_seed);
    kn_adamw_config oc = {1e-1, 0.9, 0.999, 1e-8, 0.05, 1};
    KN_ASSERT(kn_adamw_init(&t->opt, &oc, &t->P) == KN_OK);
    KN_ASSERT(kn_ema_init(&t->ema, &t->P, 0.95, 1) == KN_OK);
    kn_lr_schedule ls = {1e-1, 1e-2, 4, STEPS};
    t->lr = ls;
    t->S.P = &t->P;
    t->S.opt = &t->opt;
    t->S.ema = &t->ema;
    t->S.n_rng = 2;
    t->S.rng[0] = 12345; /* data seed */
    t->S.rng[1] = 0;     /* data stream offset */
    t->S.config_json = "{\"model\":\"toy-linear\",\"lr\":0.1,\"batch\":32}";
    t->A = kn_arena_new(1 << 20);
    kn_randn_fill(t->wtrue, OUT * IN, 777, 0);
}

static void toy_free(toy *t) {
    kn_adamw_free(&t->opt);
    kn_ema_free(&t->ema);
    kn_params_free(&t->P);
    kn_arena_free(t->A);
}

/* One step; returns the loss before the update. */
static double toy_step(toy *t) {
    kn_arena_reset(t->A, 0);
    int64_t xs[2] = {B, IN}, ys[2] = {B, OUT};
    kn_tensor x, y, pred, dpred;
    memset(&pred, 0, sizeof pred);
    KN_ASSERT(kn_tensor_alloc(t->A, &x, KN_F32, 2, xs) == KN_OK);
    KN_ASSERT(kn_tensor_alloc(t->A, &y, KN_F32, 2, ys) == KN_OK);
    KN_ASSERT(kn_tensor_zeros(t->A, &dpred, KN_F32, 2, ys) == KN_OK);
    kn_randn_fill(x.data, B * IN, (uint64_t)t->S.rng[0], (uint64_t)t->S.rng[1]);
    kn_randn_fill(y.data, B * OUT, (uint64_t)t->S.rng[0] + 1, (uint64_t)t->S.rng[1]);
    t->S.rng[1] += B * IN;
    float *xd = x.data, *yd = y.data;
    for (int r = 0; r < B; r++) /* y = Wtrue x + 0.1 noise */
        for (int o = 0; o < OUT; o++) {
            float s = 0.1f * yd[r * OUT + o];
            for (int i = 0; i < IN; i++)
                s += t->wtrue[o * IN + i] * xd[r * IN + i];
            yd[r * OUT + o] = s;
        }
    kn_var *w = &t->P.items[0]->var, *b = &t->P.items[1]->var;
    KN_ASSERT(kn_linear(t->A, &x, &w->v, &b->v, &pred) == KN_OK);
    double loss;
    KN_ASSERT(kn_mse_loss(&pred, &y, NULL, &loss) == KN_OK);
    KN_ASSERT(kn_mse_loss_backward(&pred, &y, NULL, 1.0f, &dpred) == KN_OK);
    kn_params_zero_grads(&t->P);
    KN_ASSERT(kn_linear_backward(&x, &w->v, &dpred, NULL, &w->g, &b->g) == KN_OK);
    kn_clip_grad_norm(&t->P, 1.0);
    KN_ASSERT(kn_adamw_step(&t->opt, kn_lr_at(&t->lr, t->S.step)) == KN_OK);
    kn_ema_update(&t->ema);
    t->S.step++;
    return loss;
}

static int same_state(const toy *a, const toy *b) {
    size_t nb = a->P.numel * sizeof(float);
    return a->P.numel == b->P.numel && !memcmp(a->P.block, b->P.block, nb) && !memcmp(a->opt.m, b->opt.m, nb) &&
           !memcmp(a->opt.v, b->opt.v, nb) && !memcmp(a->ema.w, b->ema.w, nb) && a->S.step == b->S.step &&
           a->opt.step == b->opt.step && a->ema.updates == b->ema.updates && !memcmp(a->S.rng, b->S.rng, sizeof a->S.rng);
}

static int count_tmp(const char *dir) {
    DIR *d = opendir(dir);
    int n = 0;
    struct dirent *e;
    while (d && (e = readdir(d)) != NULL)
        n += strstr(e->d_name, ".tmp.") != NULL;
    if (d)
        closedir(d);
    return n;
}

KT_TEST(checkpoint_exact_resume) {
    toy a, b;
    double la[STEPS], lb[STEPS];
    int prev = kn_set_threads(1); /* straight run on 1 thread; the resumed one on 3 */
    toy_init(&a, 3);
    for (int s = 0; s < STEPS; s++)
        la[s] = toy_step(&a);
    KT_CHECKF(la[STEPS - 1] < 0.5 * la[0], "toy loss did not fall: %g -> %g", la[0], la[STEPS - 1]);

    char path[512];
    snprintf(path, sizeof path, "%s/ckpt.safetensors", kt_tmpdir());
    toy_init(&b, 3);
    for (int s = 0; s < STEPS / 2; s++)
        lb[s] = toy_step(&b);
    KT_OK(kn_ckpt_save(path, &b.S));
    toy_free(&b);
    KT_CHECK(count_tmp(kt_tmpdir()) == 0);

    toy_init(&b, 99); /* a "fresh process": other initial weights, zero moments, step 0 */
    KT_CHECK(!same_state(&a, &b));
    KT_OK(kn_ckpt_load(path, &b.S));
    KT_CHECK(b.S.step == STEPS / 2 && b.opt.step == STEPS / 2 && b.ema.updates == STEPS / 2);
    kn_set_threads(3);
    for (int s = STEPS / 2; s < STEPS; s++)
        lb[s] = toy_step(&b);
    kn_set_threads(prev);
    KT_CHECK(!memcmp(la, lb, sizeof la));
    KT_CHECKF(same_state(&a, &b), "resumed run differs from the straight run");
    char *cfg = kn_ckpt_read_config(path);
    KT_CHECK(cfg && strstr(cfg, "toy-linear"));
    free(cfg);

    /* the file holds the model under its own names, plus ema. / optim.m. / optim.v. */
    kn_safetensors *st = kn_st_open(path);
    KT_CHECK(st != NULL);
    if (st) {
        const char *want[] = {"lin.weight", "lin.bias", "ema.lin.weight", "optim.m.lin.bias", "optim.v.lin.weight",
                              "train.step", "optim.step", "ema.updates", "train.rng"};
        for (size_t i = 0; i < sizeof want / sizeof *want; i++)
            KT_CHECKF(kn_st_find(st, want[i]) >= 0, "entry %s missing", want[i]);
        KT_CHECK(kn_st_count(st) == 12);
        KT_CHECK(kn_st_metadata(st, "step") && !strcmp(kn_st_metadata(st, "step"), "10"));
        kn_st_close(st);
    }
    toy_free(&a);
    toy_free(&b);
}

/* The child side of checkpoint_survives_sigkill: runs (via exec of this binary) before main. */
__attribute__((constructor)) static void ckpt_child_hook(void) {
    const char *path = getenv("KINEMA_CKPT_CHILD");
    if (!path)
        return;
    toy t;
    toy_init(&t, 3);
    for (int s = 0; s < STEPS; s++) {
        toy_step(&t);
        if (t.S.step % 3 == 0 && kn_ckpt_save(path, &t.S) != KN_OK)
            _exit(3);
        usleep(4000);
    }
    _exit(0);
}

KT_TEST(checkpoint_survives_sigkill) {
    toy ref;
    toy_init(&ref, 3);
    for (int s = 0; s < STEPS; s++)
        toy_step(&ref);
    char path[512];
    snprintf(path, sizeof path, "%s/run.safetensors", kt_tmpdir());
    setenv("KINEMA_CKPT_CHILD", path, 1);
    pid_t pid = fork();
    if (pid == 0) {
        execl("/proc/self/exe", "kinema-tests", "--list", (char *)NULL);
        _exit(4);
    }
    unsetenv("KINEMA_CKPT_CHILD");
    KT_CHECK(pid > 0);
    if (pid <= 0)
        return;
    struct stat sb;
    for (int i = 0; i < 5000 && stat(path, &sb) != 0; i++)
        usleep(1000);
    /* random-ish kill point: 0..24 ms after the first checkpoint */
    unsigned r = (unsigned)time(NULL) ^ (unsigned)getpid() * 2654435761u;
    usleep((r % 25) * 1000);
    kill(pid, SIGKILL);
    int status = 0;
    waitpid(pid, &status, 0);
    KT_CHECKF(WIFSIGNALED(status) || (WIFEXITED(status) && WEXITSTATUS(status) == 0), "child status %d", status);

    kn_ckpt_remove_stale_tmp(path); /* a writer killed mid-write leaves its tmp behind */
    KT_CHECK(count_tmp(kt_tmpdir()) == 0);
    toy b;
    toy_init(&b, 42);
    KT_OK(kn_ckpt_load(path, &b.S));
    KT_CHECKF(b.S.step >= 3 && b.S.step <= 18 && b.S.step % 3 == 0, "resumed at step %lld", (long long)b.S.step);
    while (b.S.step < STEPS)
        toy_step(&b);
    KT_CHECKF(same_state(&ref, &b), "run resumed after SIGKILL differs from the straight run");
    toy_free(&ref);
    toy_free(&b);
}

static int copy_prefix(const char *src, const char *dst, long n, long flip_at) {
    FILE *f = fopen(src, "rb"), *g = fopen(dst, "wb");
    if (!f || !g)
        return -1;
    int c;
    long i = 0;
    while ((c = fgetc(f)) != EOF && (n < 0 || i < n)) {
        fputc(i == flip_at ? c ^ 0x40 : c, g);
        i++;
    }
    fclose(f);
    fclose(g);
    return 0;
}

KT_TEST(checkpoint_rejects_bad_files) {
    toy a;
    toy_init(&a, 3);
    for (int s = 0; s < 4; s++)
        toy_step(&a);
    const char *d = kt_tmpdir();
    char good[512], bad[512];
    snprintf(good, sizeof good, "%s/good.safetensors", d);
    snprintf(bad, sizeof bad, "%s/bad.safetensors", d);
    KT_OK(kn_ckpt_save(good, &a.S));
    struct stat sb;
    KT_CHECK(stat(good, &sb) == 0);

    toy b;
    toy_init(&b, 5);
    float before = b.P.block[0];
    /* truncated */
    copy_prefix(good, bad, (long)sb.st_size / 2, -1);
    KT_CHECK(kn_ckpt_load(bad, &b.S) == KN_ERR_FORMAT);
    KT_CHECKF(strstr(kn_last_error(), "bad.safetensors") != NULL, "message: %s", kn_last_error());
    /* one flipped byte in the data section (the last byte of the file) */
    copy_prefix(good, bad, -1, (long)sb.st_size - 9);
    KT_CHECK(kn_ckpt_load(bad, &b.S) == KN_ERR_FORMAT);
    KT_CHECKF(strstr(kn_last_error(), "CRC") != NULL, "message: %s", kn_last_error());
    /* missing file */
    snprintf(bad, sizeof bad, "%s/nope.safetensors", d);
    KT_CHECK(kn_ckpt_load(bad, &b.S) != KN_OK);
    KT_CHECK(b.P.block[0] == before && b.S.step == 0); /* nothing changed */

    /* a model with another shape */
    kn_params P2 = {0};
    int64_t ws[2] = {OUT, IN + 1}, bs[1] = {OUT};
    kn_param_decl(&P2, 2, ws, "lin.weight");
    kn_param_decl(&P2, 1, bs, "lin.bias");
    KT_OK(kn_params_alloc(&P2));
    KT_OK(kn_params_alloc_grads(&P2));
    kn_adamw o2;
    kn_adamw_config oc = kn_adamw_default_config();
    KT_OK(kn_adamw_init(&o2, &oc, &P2));
    kn_train_state S2 = {0};
    S2.P = &P2;
    S2.opt = &o2;
    S2.n_rng = 2;
    KT_CHECK(kn_ckpt_load(good, &S2) == KN_ERR_SHAPE);
    KT_CHECKF(strstr(kn_last_error(), "'lin.weight'") && strstr(kn_last_error(), "(8,17)"), "message: %s",
              kn_last_error());
    /* a state without EMA: the file's ema.* entries have no place */
    S2.P = &b.P;
    S2.opt = &b.opt;
    KT_CHECK(kn_ckpt_load(good, &S2) == KN_ERR_FORMAT);
    KT_CHECKF(strstr(kn_last_error(), "no place"), "message: %s", kn_last_error());
    /* a model with one more parameter: its entry is missing */
    kn_params P3 = {0};
    int64_t ws3[2] = {OUT, IN};
    kn_param_decl(&P3, 2, ws3, "lin.weight");
    kn_param_decl(&P3, 1, bs, "lin.bias");
    kn_param_decl(&P3, 1, bs, "extra.bias");
    KT_OK(kn_params_alloc(&P3));
    KT_OK(kn_params_alloc_grads(&P3));
    kn_adamw o3;
    KT_OK(kn_adamw_init(&o3, &oc, &P3));
    kn_train_state S3 = {0};
    S3.P = &P3;
    S3.opt = &o3;
    S3.n_rng = 2;
    KT_CHECK(kn_ckpt_load(good, &S3) == KN_ERR_FORMAT);
    KT_CHECKF(strstr(kn_last_error(), "'extra.bias' is missing"), "message: %s", kn_last_error());
    KT_CHECK(count_tmp(d) == 0);
    kn_adamw_free(&o2);
    kn_adamw_free(&o3);
    kn_params_free(&P2);
    kn_params_free(&P3);
    toy_free(&a);
    toy_free(&b);
}

KT_TEST(checkpoint_stop_signal_sets_flag) {
    struct sigaction old_int, old_term;
    sigaction(SIGINT, NULL, &old_int);
    sigaction(SIGTERM, NULL, &old_term);
    kn_train_stop_reset();
    KT_OK(kn_train_install_signal_handlers());
    KT_CHECK(!kn_train_stop_requested());
    raise(SIGTERM);
    KT_CHECK(kn_train_stop_requested());
    kn_train_stop_reset();
    raise(SIGINT);
    KT_CHECK(kn_train_stop_requested());
    kn_train_stop_reset();
    sigaction(SIGINT, &old_int, NULL);
    sigaction(SIGTERM, &old_term, NULL);
}
