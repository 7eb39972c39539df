#!/usr/bin/env bash
# Build scripts/reference/llama_ref.cpp against the static llama.cpp libraries that scripts/build-llama-cpp.sh
# produced (CPU backend, GGML_NATIVE=ON, OpenMP). Idempotent: rebuilds only when the source or the libs changed.
# Prints the path of the binary on stdout.
set -euo pipefail
here=$(cd "$(dirname "$0")/../.." && pwd)
cache=${FERRITE_CACHE:-$here/.cache}
root=$cache/llama_cpp_python-0.3.36
src=$root/vendor/llama.cpp
build=$root/build
out=$cache/reference/llama_ref
libs="$build/src/libllama.a $build/ggml/src/libggml.a $build/ggml/src/libggml-cpu.a $build/ggml/src/libggml-base.a"
for l in $libs; do
  [ -f "$l" ] || { "$here/scripts/build-llama-cpp.sh" >/dev/null; break; }
done
mkdir -p "$(dirname "$out")"
stale=0
[ -x "$out" ] || stale=1
for f in "$here/scripts/reference/llama_ref.cpp" $libs; do
  [ "$stale" = 1 ] || [ "$f" -nt "$out" ] && stale=1
done
if [ "$stale" = 1 ]; then
  # Same link line as the build's own llama-simple (see build/examples/simple/CMakeFiles/llama-simple.dir/link.txt):
  # libllama, libggml, -ldl, libggml-cpu, libggml-base, -lm, OpenMP (libgomp), pthread.
  ${CXX:-g++} -std=c++17 -O2 -DNDEBUG -DGGML_USE_CPU \
    -I"$src/include" -I"$src/ggml/include" -I"$src/vendor" \
    "$here/scripts/reference/llama_ref.cpp" -o "$out.tmp" \
    $libs -ldl -lm -fopenmp -lpthread
  mv "$out.tmp" "$out"
fi
echo "$out"
