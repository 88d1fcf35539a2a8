#!/usr/bin/env bash
# Reward-model training against PyTorch (tests/unit/test_reward_train.c: step
# 1's Bradley-Terry loss and reduced gradient, the parameters after 3 AdamW
# steps, the job's <Arch>ForSequenceClassification export) through the
# training job at world sizes 2 and 4: each global batch of 4 pairs split
# over the ranks (2 or 1 pairs each; at world 2 also as 2 micro-batches of
# 1, grad_accum 2), every unit sharded over all of them (FSDP full_shard).
# World size 1 is the ctest unit run. Every rank must pass every test.
source "$(dirname "$0")/lib.sh"
unit_test_at_ranks test_reward_train '^(gpt2|llama) +world' 2 4
echo "ok"
