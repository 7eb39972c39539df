#!/usr/bin/env bash
# The test command: fetch the data tests need (real models, llama.cpp's tokenizer vectors, the perplexity
# text), run the whole Rust test suite with missing data treated as a failure, not a skip, then the
# end-to-end tests of `ferrite serve` (the official openai client, and the web page in headless Chromium)
# against the binary built in the same profile.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"
scripts/fetch-models.sh smollm2 qwen05 gemma3 minilm
scripts/build-llama-cpp.sh --source-only >/dev/null
scripts/reference/make_ppl_text.sh >/dev/null
export FERRITE_REQUIRE_DATA=1
cargo test --workspace --locked "$@"
cargo build --profile test --locked -p ferrite-cli
FERRITE_BIN="$here/target/debug/ferrite" python3 -m pytest -q -p no:cacheprovider tests/server tests/e2e
