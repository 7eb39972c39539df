#!/usr/bin/env python3
"""Decode speed with a busy neighbour (a benchmark, not a test).

Runs `ferrite bench` and llama-bench on one GGUF file with 1 and 2 threads, first on a quiet machine, then
while another process keeps one core busy (a pure-Python spin loop, started here and stopped at the end),
alternating the engines; prints median generation tokens/s per case. The CPU-kernels issue asks that with
the neighbour our 2-thread figure stay at or above our 1-thread one.

    scripts/bench/neighbour.py [--model PATH] [-n 64] [-r 3]

Run scripts/bench/compare.py first: it builds llama.cpp, ferrite and the synthetic files used by default.
"""
import argparse
import json
import multiprocessing
import os
import statistics
import subprocess
import sys

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
CACHE = os.environ.get("FERRITE_CACHE", os.path.join(ROOT, ".cache"))
LLAMA_BENCH = os.path.join(CACHE, "llama_cpp_python-0.3.36", "build", "bin", "llama-bench")
FERRITE = os.path.join(ROOT, "target", "release", "ferrite")


def spin():
    while True:
        pass


def tg(engine, model, n, threads):
    if engine == "ferrite":
        cmd = [FERRITE, "bench", "-m", model, "-p", "0", "-n", str(n), "-t", threads, "-r", "1", "--json"]
    else:
        cmd = [LLAMA_BENCH, "-m", model, "-p", "0", "-n", str(n), "-t", threads, "-r", "1", "-o", "json"]
    print("+", " ".join(cmd), file=sys.stderr)
    rows = json.loads(subprocess.run(cmd, check=True, text=True, stdout=subprocess.PIPE).stdout)
    return {r["n_threads"]: r["avg_ts"] for r in rows if r["n_gen"] > 0}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=os.path.join(CACHE, "bench", "tinyllama-shape-q4_0.gguf"))
    ap.add_argument("-n", type=int, default=64)
    ap.add_argument("-r", type=int, default=3)
    a = ap.parse_args()
    for exe in (FERRITE, LLAMA_BENCH):
        if not os.path.exists(exe):
            sys.exit(f"{exe} is missing: run scripts/bench/compare.py first")

    samples = {}  # (neighbour, engine, threads) -> [t/s]
    for neighbour in (False, True):
        proc = multiprocessing.Process(target=spin, daemon=True) if neighbour else None
        if proc:
            proc.start()
        try:
            for _ in range(a.r):
                for engine in ("llama.cpp", "ferrite"):
                    for t, ts in tg(engine, a.model, a.n, "1,2").items():
                        samples.setdefault((neighbour, engine, t), []).append(ts)
        finally:
            if proc:
                proc.terminate()
                proc.join()

    print(f"\n{os.path.basename(a.model)}, tg{a.n}, median of {a.r}\n")
    print("| neighbour | threads | llama.cpp t/s | ferrite t/s |")
    print("|---|---:|---:|---:|")
    for neighbour in (False, True):
        for t in (1, 2):
            med = [statistics.median(samples[(neighbour, e, t)]) for e in ("llama.cpp", "ferrite")]
            print(f"| {'one core busy' if neighbour else 'none'} | {t} | {med[0]:.2f} | {med[1]:.2f} |")
    fe1, fe2 = (statistics.median(samples[(True, "ferrite", t)]) for t in (1, 2))
    print(f"\nferrite with the neighbour: 2 threads / 1 thread = {fe2 / fe1:.2f}")


if __name__ == "__main__":
    main()
