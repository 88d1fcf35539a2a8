#!/usr/bin/env bash
# Regenerates README's config-key table from the schema (shardlm config keys).
#   scripts/update_readme_keys.sh [BIN]          rewrite README.md in place
#   scripts/update_readme_keys.sh --check [BIN]  exit 1 (with a diff) when the table
#                                                differs from `shardlm config keys`
# (tests/integration/test_readme_keys.sh runs --check.)
set -euo pipefail
cd "$(dirname "$0")/.."
check=0
if [ "${1:-}" = "--check" ]; then check=1; shift; fi
bin=${1:-build/shardlm}
keys=$("$bin" config keys)
/usr/bin/python3 - "$keys" "$check" <<'PY'
import difflib, re, sys
s = open("README.md").read()
m = re.search(r"<!-- config-keys:begin -->\n(.*)\n<!-- config-keys:end -->", s, flags=re.S)
if not m:
    sys.exit("README.md has no <!-- config-keys:begin --> ... <!-- config-keys:end --> block")
if sys.argv[2] == "1":
    if m.group(1) != sys.argv[1]:
        d = difflib.unified_diff(m.group(1).splitlines(), sys.argv[1].splitlines(), "README.md",
                                 "shardlm config keys", lineterm="")
        print("\n".join(d))
        sys.exit("README.md's key table differs from `shardlm config keys`: run scripts/update_readme_keys.sh")
    print("README key table matches shardlm config keys")
    sys.exit(0)
s = s[:m.start()] + "<!-- config-keys:begin -->\n" + sys.argv[1] + "\n<!-- config-keys:end -->" + s[m.end():]
open("README.md", "w").write(s)
PY
