#!/usr/bin/env bash
# The PyTorch reference test (tests/unit/test_model_reference.c: logits, loss,
# every gradient and the parameters after the optimizer steps, a skipped step
# included) through the training job at world size 2: every global batch
# split over two ranks, each unit sharded over both (FSDP full_shard). World
# size 1 is the ctest unit run. Every rank must pass every test.
source "$(dirname "$0")/lib.sh"
unit_test_at_ranks test_model_reference '^(test_model_reference:|[a-z0-9_]+ +(logits|step))' 2
echo "ok"
