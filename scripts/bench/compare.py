#!/usr/bin/env python3
"""Ferrite vs llama.cpp speed on the same GGUF files, side by side (a benchmark, not a test).

Builds what is missing (llama.cpp from the llama-cpp-python 0.3.36 sdist, ferrite in release mode, the
synthetic TinyLlama-shape files of synth_gguf.py, the real Qwen2.5-Coder-1.5B Q4_K_M), then for each file
runs llama-bench and `ferrite bench` alternately, one repetition each per round, so both see the same
machine state; prints median tokens/s and their ratio per test and thread count, and writes every sample to
.cache/bench/results-<date>.json.

    scripts/bench/compare.py [--types f16,q8_0,q4_0,q4_k] [--no-real] [-p 512] [-n 128] [-t 1,2] [-r 3]
"""
import argparse
import datetime
import json
import os
import statistics
import subprocess
import sys

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
CACHE = os.environ.get("FERRITE_CACHE", os.path.join(ROOT, ".cache"))
LLAMA = os.path.join(CACHE, "llama_cpp_python-0.3.36")
BENCH_DIR = os.path.join(CACHE, "bench")
REAL = ("qwen15", os.path.join(ROOT, "models", "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf"))


def run(cmd, **kw):
    print("+", " ".join(cmd), file=sys.stderr)
    return subprocess.run(cmd, check=True, text=True, **kw)


def prepare(types, real):
    run([os.path.join(ROOT, "scripts", "build-llama-cpp.sh")], stdout=subprocess.DEVNULL)
    run(["cargo", "build", "--release", "--locked", "-p", "ferrite-cli"], cwd=ROOT)
    os.makedirs(BENCH_DIR, exist_ok=True)
    files = []
    env = dict(os.environ, PYTHONPATH=os.path.join(LLAMA, "vendor", "llama.cpp", "gguf-py"))
    for t in types:
        path = os.path.join(BENCH_DIR, f"tinyllama-shape-{t}.gguf")
        if not os.path.exists(path):
            run([sys.executable, os.path.join(ROOT, "scripts", "bench", "synth_gguf.py"), path + ".tmp", t], env=env)
            os.replace(path + ".tmp", path)
        files.append((f"tinyllama-{t}", path))
    if real:
        run([os.path.join(ROOT, "scripts", "fetch-models.sh"), "qwen15"], stdout=subprocess.DEVNULL)
        files.append(REAL)
    return files


def llama_bench(path, p, n, threads):
    exe = os.path.join(LLAMA, "build", "bin", "llama-bench")
    out = run([exe, "-m", path, "-p", str(p), "-n", str(n), "-t", threads, "-r", "1", "-o", "json"],
              stdout=subprocess.PIPE).stdout
    return json.loads(out)


def ferrite_bench(path, p, n, threads):
    exe = os.path.join(ROOT, "target", "release", "ferrite")
    out = run([exe, "bench", "-m", path, "-p", str(p), "-n", str(n), "-t", threads, "-r", "1", "--json"],
              stdout=subprocess.PIPE).stdout
    return json.loads(out)


def key(row):
    return (row["n_prompt"], row["n_gen"], row["n_threads"])


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--types", default="f16,q8_0,q4_0,q4_k")
    ap.add_argument("--no-real", action="store_true", help="skip the real Qwen2.5-Coder-1.5B file")
    ap.add_argument("-p", type=int, default=512)
    ap.add_argument("-n", type=int, default=128)
    ap.add_argument("-t", default="1,2")
    ap.add_argument("-r", type=int, default=3)
    a = ap.parse_args()

    files = prepare([t for t in a.types.split(",") if t], not a.no_real)
    membw = run([os.path.join(ROOT, "target", "release", "ferrite"), "bench", "--membw", "-t", a.t],
                stdout=subprocess.PIPE).stdout.strip()
    print(membw, file=sys.stderr)
    samples = {}  # (name, engine, key) -> [tokens/s]
    extra = {}  # (name, key) -> ferrite's weights_gbps / membw_share of the last round
    for name, path in files:
        for _ in range(a.r):
            for engine, fn in (("llama.cpp", llama_bench), ("ferrite", ferrite_bench)):
                for row in fn(path, a.p, a.n, a.t):
                    samples.setdefault((name, engine, key(row)), []).append(row["avg_ts"])
                    if engine == "ferrite" and "membw_share" in row:
                        extra[(name, key(row))] = (row["weights_gbps"], row["membw_share"])

    date = datetime.date.today().isoformat()
    print(f"\n{membw}\n")
    print(f"| file | test | threads | llama.cpp t/s | ferrite t/s | ferrite / llama.cpp | ferrite weights GB/s (share of DRAM bw) |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for name, _ in files:
        keys = sorted({k for (n, e, k) in samples if n == name}, key=lambda k: (k[1] > 0, k[2]))
        for k in keys:
            lc = statistics.median(samples.get((name, "llama.cpp", k), [float("nan")]))
            fe = statistics.median(samples.get((name, "ferrite", k), [float("nan")]))
            test = f"tg{k[1]}" if k[1] else f"pp{k[0]}"
            bw = extra.get((name, k))
            bw = f"{bw[0]:.2f} ({100 * bw[1]:.0f}%)" if bw else "-"
            print(f"| {name} | {test} | {k[2]} | {lc:.2f} | {fe:.2f} | {fe / lc:.2f}x | {bw} |")
    out = os.path.join(BENCH_DIR, f"results-{date}.json")
    with open(out, "w") as f:
        json.dump({"date": date, "membw": membw, "args": vars(a),
                   "samples": [{"file": n, "engine": e, "n_prompt": k[0], "n_gen": k[1], "n_threads": k[2], "ts": v}
                               for (n, e, k), v in samples.items()]}, f, indent=1)
    print(f"\nsamples: {out}", file=sys.stderr)


if __name__ == "__main__":
    main()
