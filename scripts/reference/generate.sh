#!/usr/bin/env bash
# Regenerate the llama.cpp reference fixtures under tests/reference/ (see tests/reference/README.md).
#
#   scripts/reference/generate.sh [MODEL_SHORT...]      default: smollm2 qwen05 gemma3
#   STEPS="greedy logits variants perplexity" (default: all) selects what to regenerate ("variants" needs
#   greedy.json and logits.json).
#
# Needs the models (scripts/fetch-models.sh), llama.cpp (scripts/build-llama-cpp.sh, run here if needed) and
# python3 (standard library only). Runs llama.cpp on the CPU with 2 threads; takes tens of minutes on 2 cores.
set -euo pipefail
here=$(cd "$(dirname "$0")/../.." && pwd)
ref=$here/scripts/reference
models=${FERRITE_MODELS:-$here/models}
cache=${FERRITE_CACHE:-$here/.cache}
steps=${STEPS:-greedy logits variants perplexity}
shorts=${*:-smollm2 qwen05 gemma3}
n_predict=64
n_logits=256
logits_text=$here/tests/reference/logits_text.txt

bin=$("$here/scripts/build-llama-cpp.sh")
tool=$("$ref/build.sh")
ppl_text=$("$ref/make_ppl_text.sh")
export PPL_FILES; PPL_FILES=$("$ref/make_ppl_text.sh" --files)
log_dir=$cache/reference/logs
mkdir -p "$log_dir"

model_file() {
  case $1 in
    smollm2) echo smollm2-135m-instruct-q4_1.gguf ;;
    qwen05)  echo qwen2.5-coder-0.5b-instruct-q4_k_m.gguf ;;
    gemma3)  echo gemma3-270m-q4_k_m.gguf ;;
    *) echo "unknown model short name $1" >&2; exit 1 ;;
  esac
}
to() { local o=$1 e=$2; shift 2; "$@" > "$o" 2> "$e"; }  # to STDOUT_FILE STDERR_FILE CMD...
has() { case " $steps " in *" $1 "*) return 0 ;; esac; return 1; }
timed() {  # timed NAME CMD... : run, log wall time to stderr and to the timings file
  local name=$1 t0 t1; shift
  t0=$(date +%s.%N)
  "$@"
  t1=$(date +%s.%N)
  awk -v n="$name" -v a="$t0" -v b="$t1" 'BEGIN { printf "%-24s %7.1f s\n", n, b - a }' | tee -a "$log_dir/timings.txt" >&2
}

for short in $shorts; do
  model=$models/$(model_file "$short")
  [ -f "$model" ] || { echo "missing $model (run scripts/fetch-models.sh)" >&2; exit 1; }
  out=$here/tests/reference/$short
  mkdir -p "$out"
  if has greedy; then
    timed "$short greedy" sh -c '"$1" greedy "$2" "$3" "$4" "$5" > "$6.tmp" 2> "$7" && mv "$6.tmp" "$6"' _ \
      "$tool" "$model" "$ref/prompts.json" "$n_predict" "$short" "$out/greedy.json" "$log_dir/$short-greedy.log"
  fi
  if has logits; then
    timed "$short logits" sh -c '"$1" logits "$2" "$3" "$4" > "$5.tmp" 2> "$6" && mv "$5.tmp" "$5"' _ \
      "$tool" "$model" "$logits_text" "$n_logits" "$out/logits.json" "$log_dir/$short-logits.log"
  fi
  if has variants; then
    # the same logits under other legitimate llama.cpp settings (see logits_variants.json in the README)
    vs=()
    for v in "flash_attn_off:--fa off" "kv_f32_flash_attn_off:--fa off --kv f32" "ubatch_1:--ubatch 1" "threads_1:--threads 1"; do
      name=${v%%:*}
      # shellcheck disable=SC2086
      timed "$short logits $name" to "$log_dir/$short-logits-$name.json" /dev/null \
        "$tool" ${v#*:} logits "$model" "$logits_text" "$n_logits"
      vs+=("$name=$log_dir/$short-logits-$name.json")
    done
    python3 "$ref/fixtures.py" variants "$out/logits_variants.json" "$out/logits.json" "${vs[@]}"
    timed "$short greedy flash_attn_off" to "$log_dir/$short-greedy-flash_attn_off.json" /dev/null \
      "$tool" --fa off greedy "$model" "$ref/prompts.json" "$n_predict" "$short"
    python3 "$ref/fixtures.py" greedy-variants "$out/greedy_variants.json" "$out/greedy.json" \
      "flash_attn_off=$log_dir/$short-greedy-flash_attn_off.json"
  fi
  if has perplexity; then
    "$tool" tokens "$model" "$ppl_text" > "$log_dir/$short-ppl-tokens.json" 2>/dev/null
    # -lv 4 only makes the log verbose enough to record the resolved settings (flash attention, n_ubatch, ...)
    timed "$short perplexity" sh -c '"$1" -m "$2" -f "$3" -c 512 -t 2 -lv 4 > "$4" 2>&1' _ \
      "$bin/llama-perplexity" "$model" "$ppl_text" "$log_dir/$short-perplexity.log"
    python3 "$ref/fixtures.py" perplexity "$log_dir/$short-perplexity.log" "$model" "$ppl_text" \
      "$log_dir/$short-ppl-tokens.json" llama-perplexity -m "$(basename "$model")" -f ppl.txt -c 512 -t 2 -lv 4 \
      > "$out/perplexity.json.tmp"
    mv "$out/perplexity.json.tmp" "$out/perplexity.json"
  fi
done

dirs=()
for d in smollm2 qwen05 gemma3; do [ -f "$here/tests/reference/$d/greedy.json" ] && dirs+=("$here/tests/reference/$d"); done
[ -f "$here/tests/reference/README.md" ] && [ ${#dirs[@]} -gt 0 ] && \
  python3 "$ref/fixtures.py" readme "$here/tests/reference/README.md" "${dirs[@]}"
du -sh "$here/tests/reference" >&2
