#!/usr/bin/env bash
# Regenerates README's config-key table from the schema (shardlm config keys).
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${1:-build/shardlm}
keys=$("$bin" config keys)
/usr/bin/python3 - "$keys" <<'PY'
import re, sys
s = open("README.md").read()
s = re.sub(r"<!-- config-keys:begin -->.*<!-- config-keys:end -->",
           lambda m: "<!-- config-keys:begin -->\n" + sys.argv[1] + "\n<!-- config-keys:end -->", s, flags=re.S)
open("README.md", "w").write(s)
PY
