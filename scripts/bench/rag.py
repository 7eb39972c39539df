#!/usr/bin/env python3
"""RAG benchmarks, side by side on this machine (a benchmark, not a test; results go to BENCHMARKS.md).

    python3 -m venv .cache/refenv && .cache/refenv/bin/pip install torch sentence-transformers hnswlib
    scripts/bench/rag.py [--python .cache/refenv/bin/python] [--threads 2] [--skip-ingest]

1. Embedding throughput: `ferrite embed` vs sentence-transformers (torch, CPU) on the same 2,000 paragraphs
   of the Python 3.11 documentation, batch size 32 for both, both truncating at 256 tokens, same threads.
2. Ingest: `ferrite rag ingest` of the whole Python documentation (python3.11-doc's reST sources) into a
   fresh collection, wall time.
3. Retrieval quality and latency: `ferrite rag eval` on eval/python-docs/qrels.jsonl (p50/p95 per query,
   embedding the query included).
4. ANN: recall@10 vs queries/s of our HNSW (`ferrite rag ann-bench`) and hnswlib on the collection's own
   vectors (first 1,000 held out as queries), same M and ef_construction, one thread; with --hnsw-rs also
   the hnsw_rs crate (scripts/bench/hnsw-rs, its own cargo workspace).
"""
import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DOCS = "/usr/share/doc/python3.11/html/_sources"
MODEL = os.path.join(ROOT, "models", "all-minilm-l6-v2")
CACHE = os.environ.get("FERRITE_CACHE", os.path.join(ROOT, ".cache"))
FERRITE = os.path.join(ROOT, "target", "release", "ferrite")


def paragraphs(n):
    out = []
    for dirpath, _, files in sorted(os.walk(DOCS)):
        for f in sorted(files):
            text = open(os.path.join(dirpath, f), encoding="utf-8").read()
            for p in re.split(r"\n\s*\n", text):
                p = " ".join(p.split())
                if len(p) >= 40:
                    out.append(p)
                    if len(out) == n:
                        return out
    return out


ST_SCRIPT = r"""
import sys, time, torch
from sentence_transformers import SentenceTransformer
torch.set_num_threads(int(sys.argv[2]))
texts = [l.rstrip("\n") for l in open(sys.argv[1], encoding="utf-8")]
m = SentenceTransformer(sys.argv[3], device="cpu")
m.encode(texts[:64], batch_size=32)
t = time.time(); m.encode(texts, batch_size=32); dt = time.time() - t
print(dt)
"""

