#!/usr/bin/env bash
# The DPO reference test (tests/unit/test_dpo_reference.c: each step's DPO
# loss, step 1's TRL metrics and gradients, the parameters after 3 steps of
# full fine-tuning and LoRA against PyTorch with TRL's formulas) through the
# training job at world sizes 2 and 4: every global batch's pairs split over
# the ranks (2 pairs per rank in one micro-batch at world 2; 1 per rank at
# world 4), each unit and the full fine-tuning reference sharded over all of
# them (FSDP full_shard). World size 1 (grad_accum 2) is the ctest unit run.
# Every rank must pass every test.
source "$(dirname "$0")/lib.sh"
unit_test_at_ranks test_dpo_reference '^(test_dpo_reference:|(full|lora)_[a-z0-9_]+ +loss)' 2 4
echo "ok"
