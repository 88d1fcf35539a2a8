/* launcher/main.c: `shardlm <command> [options]`.
 *
 * Dispatches to the commands of launcher/commands.c. Prints the program's
 * usage for `shardlm`, `shardlm --help` and `shardlm help`, the build for
 * `--version`, and a command's usage for `shardlm <command> --help`.
 */
#include <stdio.h>
#include <string.h>

#include "launcher/cli.h"
#include "launcher/commands.h"
#include "runtime/status.h"

static void usage(FILE *out) {
    fprintf(out,
            "usage: shardlm <command> [options]\n"
            "       shardlm <command> --help\n"
            "       shardlm --version\n\n"
            "Distributed training and fine-tuning of GPT-2 and Llama-family models.\n"
            "Launch with mpirun -np N (or srun) for N ranks; one GPU per rank where present.\n\n"
            "commands:\n");
    for (int i = 0; i < commands_count; i++)
        fprintf(out, "  %-10s %s\n", commands[i].name, commands[i].summary);
    fprintf(out, "\nexit codes: 0 ok, 1 runtime error, 2 bad usage or config, "
                 "75 preempted (checkpoint saved; relaunch with --resume auto), "
                 "124 collective timeout\n");
}

int main(int argc, char **argv) {
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
        strcmp(argv[1], "help") == 0) {
        if (argc >= 3 && strcmp(argv[1], "help") == 0) {
            for (int i = 0; i < commands_count; i++)
                if (strcmp(commands[i].name, argv[2]) == 0) {
                    commands[i].usage(stdout);
                    return SL_EXIT_OK;
                }
        }
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? SL_EXIT_USAGE : SL_EXIT_OK;
    }
    if (strcmp(argv[1], "--version") == 0 || strcmp(argv[1], "version") == 0) {
        cli_print_version(stdout);
        return SL_EXIT_OK;
    }
    for (int i = 0; i < commands_count; i++) {
        if (strcmp(commands[i].name, argv[1]) != 0)
            continue;
        for (int j = 2; j < argc; j++) {
            if (strcmp(argv[j], "--help") == 0 || strcmp(argv[j], "-h") == 0) {
                commands[i].usage(stdout);
                return SL_EXIT_OK;
            }
            if (strcmp(argv[j], "--") == 0)
                break;
        }
        return commands[i].run(argc - 1, argv + 1);
    }
    const char *names[64];
    int n = 0;
    for (int i = 0; i < commands_count && n < 63; i++)
        names[n++] = commands[i].name;
    names[n] = NULL;
    const char *near = cli_nearest(argv[1], names);
    if (near)
        fprintf(stderr, "shardlm: unknown command \"%s\"; did you mean \"%s\"?\n\n", argv[1], near);
    else
        fprintf(stderr, "shardlm: unknown command \"%s\"\n\n", argv[1]);
    usage(stderr);
    return SL_EXIT_USAGE;
}
