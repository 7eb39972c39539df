#!/usr/bin/env bash
# The test command: fetch the data tests need (real models, llama.cpp's tokenizer vectors, the perplexity
# text), then run the whole test suite with missing data treated as a failure, not a skip.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"
scripts/fetch-models.sh smollm2 qwen05 gemma3
scripts/build-llama-cpp.sh --source-only >/dev/null
scripts/reference/make_ppl_text.sh >/dev/null
export FERRITE_REQUIRE_DATA=1
cargo test --workspace --locked "$@"
