#!/usr/bin/env bash
# The program's front door: help, version, unknown commands, config errors.
source "$(dirname "$0")/lib.sh"
mktmp
expect_exit 0 "$SHARDLM" --help
expect_out "usage: shardlm <command>"
expect_out "env"
expect_exit 2 "$SHARDLM"
expect_exit 2 "$SHARDLM" frobnicate
expect_out 'unknown command "frobnicate"'
expect_exit 0 "$SHARDLM" --version
expect_out "shardlm 0."
expect_out "CUDA:"
expect_out "HDF5 1."
expect_exit 0 "$SHARDLM" env --help
expect_out "usage:"
expect_exit 0 "$SHARDLM" help config
expect_out "shardlm config keys"

cat > "$TMP/x.json" <<'J'
{
  "optim": {"lr": 1e-4, "lr_warmpu": 100}
}
J
expect_exit 2 "$SHARDLM" config check --config "$TMP/x.json"
expect_out "unknown key \"optim.lr_warmpu\" (did you mean \"optim.lr_warmup\"?) in $TMP/x.json"

# the same through `shardlm train`: rejected before MPI starts, exit 2
expect_exit 2 "$SHARDLM" train --config "$TMP/x.json"
expect_out "unknown key \"optim.lr_warmpu\" (did you mean \"optim.lr_warmup\"?) in $TMP/x.json"
printf '{"model": {"n_layer": "two"}}' > "$TMP/ty.json"
expect_exit 2 "$SHARDLM" train --config "$TMP/ty.json"
expect_out "\"model.n_layer\" must be an integer, got a string in $TMP/ty.json"
expect_exit 2 "$SHARDLM" train --config "$TMP/ty.json" --bogus 1
expect_out "unknown option --bogus"

printf '{"optim": {"lr": "big"}}' > "$TMP/t.json"
expect_exit 2 "$SHARDLM" config check --config "$TMP/t.json"
expect_out "\"optim.lr\" must be a number, got a string in $TMP/t.json"

printf '{"optim": {"lr": 1e-4}}' > "$TMP/ok.json"
expect_exit 0 "$SHARDLM" config check --config "$TMP/ok.json" --set train.steps=5
expect_out "config ok"
expect_exit 2 "$SHARDLM" config check --config "$TMP/ok.json" --set train.stepz=5
expect_out 'did you mean "train.steps"?'
expect_exit 0 "$SHARDLM" config show --config "$TMP/ok.json" --set model.n_layer=3
expect_out '"n_layer":	3'
expect_exit 1 "$SHARDLM" config check --config "$TMP/missing.json"
expect_out "cannot open $TMP/missing.json"
expect_exit 0 "$SHARDLM" config keys
expect_out '`optim.lr_warmup`'
echo "ok"
