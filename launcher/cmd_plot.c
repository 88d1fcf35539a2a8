/* shardlm plot: a run's loss, eval loss, learning rate and gradient norm as a PNG (train/plot.h). */
#include <stdio.h>
#include <string.h>

#include "launcher/cli.h"
#include "launcher/commands.h"
#include "runtime/fsutil.h"
#include "train/plot.h"

void cmd_plot_usage(FILE *out) {
    fprintf(out,
            "usage: shardlm plot RUN_DIR [--out FILE.png] [--width 1000] [--height 700]\n\n"
            "Draws <RUN_DIR>/metrics.jsonl as a PNG: training loss with the eval loss as markers,\n"
            "learning rate, gradient norm and eval loss against the step (a step replayed after\n"
            "a resume shows its last value). Default --out: <RUN_DIR>/loss.png.\n");
}

int cmd_plot(int argc, char **argv) {
    cli_args a;
    static const char *const known[] = {"out", "width", "height", NULL};
    sl_status st = cli_parse(&a, argc, argv, NULL);
    if (st == SL_OK)
        st = cli_check_known(&a, known);
    if (st == SL_OK && a.n_pos != 1)
        st = sl_errorf(SL_ERR_INVALID, "expected one RUN_DIR, got %d arguments", a.n_pos);
    long long w = 1000, h = 700;
    if (st == SL_OK)
        st = cli_get_int(&a, "width", 200, 8192, &w);
    if (st == SL_OK)
        st = cli_get_int(&a, "height", 160, 8192, &h);
    if (st != SL_OK) {
        int code = cli_report("plot", st);
        cmd_plot_usage(stderr);
        return code;
    }
    char out[2048];
    const char *o = cli_get(&a, "out");
    if (o)
        snprintf(out, sizeof out, "%s", o);
    else if (fs_join(out, sizeof out, a.pos[0], "loss.png") != SL_OK)
        return cli_report("plot", sl_errorf(SL_ERR_INVALID, "RUN_DIR path too long"));
    plot_summary sum;
    st = plot_run(a.pos[0], out, (int)w, (int)h, &sum);
    if (st != SL_OK)
        return cli_report("plot", st);
    if (sum.bad_lines)
        fprintf(stderr, "shardlm plot: %lld line(s) of %s/metrics.jsonl are not JSON (the first: line %lld); skipped\n",
                (long long)sum.bad_lines, a.pos[0], (long long)sum.first_bad_line);
    printf("wrote %s (%lldx%lld): steps %lld..%lld, %lld train points, %lld eval points, %lld restart(s)\n", out,
           w, h, (long long)sum.first_step, (long long)sum.last_step, (long long)sum.train_points,
           (long long)sum.eval_points, (long long)sum.restarts);
    return SL_EXIT_OK;
}
