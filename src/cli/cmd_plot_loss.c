/* cmd_plot_loss.c — `kinema plot-loss LOG -o loss.png [--smooth N] [--log-y] [--width W]
 * [--height H]`: draws the loss curves of a `kinema train` log (one line per stage) as a PNG. */
#include "cli/cli.h"
#include "io/plot.h"

#include <stdio.h>
#include <string.h>

static void usage(FILE *f) {
    fprintf(f, "usage: kinema plot-loss LOG -o OUT.png [--smooth N] [--log-y] [--width W] [--height H]\n"
               "  LOG          the CSV `kinema train` writes (header stage,step,loss,seconds)\n"
               "  -o, --output the PNG to write (atomically: a failure leaves no file)\n"
               "  --smooth N   also draw a trailing moving average over N steps (raw curve drawn pale)\n"
               "  --log-y      logarithmic loss axis\n"
               "  --width W, --height H   image size in pixels (default 800 x 500)\n");
}

static int cmd_plot_loss(int argc, char **argv) {
    const char *out = NULL;
    long smooth = 0, width = 800, height = 500;
    int log_y = 0;
    kn_cli_opt opts[] = {
        {"--output", "-o", KN_OPT_STR, &out},
        {"--smooth", NULL, KN_OPT_INT, &smooth, 0, 1000000},
        {"--log-y", NULL, KN_OPT_FLAG, &log_y},
        {"--width", "-W", KN_OPT_INT, &width, 160, KN_PLOT_MAX_DIM},
        {"--height", "-H", KN_OPT_INT, &height, 120, KN_PLOT_MAX_DIM},
    };
    const char *pos[1];
    int npos = 0;
    int r = kn_cli_parse("plot-loss", argc, argv, opts, (int)(sizeof opts / sizeof opts[0]), pos, 1, &npos);
    if (r == 2) {
        usage(stdout);
        return 0;
    }
    if (!r) return 2;
    if (!npos) return kn_cli_error("plot-loss: no LOG given (kinema plot-loss run/log.csv -o loss.png)");
    if (!out) return kn_cli_error("plot-loss: no output given (-o loss.png)");

    kn_loss_log log;
    if (kn_loss_log_read(pos[0], &log) != KN_OK) return kn_cli_error("plot-loss: %s", kn_last_error());
    kn_plot_opts po = kn_plot_default_opts();
    po.width = (int)width, po.height = (int)height, po.smooth = (int)smooth, po.log_y = log_y;
    kn_status st = kn_plot_loss_png(&log, &po, out);
    if (st != KN_OK) {
        kn_loss_log_free(&log);
        return kn_cli_error("plot-loss: %s", kn_last_error());
    }
    fprintf(stderr, "plot-loss: %lld rows, %d stage%s", (long long)log.rows, log.nseries, log.nseries == 1 ? "" : "s");
    for (int i = 0; i < log.nseries; i++)
        fprintf(stderr, "%s %s (%lld)", i ? "," : ":", log.series[i].stage, (long long)log.series[i].n);
    if (log.nonfinite) fprintf(stderr, "; %lld non-finite losses not drawn", (long long)log.nonfinite);
    fprintf(stderr, " -> %s\n", out);
    kn_loss_log_free(&log);
    return 0;
}

KN_CLI_COMMAND(plot_loss, "plot-loss", "draw the loss curves of a training log as a PNG", cmd_plot_loss)
