#!/usr/bin/env bash
# Build llama.cpp (the reference implementation and benchmark peer) from the llama-cpp-python 0.3.36 sdist,
# which vendors llama.cpp commit 0c1e570. Idempotent. Prints the build's bin directory on stdout.
#
#   scripts/build-llama-cpp.sh                # into $FERRITE_CACHE (default <repo>/.cache)
#   scripts/build-llama-cpp.sh --source-only  # only fetch and unpack the sdist (its vocab files and
#                                             # templates are test data); prints the llama.cpp source dir
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cache=${FERRITE_CACHE:-$here/.cache}
root=$cache/llama_cpp_python-0.3.36
bin=$root/build/bin
targets="llama-bench llama-batched-bench llama-quantize llama-completion llama-simple llama-tokenize llama-perplexity llama-embedding"
mkdir -p "$cache"
if [ ! -d "$root/vendor/llama.cpp" ]; then
  # `pip download --no-binary` would build the sdist's build requirements (cmake) from source just to read
  # its metadata: take the file straight from the index instead, checking the sha256 the index gives.
  tmp=$(mktemp -d)
  url=$(curl -fsSL https://pypi.org/simple/llama-cpp-python/ | grep -o 'https://[^"]*llama_cpp_python-0.3.36.tar.gz#sha256=[0-9a-f]*' | head -1)
  [ -n "$url" ] || { echo "llama-cpp-python 0.3.36 sdist not found on the index" >&2; exit 1; }
  curl -fsSL -o "$tmp/sdist.tar.gz" "${url%%#*}"
  [ "$(sha256sum "$tmp/sdist.tar.gz" | cut -d' ' -f1)" = "${url##*sha256=}" ] || { echo "sdist sha256 mismatch" >&2; exit 1; }
  tar -xzf "$tmp/sdist.tar.gz" -C "$cache"
  rm -rf "$tmp"
fi
if [ "${1:-}" = --source-only ]; then echo "$root/vendor/llama.cpp"; exit 0; fi
have=1
for t in $targets; do [ -x "$bin/$t" ] || have=0; done
if [ $have = 0 ]; then
  command -v cmake >/dev/null || { apt-get update -qq && apt-get install -y -qq cmake >&2; }
  cmake -S "$root/vendor/llama.cpp" -B "$root/build" -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=ON \
    -DLLAMA_BUILD_TOOLS=ON -DLLAMA_BUILD_EXAMPLES=ON -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_SERVER=OFF \
    -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF -DBUILD_SHARED_LIBS=OFF >&2
  cmake --build "$root/build" -j2 --target $targets >&2
fi
echo "$bin"