HNSWLIB_SCRIPT = r"""
import sys, time, json, numpy as np, hnswlib
v = np.fromfile(sys.argv[1], dtype="<f4").reshape(-1, int(sys.argv[2]))
hold, m, efc = int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
q, base = v[:hold], v[hold:]
truth = np.argsort(-(q @ base.T), axis=1)[:, :10]
idx = hnswlib.Index(space="ip", dim=v.shape[1])
idx.set_num_threads(1)
t = time.time(); idx.init_index(max_elements=len(base), M=m, ef_construction=efc, random_seed=1); idx.add_items(base, np.arange(len(base))); build = time.time() - t
runs = []
for ef in map(int, sys.argv[6].split(",")):
    idx.set_ef(max(ef, 10))
    t = time.time(); labels = np.vstack([idx.knn_query(x[None, :], k=10)[0] for x in q]); dt = time.time() - t
    rec = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(labels, truth)])
    runs.append({"ef": ef, "recall@10": float(rec), "qps": hold / dt})
print(json.dumps({"build_s": build, "runs": runs}))
"""


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--python", default=os.path.join(CACHE, "refenv", "bin", "python"))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--skip-ingest", action="store_true")
    ap.add_argument("--efs", default="10,20,40,80,160")
    ap.add_argument("--hnsw-rs", action="store_true", help="also build and run scripts/bench/hnsw-rs (the hnsw_rs crate)")
    a = ap.parse_args()
    if not os.path.isdir(DOCS):
        sys.exit(f"{DOCS} missing: apt-get install python3.11-doc")
    subprocess.run(["cargo", "build", "--release", "-p", "ferrite-cli"], cwd=ROOT, check=True)
    results = {"date": time.strftime("%Y-%m-%d"), "threads": a.threads}

    # 1. Embedding throughput.
    texts = paragraphs(2000)
    path = os.path.join(CACHE, "bench", "paragraphs.txt")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(texts) + "\n")
    st = float(subprocess.run([a.python, "-c", ST_SCRIPT, path, str(a.threads), MODEL], capture_output=True, text=True, check=True).stdout.split()[-1])
    r = subprocess.run([FERRITE, "embed", "-m", MODEL, "-t", str(a.threads), "--batch-size", "32"], stdin=open(path, encoding="utf-8"),
                       capture_output=True, text=True, check=True)
    fe = float(re.search(r"embedded in ([0-9.]+) s", r.stderr).group(1))
    results["embed"] = {"texts": len(texts), "sentence_transformers_s": st, "ferrite_s": fe, "speedup": st / fe}
    print(f"embedding {len(texts)} paragraphs: sentence-transformers {st:.2f} s, ferrite {fe:.2f} s ({st / fe:.2f}x)", flush=True)

    # 2. Ingest.
    col = os.path.join(CACHE, "pydocs-col")
    if not a.skip_ingest or not os.path.isdir(col):
        shutil.rmtree(col, ignore_errors=True)
        t = time.time()
        r = subprocess.run([FERRITE, "rag", "ingest", "-t", str(a.threads), "--collection", col, "--embed-model", MODEL, DOCS],
                           capture_output=True, text=True, check=True)
        results["ingest"] = {"seconds": time.time() - t, "report": r.stderr.strip().splitlines()[-1]}
        print("ingest:", results["ingest"], flush=True)

    # 3. Quality and latency.
    r = subprocess.run([FERRITE, "rag", "eval", "-t", str(a.threads), "--collection", col, "--qrels", os.path.join(ROOT, "eval", "python-docs", "qrels.jsonl"), "--json"],
                       capture_output=True, text=True, check=True)
    results["eval"] = json.loads(r.stdout)
    for row in results["eval"]["results"]:
        print(f"{row['retriever']:<18} nDCG@10 {row['ndcg@10']:.4f} recall@10 {row['recall@10']:.4f} MRR@10 {row['mrr@10']:.4f} "
              f"p50 {row['p50_ms']:.1f} ms p95 {row['p95_ms']:.1f} ms", flush=True)

    # 4. ANN.
    gen = open(os.path.join(col, "CURRENT")).read().strip()
    vec = os.path.join(col, gen, "vectors.f32")
    r = subprocess.run([FERRITE, "rag", "ann-bench", "-t", "1", "--vectors", vec, "--dim", "384", "--holdout", "1000", "--ef", a.efs],
                       capture_output=True, text=True, check=True)
    ours = json.loads(r.stdout)
    r = subprocess.run([a.python, "-c", HNSWLIB_SCRIPT, vec, "384", "1000", "16", "200", a.efs], capture_output=True, text=True, check=True)
    theirs = json.loads(r.stdout)
    results["ann"] = {"ferrite": ours, "hnswlib": theirs}
    if a.hnsw_rs:
        d = os.path.join(ROOT, "scripts", "bench", "hnsw-rs")
        subprocess.run(["cargo", "build", "--release", "--quiet"], cwd=d, check=True)
        r = subprocess.run([os.path.join(d, "target", "release", "hnsw-rs-bench"), vec], capture_output=True, text=True, check=True)
        results["ann"]["hnsw_rs"] = json.loads(r.stdout.strip().splitlines()[-1])
        print("hnsw_rs:", results["ann"]["hnsw_rs"])
    print(f"ANN over {ours['index']} vectors: build ferrite {ours['build_s']:.1f} s, hnswlib {theirs['build_s']:.1f} s")
    for o, h in zip(ours["runs"], theirs["runs"]):
        print(f"  ef {o['ef']:>4}: ferrite recall {o['recall@10']:.4f} {o['qps']:>8.0f} q/s | hnswlib recall {h['recall@10']:.4f} {h['qps']:>8.0f} q/s")
    out = os.path.join(CACHE, "bench", "rag.json")
    with open(out, "w") as f:
        json.dump(results, f, indent=1)
    print("wrote", out)


if __name__ == "__main__":
    main()
