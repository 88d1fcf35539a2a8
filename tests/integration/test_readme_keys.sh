#!/usr/bin/env bash
# Issue 16 point 10: README's config-key table is `shardlm config keys`
# exactly (scripts/update_readme_keys.sh --check), and a stale row is caught.
source "$(dirname "$0")/lib.sh"
mktmp
expect_exit 0 bash "$SRC/scripts/update_readme_keys.sh" --check "$SHARDLM"
expect_out "README key table matches"
# the check fails on a README whose table lost a row
mkdir -p "$TMP/src/scripts"
cp "$SRC/scripts/update_readme_keys.sh" "$TMP/src/scripts/"
grep -v '^| `checkpoint.keep_best`' "$SRC/README.md" > "$TMP/src/README.md"
expect_exit 1 bash "$TMP/src/scripts/update_readme_keys.sh" --check "$SHARDLM"
expect_out "differs from \`shardlm config keys\`"
expect_out "+| \`checkpoint.keep_best\`"
echo ok
