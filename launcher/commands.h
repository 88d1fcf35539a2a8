/* launcher/commands.h: the subcommands of the shardlm program.
 *
 * defines: command, commands (the table), commands_count, cmd_* entry points
 *
 * Each command lives in launcher/cmd_<name>.c and returns a process exit
 * code (SL_EXIT_*). Commands parse their own options; `--help` on any of them
 * prints its usage. Only commands that are built appear in the table.
 */
#ifndef SL_LAUNCHER_COMMANDS_H
#define SL_LAUNCHER_COMMANDS_H

#include <stdio.h>

typedef struct {
    const char *name;
    const char *summary;
    int (*run)(int argc, char **argv); /* argv[0] is the command name */
    void (*usage)(FILE *out);
} command;

extern const command commands[];
extern const int commands_count;

int cmd_env(int argc, char **argv);
void cmd_env_usage(FILE *out);
int cmd_config(int argc, char **argv);
void cmd_config_usage(FILE *out);
int cmd_prepare(int argc, char **argv);
void cmd_prepare_usage(FILE *out);
int cmd_inspect(int argc, char **argv);
void cmd_inspect_usage(FILE *out);
int cmd_tokenize(int argc, char **argv);
void cmd_tokenize_usage(FILE *out);
int cmd_tokenizer(int argc, char **argv);
void cmd_tokenizer_usage(FILE *out);
int cmd_train(int argc, char **argv);
void cmd_train_usage(FILE *out);
int cmd_import(int argc, char **argv);
void cmd_import_usage(FILE *out);
int cmd_export(int argc, char **argv);
void cmd_export_usage(FILE *out);
int cmd_bench(int argc, char **argv);
void cmd_bench_usage(FILE *out);
/* shardlm bench comm (launcher/cmd_bench_comm.c); argv[0] is "comm". */
int bench_comm_main(int argc, char **argv);
void bench_comm_usage(FILE *out);
int cmd_eval(int argc, char **argv);
void cmd_eval_usage(FILE *out);
/* eval's other modes, dispatched by cmd_eval on --generate / --choices */
int cmd_eval_generate(int argc, char **argv);
void cmd_eval_generate_usage(FILE *out);
int cmd_eval_choices(int argc, char **argv);
void cmd_eval_choices_usage(FILE *out);
int cmd_generate(int argc, char **argv);
void cmd_generate_usage(FILE *out);
int cmd_plan(int argc, char **argv);
void cmd_plan_usage(FILE *out);
int cmd_lora(int argc, char **argv);
void cmd_lora_usage(FILE *out);
int cmd_plot(int argc, char **argv);
void cmd_plot_usage(FILE *out);

#endif
