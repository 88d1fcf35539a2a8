/* shardlm config: check a config, print it resolved, or list the keys. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "launcher/cli.h"
#include "launcher/commands.h"
#include "train/train_check.h"

void cmd_config_usage(FILE *out) {
    fprintf(out,
            "usage: shardlm config check [--config FILE]... [--set KEY=VALUE]...\n"
            "       shardlm config show  [--config FILE]... [--set KEY=VALUE]...\n"
            "       shardlm config keys\n\n"
            "check  validate the config (exit 2 with the key and file on error)\n"
            "show   print the resolved config as JSON (defaults + files + overrides)\n"
            "keys   print every key with its type, default and meaning (Markdown)\n");
}

int cmd_config(int argc, char **argv) {
    cli_args a;
    static const char *const known[] = {"config", "set", NULL};
    sl_status st = cli_parse(&a, argc, argv, NULL);
    if (st == SL_OK)
        st = cli_check_known(&a, known);
    if (st != SL_OK || a.n_pos != 1) {
        if (st != SL_OK)
            cli_report("config", st);
        cmd_config_usage(stderr);
        return SL_EXIT_USAGE;
    }
    const char *sub = a.pos[0];
    if (strcmp(sub, "keys") == 0) {
        config_print_keys(stdout);
        return SL_EXIT_OK;
    }
    if (strcmp(sub, "check") != 0 && strcmp(sub, "show") != 0) {
        fprintf(stderr, "shardlm config: unknown subcommand \"%s\"\n", sub);
        cmd_config_usage(stderr);
        return SL_EXIT_USAGE;
    }
    sl_config *cfg = malloc(sizeof *cfg);
    if (!cfg)
        return cli_report("config", sl_errorf(SL_ERR_NOMEM, "out of memory"));
    st = cli_load_config(&a, cfg);
    /* what train checks before MPI (model.init_from, backend, LoRA targets,
     * data.tokenizer), so that "config ok" means train will start */
    if (st == SL_OK && strcmp(sub, "check") == 0)
        st = train_config_check(cfg, &(train_check_opts){.run_dir = false});
    if (st != SL_OK) {
        free(cfg);
        return cli_report("config", st);
    }
    if (strcmp(sub, "show") == 0) {
        char *s = config_to_json(cfg);
        printf("%s\n", s);
        free(s);
    } else {
        printf("config ok\n");
    }
    free(cfg);
    return SL_EXIT_OK;
}
