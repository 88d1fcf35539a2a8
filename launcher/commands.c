#include "launcher/commands.h"

const command commands[] = {
    {"train", "train or fine-tune a model, FSDP-sharded over the ranks", cmd_train, cmd_train_usage},
    {"env", "print the topology and the build as seen by every rank", cmd_env, cmd_env_usage},
    {"config", "check a config, print it resolved, or list every key", cmd_config, cmd_config_usage},
    {"prepare", "clean, deduplicate, mask PII, tokenize text/JSONL into HDF5 shards", cmd_prepare, cmd_prepare_usage},
    {"inspect", "describe and verify token shards and checkpoints (every chunk, every checksum)", cmd_inspect, cmd_inspect_usage},
    {"bench", "benchmarks: the training step, `bench --fsdp` (distributed, overlap), `bench comm` (collectives)", cmd_bench, cmd_bench_usage},
    {"eval", "loss on token shards, generation (BLEU/ROUGE), multiple-choice accuracy (mpirun)", cmd_eval, cmd_eval_usage},
    {"generate", "generate text from a model folder (KV cache; greedy, top-k, top-p; --chat)", cmd_generate, cmd_generate_usage},
    {"import", "convert a Hugging Face model folder into a shardlm model folder", cmd_import, cmd_import_usage},
    {"export", "convert a shardlm model folder into a Hugging Face model folder", cmd_export, cmd_export_usage},
    {"tokenize", "encode stdin to token ids or decode ids to text", cmd_tokenize, cmd_tokenize_usage},
    {"tokenizer", "train a byte-level BPE tokenizer (tokenizer.json) from text", cmd_tokenizer, cmd_tokenizer_usage},
    {"plan", "per-rank memory, comm, FLOPs, step time and cost of a run before it runs (fits or not)", cmd_plan, cmd_plan_usage},
    {"lora", "`lora merge`: merge a PEFT LoRA adapter into its base model", cmd_lora, cmd_lora_usage},
    {"plot", "draw a run's loss, eval loss, learning rate and gradient norm as a PNG", cmd_plot, cmd_plot_usage},
};

const int commands_count = (int)(sizeof commands / sizeof commands[0]);
