#!/usr/bin/env python3
"""Load benchmark for `ferrite serve` (continuous batching), with a llama.cpp batched-bench comparison.

A benchmark, not a test: it prints tables and PASS/FAIL lines against the performance targets, and exits 0
whatever the numbers are (1 only when it could not run). Python standard library only (asyncio, raw HTTP/1.1,
hand-parsed server-sent events), so it runs on a fresh machine without pip.

    scripts/bench/load.py --model PATH [--concurrency 1,8] [--requests N] [--threads 2] [--seed S]
                          [--binary PATH] [--no-llama] [--json OUT]

What it does, in order:

1. llama.cpp (unless --no-llama): `llama-batched-bench -m PATH -c CTX -b 2048 -ub 512 -npp 128 -ntg 128
   -npl <concurrency list> -t T` (flash attention and everything else as llama.cpp ships it: `auto`),
   CTX = max(npl) * (npp + ntg). Builds it with scripts/build-llama-cpp.sh when the binary is missing. It runs
   before any ferrite server is started, so the two never share the CPU.
2. For each concurrency level C, a fresh `ferrite serve --model PATH --port P --threads T --max-seqs C`
   (binary: --binary, else $FERRITE_BIN, else target/release/ferrite), waited for on /health, then
   - one warm-up request, then (first server only) one 1-token request per prompt genre to measure the
     model's characters per token, so prompts can be sized in tokens;
   - the load level: N requests (default max(8, 4*C)) from C concurrent clients, each sending its next request
     when the previous one finishes. Streaming /v1/completions, temperature 0, prompt lengths uniform in
     32..600 tokens of varied generated text (prose, numbered lists, CSV, Python, interview transcripts), every
     prompt opening with distinct words so the prefix cache cannot reuse anything, max_tokens uniform in
     32..192. Completions may end early at an end-of-generation token: totals come from
     usage.completion_tokens (stream_options.include_usage), never from the chunk count.
     Per request: TTFT = request sent -> first chunk carrying text; ITL = time between successive chunks
     carrying text (a chunk usually holds one token, rarely more). Per level: generated tokens/s = sum of
     completion tokens / level wall time (first send -> last response done), prompt tokens/s likewise,
     TTFT and ITL p50/p90/p99, and throughput relative to the C=1 level;
   - the batched-bench-style run: C requests sent at once, each a ~128-token prompt (prose cut mid-sentence
     at the calibrated size) and max_tokens 128, all
     required to produce exactly 128 tokens (prompts that end early are replaced and the whole batch rerun,
     with fresh prompts). Aggregate generated tokens/s = C*128 / (first send -> last done) is set next to
     llama-batched-bench's S_TG at npl = C. Also reported: a decode-phase rate (tokens after the moment every
     sequence has its first token / time from then to the end), closer to how S_TG is timed (S_TG excludes
     prompt processing; the aggregate includes it, so the aggregate is the conservative number).
     The first batched prompt is the same at every level: greedy output must not depend on the batch
     (docs/server.md), so its text is compared across levels.
   - /metrics before and after the level (prefix-cache hits, preemptions, generated-token counter check);
     then SIGTERM, which must end the server with status 0.
3. Tables, PASS/FAIL lines for the targets, a list of server misbehaviour seen (a non-200 status, a malformed
   stream, usage inconsistent with the stream, a non-zero exit, ...), and with --json OUT every number plus
   machine information.

Targets (as stated for Qwen2.5-Coder-0.5B Q4_K_M at 8 concurrent sequences; checked for the largest level
against C=1 whatever the model): generated tokens/s >= 2x llama-batched-bench S_TG at the same parallelism,
>= 3x ferrite's own single-sequence rate, and p99 ITL < 4x the single-sequence p99 ITL.

The client shares the CPU with the server (llama-batched-bench has no client): it does little per token, but
on a 2-core machine it is not free. Run it on an otherwise idle machine for numbers worth quoting.
"""
import argparse
import asyncio
import datetime
import json
import math
import os
import platform
import random
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
CACHE = os.environ.get("FERRITE_CACHE", os.path.join(ROOT, ".cache"))
LLAMA_BIN = os.path.join(CACHE, "llama_cpp_python-0.3.36", "build", "bin")

PROMPT_MIN, PROMPT_MAX = 32, 600
GEN_MIN, GEN_MAX = 32, 192
BB_TOKENS = 128  # batched-bench npp and ntg
TARGET_VS_LLAMA = 2.0
TARGET_SCALING = 3.0
TARGET_ITL = 4.0


def log(*a):
    print(*a, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------------------------------------
# Prompt text: deterministic per seed, varied, and likely to be continued (no chat template, raw completion).
# --------------------------------------------------------------------------------------------------------

OPENERS = """Harbor Amber Copper Northern Quiet Silver Lantern Granite Velvet Cedar Winter Autumn Saffron Cobalt
Meadow Ember Willow Falcon Orchard Marble Thistle Juniper Hollow Riverside Crimson Ivory Basalt Coral Drift
Heron Lowland Summit Tidal Prairie Cinder Garnet Maple Obsidian Pebble Quarry Rowan Sable Tundra Umber Vesper
Walnut Yarrow Zephyr Alder Bramble Canyon Dune Fjord Glacier Hazel Indigo Jasper Kestrel Lagoon Mistral
Nettle Ochre Pine Quartz Russet Sorrel Teal Upland Vale Wren Ash Birch Clover Delta""".split()
KINDS = """ledger notebook chronicle report digest journal almanac memo dossier register logbook survey
bulletin inventory archive""".split()
ADJ = """quiet bright narrow ancient restless careful distant golden heavy hidden hollow humble patient
rapid rusty silent steady sudden tangled tired wild wooden gentle bitter brave clever curious eager faint
fragile generous grim honest modest proud rough sharp shy slow stubborn warm weary""".split()
NOUN = """harbor river merchant lantern bridge orchard mill garden ferry market library tower valley
village engine station workshop caravan lighthouse monastery vineyard quarry forge granary canal meadow
observatory bakery foundry shipyard""".split()
PEOPLE = """Marguerite Okafor|Tomasz Lindqvist|Aiko Brennan|Rafael Moreau|Ingrid Adeyemi|Samir Kowalski|Lucia
Halvorsen|Dmitri Achebe|Noor Castellano|Elias Varga|Priya Sorensen|Mateo Nakamura|Hana Oyelaran|Jonas
Ferreira|Leila Dubois|Oskar Mbeki|Yara Petrov|Felix Anand|Selma Ruiz|Viktor Osei""".replace("\n", " ").split("|")
PLACES = """Lisbon Tromso Kyoto Valparaiso Tbilisi Marrakesh Hobart Quebec Bergen Zanzibar Cork Trieste
Odessa Cusco Hanoi Dakar Reykjavik Adelaide Gdansk Porto""".split()
VERBS = """carried repaired measured counted painted guarded traded studied mapped rebuilt sold weighed
polished recorded delivered inspected""".split()
TIMES = """At dawn|By noon|Late that evening|In the spring|Before the storm|After the harvest|During the
winter|On the third day|Every morning|When the bells rang""".replace("\n", " ").split("|")
PRODUCTS = """lamp_oil rope salt flour copper_wire wool tea nails canvas soap candles barley ink tar
glass""".split()
STATUSES = ["ok", "ok", "ok", "late", "returned", "pending", "ok", "damaged"]
QUESTIONS = ["How did you first come to {place}?", "What was the {noun} like in those years?",
             "Who taught you to work at the {noun}?", "What do you remember about the {adj} winter?",
             "Why did the {noun} close?", "What did people trade at the market?",
             "How long did the journey to {place} take?", "What happened to the old {noun}?"]
GENRES = ["prose", "list", "csv", "code", "interview"]


class Prompts:
    """Generates distinct prompts of a given approximate token length."""

    def __init__(self, seed):
        self.rng = random.Random(seed)
        self.used = set()
        self.chars_per_token = {g: 4.0 for g in GENRES}

    def opening(self):
        r = self.rng
        for _ in range(1000):
            h = f"{r.choice(OPENERS)} {r.choice(KINDS)} {r.randrange(100, 100000)}"
            if h not in self.used:
                self.used.add(h)
                return h
        raise RuntimeError("ran out of distinct prompt openings")

    def sentence(self):
        r = self.rng
        return (f"{r.choice(TIMES)}, {r.choice(PEOPLE)} {r.choice(VERBS)} the {r.choice(ADJ)} {r.choice(NOUN)} "
                f"near {r.choice(PLACES)}, and the {r.choice(NOUN)} beside it grew {r.choice(ADJ)}.")

    def make_exact(self, tokens):
        """Prose cut at a word boundary to the calibrated size, so ending mid-sentence (for the
        batched-bench-style run, whose prompts should all be close to the same token count)."""
        want = max(8, int(tokens * self.chars_per_token["prose"]))
        text = f"{self.opening()}: the story of the {self.rng.choice(ADJ)} {self.rng.choice(NOUN)}\n\n"
        while len(text) < want + 40:
            text += self.sentence() + " "
        cut = text.rfind(" ", 0, want + 1)
        return text[:cut].rstrip(" ,.")

    def make(self, genre, tokens):
        """A prompt of about `tokens` tokens (per the calibrated characters/token of its genre): an opening
        line, whole units (sentences, list items, rows, functions, questions) while that stays closest to
        the size wanted, and a tail that invites the model to go on."""
        r = self.rng
        want = max(8, int(tokens * self.chars_per_token[genre]))
        head = self.opening()
        n = [0]  # units so far

        def count():
            n[0] += 1
            return n[0]

        if genre == "prose":
            first = f"{head}: the story of the {r.choice(ADJ)} {r.choice(NOUN)}\n\n"
            unit = lambda: self.sentence() + ("\n\n" if count() % 5 == 0 else " ")
            tail = lambda: f"{r.choice(TIMES)}, {r.choice(PEOPLE)} walked to the {r.choice(NOUN)} and"
        elif genre == "list":
            first = f"{head}: things worth knowing about the {r.choice(NOUN)}s of {r.choice(PLACES)}\n\n"
            unit = lambda: f"{count()}. The {r.choice(ADJ)} {r.choice(NOUN)}: {self.sentence()}\n"
            tail = lambda: f"{n[0] + 1}."
        elif genre == "csv":
            first = f"{head} (shipments export)\nid,date,city,product,quantity,unit_price,status\n"
            unit = lambda: (f"{count()},2023-{r.randrange(1, 13):02d}-{r.randrange(1, 29):02d},{r.choice(PLACES)},"
                            f"{r.choice(PRODUCTS)},{r.randrange(1, 500)},{r.randrange(1, 9999) / 100:.2f},"
                            f"{r.choice(STATUSES)}\n")
            tail = lambda: f"{n[0] + 1},"
        elif genre == "code":
            first = f"# {head}: helpers for the {r.choice(NOUN)} inventory\n\nimport math\n\n\n"

            def unit():
                a, b, k = r.choice(NOUN), r.choice(ADJ), r.randrange(2, 90)
                attr = r.choice(["weight", "price", "count", "age", "length", "volume"])
                return (f"def {b}_{a}_{attr}(items, factor={k}):\n"
                        f"    \"\"\"Return the {attr} of every {b} {a}, scaled by factor.\"\"\"\n"
                        f"    result = []\n"
                        f"    for item in items:\n"
                        f"        if item.{attr} > {r.randrange(1, 50)}:\n"
                        f"            result.append(item.{attr} * factor)\n"
                        f"    return result\n\n\n")
            tail = lambda: "def"
        elif genre == "interview":
            first = f"{head}: interview with {r.choice(PEOPLE)}, recorded in {r.choice(PLACES)}\n\n"

            def unit():
                q = r.choice(QUESTIONS).format(place=r.choice(PLACES), noun=r.choice(NOUN), adj=r.choice(ADJ))
                return f"Q: {q}\nA: {self.sentence()}\n\n"
            tail = lambda: "Q:"
        else:
            raise ValueError(genre)
        parts = [first]
        size = len(first) + 3
        while True:
            u = unit()
            if size + len(u) > want:
                if size + len(u) - want < want - size:
                    parts.append(u)
                else:
                    n[0] -= 1  # numbered units: the tail numbers on from the last one kept
                break
            parts.append(u)
            size += len(u)
        parts.append(tail())
        return "".join(parts)


# --------------------------------------------------------------------------------------------------------
# HTTP/1.1 over asyncio streams, SSE parsing
# --------------------------------------------------------------------------------------------------------

class HttpError(Exception):
    pass


async def http(port, method, path, body=None, on_piece=None, on_head=None, timeout=900.0):
    """One request on a fresh connection (Connection: close). Returns (status, headers, body bytes).

    With on_piece, every body piece (after de-chunking) is passed to on_piece(bytes, arrival_time) as it
    arrives, and the returned body is empty; on_head(status, headers) is called before the body."""
    async def go():
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            data = b"" if body is None else json.dumps(body).encode()
            head = f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n"
            if body is not None:
                head += f"Content-Type: application/json\r\nContent-Length: {len(data)}\r\n"
            writer.write(head.encode() + b"\r\n" + data)
            await writer.drain()
            line = await reader.readline()
            m = re.match(rb"HTTP/1\.[01] (\d{3})", line)
            if not m:
                raise HttpError(f"bad status line {line[:100]!r}")
            status = int(m.group(1))
            headers = {}
            while True:
                line = await reader.readline()
                if line in (b"\r\n", b"\n"):
                    break
                if not line:
                    raise HttpError("connection closed inside the headers")
                k, _, v = line.decode("latin-1").partition(":")
                headers[k.strip().lower()] = v.strip()
            if on_head:
                on_head(status, headers)
            out = []
            emit = on_piece or (lambda piece, t: out.append(piece))
            if "chunked" in headers.get("transfer-encoding", "").lower():
                while True:
                    line = await reader.readline()
                    if not line:
                        raise HttpError("connection closed inside a chunked body")
                    n = int(line.split(b";")[0].strip() or b"0", 16)
                    if n == 0:
                        while (await reader.readline()) not in (b"\r\n", b"\n", b""):
                            pass
                        break
                    piece = await reader.readexactly(n)
                    emit(piece, time.perf_counter())
                    await reader.readexactly(2)
            elif "content-length" in headers:
                left = int(headers["content-length"])
                while left > 0:
                    piece = await reader.read(min(left, 65536))
                    if not piece:
                        raise HttpError(f"connection closed with {left} body bytes missing")
                    left -= len(piece)
                    emit(piece, time.perf_counter())
            else:
                while True:
                    piece = await reader.read(65536)
                    if not piece:
                        break
                    emit(piece, time.perf_counter())
            return status, headers, b"".join(out)
        finally:
            writer.close()
            try:
                await writer.wait_closed()
            except Exception:
                pass
    return await asyncio.wait_for(go(), timeout)


class SSE:
    """Incremental text/event-stream parser: feed bytes, get the `data` of each complete event."""

    def __init__(self):
        self.buf = b""

    def feed(self, piece):
        self.buf += piece
        self.buf = self.buf.replace(b"\r\n", b"\n")
        events = []
        while b"\n\n" in self.buf:
            raw, self.buf = self.buf.split(b"\n\n", 1)
            data = [ln[5:].lstrip(b" ") if ln.startswith(b"data:") else None for ln in raw.split(b"\n")]
            data = [d for d in data if d is not None]
            if data:
                events.append(b"\n".join(data).decode("utf-8"))
        return events


async def completion(port, prompt, max_tokens, tag, problems):
    body = {"model": "bench", "prompt": prompt, "max_tokens": max_tokens, "temperature": 0, "stream": True,
            "stream_options": {"include_usage": True}}
    rec = {"tag": tag, "max_tokens": max_tokens, "prompt_chars": len(prompt), "ok": False, "status": None,
           "prompt_tokens": None, "completion_tokens": None, "cached_tokens": None, "finish_reason": None,
           "chunks": 0, "ttft": None, "itl": [], "token_times": [], "text": "", "error": None}
    sse = SSE()
    st = {"done": False, "after_done": 0, "usage_chunks": 0, "objects": set(), "errors": [], "bad": [],
          "status": None, "ctype": None, "body": b""}
    text = []

    def on_event(data, t):
        if st["done"]:
            st["after_done"] += 1
            return
        if data.strip() == "[DONE]":
            st["done"] = True
            return
        try:
            obj = json.loads(data)
        except ValueError:
            st["bad"].append(data[:200])
            return
        if not isinstance(obj, dict):
            st["bad"].append(data[:200])
            return
        if "error" in obj:
            st["errors"].append(obj["error"])
            return
        st["objects"].add(obj.get("object"))
        if obj.get("usage"):
            st["usage_chunks"] += 1
            u = obj["usage"]
            rec["prompt_tokens"] = u.get("prompt_tokens")
            rec["completion_tokens"] = u.get("completion_tokens")
            rec["cached_tokens"] = (u.get("prompt_tokens_details") or {}).get("cached_tokens")
        for c in obj.get("choices") or []:
            s = c.get("text")
            if s is None:
                s = (c.get("delta") or {}).get("content") or ""
            if s:
                rec["chunks"] += 1
                rec["token_times"].append(t)
                text.append(s)
            if c.get("finish_reason"):
                rec["finish_reason"] = c["finish_reason"]

    def on_piece(piece, t):
        if st["status"] != 200 or "text/event-stream" not in (st["ctype"] or ""):
            st["body"] += piece
            if st["status"] == 200:  # not an event stream: parse it anyway, as SSE, for diagnosis
                for data in sse.feed(piece):
                    on_event(data, t)
            return
        for data in sse.feed(piece):
            on_event(data, t)

    def problem(expected, got):
        problems.append({"request": f"{tag}: POST /v1/completions, stream, prompt {len(prompt)} chars "
                                    f"({rec['prompt_tokens']} tokens), max_tokens {max_tokens}, temperature 0",
                         "expected": expected, "got": got})

    rec["t_send"] = time.perf_counter()
    try:
        await http(port, "POST", "/v1/completions", body, on_piece=on_piece,
                   on_head=lambda status, headers: st.update(status=status, ctype=headers.get("content-type")))
    except Exception as e:  # noqa: BLE001 (a benchmark: record it and go on)
        rec["t_end"] = time.perf_counter()
        rec["error"] = f"{type(e).__name__}: {e}"
        problem("a complete HTTP response", rec["error"])
        return rec
    rec["t_end"] = time.perf_counter()
    rec["status"] = st["status"]
    rec["text"] = "".join(text)
    if st["status"] != 200:
        rec["error"] = f"status {st['status']}: {st['body'][:300].decode('utf-8', 'replace')}"
        problem("status 200 with an event stream", rec["error"])
        return rec
    if "text/event-stream" not in (st["ctype"] or ""):
        problem("Content-Type: text/event-stream", f"Content-Type: {st['ctype']}")
    if st["errors"]:
        rec["error"] = f"error event: {st['errors'][0]}"
        problem("no error event", json.dumps(st["errors"][0])[:300])
        return rec
    if st["bad"]:
        problem("every event's data is JSON or [DONE]", f"{len(st['bad'])} bad, e.g. {st['bad'][0]!r}")
    if not st["done"]:
        problem("the stream ends with data: [DONE]", "no [DONE]")
    if st["after_done"]:
        problem("nothing after [DONE]", f"{st['after_done']} more events")
    if st["objects"] - {"text_completion"}:
        problem('chunks with "object":"text_completion"', f"objects {sorted(map(str, st['objects']))}")
    if st["usage_chunks"] != 1:
        problem("exactly one usage chunk (stream_options.include_usage)", f"{st['usage_chunks']}")
    if rec["finish_reason"] not in ("stop", "length"):
        problem('a finish_reason "stop" or "length"', f"{rec['finish_reason']!r}")
    ct = rec["completion_tokens"]
    if ct is None:
        rec["completion_tokens"] = ct = rec["chunks"]  # fall back on the chunk count
    else:
        if ct > max_tokens:
            problem(f"completion_tokens <= max_tokens {max_tokens}", f"{ct}")
        if rec["finish_reason"] == "length" and ct != max_tokens:
            problem(f'finish_reason "length" only with completion_tokens == max_tokens {max_tokens}', f"{ct}")
        if rec["finish_reason"] == "stop" and ct >= max_tokens + 1:
            problem("stop before max_tokens", f"{ct}")
        if rec["chunks"] > ct:
            problem(f"at most completion_tokens ({ct}) text chunks", f"{rec['chunks']} chunks")
        if ct > 0 and rec["chunks"] == 0:
            problem("text chunks for a non-empty completion", f"0 chunks, {ct} completion tokens")
    if rec["token_times"]:
        rec["ttft"] = rec["token_times"][0] - rec["t_send"]
        tt = rec["token_times"]
        rec["itl"] = [b - a for a, b in zip(tt, tt[1:])]
    rec["ok"] = True
    return rec


async def get_json(port, path, timeout=30.0):
    status, _, raw = await http(port, "GET", path, timeout=timeout)
    return status, raw


async def post_json(port, path, body, timeout=900.0):
    status, _, raw = await http(port, "POST", path, body, timeout=timeout)
    try:
        return status, json.loads(raw)
    except ValueError:
        return status, {"raw": raw[:300].decode("utf-8", "replace")}


def parse_metrics(text):
    """Prometheus text -> {name{labels}: value} (samples only)."""
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        parts = line.rsplit(" ", 1)
        if len(parts) == 2:
            try:
                out[parts[0].strip()] = float(parts[1])
            except ValueError:
                pass
    return out


async def metrics(port):
    try:
        status, raw = await get_json(port, "/metrics")
        return parse_metrics(raw.decode("utf-8", "replace")) if status == 200 else {}
    except Exception:  # noqa: BLE001
        return {}


# --------------------------------------------------------------------------------------------------------
# Statistics
# --------------------------------------------------------------------------------------------------------

def pct(xs, p):
    if not xs:
        return None
    s = sorted(xs)
    k = (len(s) - 1) * p / 100.0
    f = math.floor(k)
    c = min(f + 1, len(s) - 1)
    return s[f] + (s[c] - s[f]) * (k - f)


def ms(x):
    return "-" if x is None else f"{x * 1000:.1f}"


def num(x, fmt="{:.1f}"):
    return "-" if x is None else fmt.format(x)


def table(headers, rows):
    w = [max(len(str(h)), *(len(str(r[i])) for r in rows)) if rows else len(str(h)) for i, h in enumerate(headers)]
    line = lambda cells: "| " + " | ".join(str(c).rjust(w[i]) for i, c in enumerate(cells)) + " |"
    return "\n".join([line(headers), "|" + "|".join("-" * (x + 2) for x in w) + "|"] + [line(r) for r in rows])


# --------------------------------------------------------------------------------------------------------
# Server process
# --------------------------------------------------------------------------------------------------------

def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, binary, model, threads, max_seqs, logdir):
        self.port = free_port()
        self.cmd = [binary, "serve", "--model", model, "--port", str(self.port), "--threads", str(threads),
                    "--max-seqs", str(max_seqs)]
        self.log_path = os.path.join(logdir, f"serve-c{max_seqs}-{self.port}.log")
        self.proc = None
        self.exit_code = None
        self.load_s = None

    def tail(self, n=30):
        try:
            with open(self.log_path, errors="replace") as f:
                return "".join(f.readlines()[-n:])
        except OSError:
            return ""

    async def start(self, timeout=600.0):
        log("+", " ".join(self.cmd), f"  (log: {self.log_path})")
        self.logf = open(self.log_path, "wb")
        t0 = time.perf_counter()
        self.proc = subprocess.Popen(self.cmd, stdout=self.logf, stderr=subprocess.STDOUT, cwd=ROOT)
        while time.perf_counter() - t0 < timeout:
            if self.proc.poll() is not None:
                raise RuntimeError(f"ferrite serve exited with {self.proc.returncode} before /health:\n{self.tail()}")
            try:
                status, _ = await get_json(self.port, "/health", timeout=5)
                if status == 200:
                    self.load_s = time.perf_counter() - t0
                    return
            except (OSError, asyncio.TimeoutError, HttpError):
                pass
            await asyncio.sleep(0.2)
        raise RuntimeError(f"ferrite serve not healthy after {timeout:.0f} s:\n{self.tail()}")

    def stop(self, timeout=60.0):
        if self.proc is None or self.proc.poll() is not None:
            self.exit_code = None if self.proc is None else self.proc.returncode
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.exit_code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            self.exit_code = "killed (no exit within 60 s of SIGTERM)"
        self.logf.close()


# --------------------------------------------------------------------------------------------------------
# The runs
# --------------------------------------------------------------------------------------------------------

async def calibrate(port, prompts, problems):
    """Characters per token of each genre, from a 1-token request with a ~300-token prompt."""
    out = {}
    for g in GENRES:
        text = prompts.make(g, 300)
        status, obj = await post_json(port, "/v1/completions",
                                      {"model": "bench", "prompt": text, "max_tokens": 1, "temperature": 0})
        n = ((obj or {}).get("usage") or {}).get("prompt_tokens") if status == 200 else None
        if not n:
            problems.append({"request": f"calibration: POST /v1/completions non-streaming, prompt {len(text)} chars, "
                                        "max_tokens 1", "expected": "200 with usage.prompt_tokens",
                             "got": f"status {status}: {json.dumps(obj)[:300]}"})
            continue
        ch = obj.get("choices") or [{}]
        if obj.get("object") != "text_completion" or "text" not in ch[0]:
            problems.append({"request": "calibration: POST /v1/completions non-streaming",
                             "expected": 'object "text_completion" with choices[0].text',
                             "got": json.dumps(obj)[:300]})
        out[g] = len(text) / n
        prompts.chars_per_token[g] = len(text) / n
    return out


def summarize_level(c, recs, wall, m0, m1):
    ok = [r for r in recs if r["ok"]]
    gen = sum(r["completion_tokens"] or 0 for r in ok)
    prm = sum(r["prompt_tokens"] or 0 for r in ok)
    ttft = [r["ttft"] for r in ok if r["ttft"] is not None]
    itl = [x for r in ok for x in r["itl"]]
    d = lambda k: (m1.get(k, 0) - m0.get(k, 0)) if (k in m1) else None
    return {
        "concurrency": c, "requests": len(recs), "ok": len(ok), "failed": len(recs) - len(ok),
        "wall_s": wall, "completion_tokens": gen, "prompt_tokens": prm,
        "gen_tok_s": gen / wall if wall > 0 else None, "prompt_tok_s": prm / wall if wall > 0 else None,
        "ttft_s": {p: pct(ttft, p) for p in (50, 90, 99)},
        "itl_s": {p: pct(itl, p) for p in (50, 90, 99)},
        "itl_samples": len(itl),
        "multi_token_chunks": sum(1 for r in ok if r["chunks"] < (r["completion_tokens"] or 0)),
        "finish_stop": sum(1 for r in ok if r["finish_reason"] == "stop"),
        "cached_prompt_tokens": sum(r.get("cached_tokens") or 0 for r in ok),
        "metrics_delta": {"generated_tokens": d("ferrite_generated_tokens_total"),
                          "prompt_tokens": d("ferrite_prompt_tokens_total"),
                          "prompt_tokens_cached": d("ferrite_prompt_tokens_cached_total"),
                          "preemptions": d("ferrite_preemptions_total")},
    }


def strip_rec(r):
    out = {k: v for k, v in r.items() if k not in ("token_times", "itl", "text", "t_send", "t_end")}
    out["e2e_s"] = r["t_end"] - r["t_send"]
    out["text_head"] = r["text"][:160]
    if r["itl"]:
        out["itl_max_s"] = max(r["itl"])
        out["itl_mean_s"] = sum(r["itl"]) / len(r["itl"])
    return out


async def load_level(port, c, n, prompts, rng, problems):
    jobs = []
    for i in range(n):
        g = GENRES[rng.randrange(len(GENRES))]
        pt = rng.randint(PROMPT_MIN, PROMPT_MAX)
        jobs.append((f"load c={c} #{i} {g} ~{pt}tok", prompts.make(g, pt), rng.randint(GEN_MIN, GEN_MAX), pt))
    queue = list(reversed(jobs))
    recs = []

    async def client():
        while queue:
            tag, text, mt, pt = queue.pop()
            r = await completion(port, text, mt, tag, problems)
            r["target_prompt_tokens"] = pt
            recs.append(r)
            if not r["ok"]:
                log(f"  {tag}: FAILED {r['error']}")

    t0 = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(c)))
    wall = time.perf_counter() - t0
    return recs, wall


async def batched_style(port, c, prompts, rng, anchor, problems, attempts=4):
    """C requests at once, ~BB_TOKENS-token prompts, exactly BB_TOKENS generated tokens each."""
    result = {"concurrency": c, "attempts": []}
    for attempt in range(attempts):
        texts = []
        if anchor is not None and attempt == 0:
            texts.append(anchor["prompt"])
        while len(texts) < c:
            texts.append(prompts.make_exact(BB_TOKENS))
        t0 = time.perf_counter()
        recs = await asyncio.gather(*(completion(port, t, BB_TOKENS, f"batched c={c} try {attempt} #{i}",
                                                         problems) for i, t in enumerate(texts)))
        t_end = time.perf_counter()
        ok = all(r["ok"] for r in recs)
        short = [i for i, r in enumerate(recs) if r["ok"] and r["completion_tokens"] != BB_TOKENS]
        gen = sum(r["completion_tokens"] or 0 for r in recs if r["ok"])
        wall = t_end - t0
        firsts = [r["token_times"][0] for r in recs if r["ok"] and r["token_times"]]
        rec = {"attempt": attempt, "wall_s": wall, "completion_tokens": gen,
               "prompt_tokens": sum(r["prompt_tokens"] or 0 for r in recs if r["ok"]),
               "all_ok": ok, "short": [(i, recs[i]["completion_tokens"]) for i in short],
               "agg_gen_tok_s": gen / wall if wall > 0 else None, "requests": [strip_rec(r) for r in recs]}
        if ok and firsts and len(firsts) == c:
            t1 = max(firsts)
            t_last = max(r["token_times"][-1] for r in recs)
            after = sum(sum(1 for t in r["token_times"] if t > t1) for r in recs)
            rec["prompt_phase_s"] = t1 - t0
            rec["decode_phase_tok_s"] = after / (t_last - t1) if t_last > t1 else None
            rec["prompt_phase_tok_s"] = rec["prompt_tokens"] / (t1 - t0) if t1 > t0 else None
        result["attempts"].append(rec)
        log(f"  batched c={c} attempt {attempt}: {gen} tokens in {wall:.2f} s = {rec['agg_gen_tok_s']:.1f} tok/s"
            + (f"; short: {rec['short']}" if short else "") + ("" if ok else "; FAILED requests"))
        if ok and not short:
            result.update({k: rec.get(k) for k in ("wall_s", "completion_tokens", "prompt_tokens", "agg_gen_tok_s",
                                                   "decode_phase_tok_s", "prompt_phase_tok_s", "prompt_phase_s")})
            result["valid"] = True
            result["anchor_used"] = anchor is not None and attempt == 0
            result["texts"] = [r["text"] for r in recs]
            result["prompts"] = texts
            return result
        if not ok:
            break
    result["valid"] = False
    return result


def parse_llama(text):
    """llama-batched-bench's markdown table (and its settings line) -> {"rows": [...], "info": {...}}."""
    res = {"rows": [], "info": {}}
    names = ["pp", "tg", "pl", "n_kv", "t_pp", "s_pp", "t_tg", "s_tg", "t", "s"]
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("|"):
            cells = [x.strip() for x in line.strip("|").split("|")]
            if len(cells) == 10 and cells[0].isdigit():
                try:
                    vals = [int(x) for x in cells[:4]] + [float(x) for x in cells[4:]]
                except ValueError:
                    continue
                res["rows"].append(dict(zip(names, vals)))
        elif "n_kv_max =" in line:
            res["info"] = {k: int(v) for k, v in re.findall(r"(\w+) = (-?\d+)", line)}
        elif line.startswith("system_info:"):
            res["system_info"] = line
    return res


def run_llama(model, threads, npl, npp, ntg):
    exe = os.path.join(LLAMA_BIN, "llama-batched-bench")
    if not os.access(exe, os.X_OK):
        log("+ scripts/build-llama-cpp.sh (llama-batched-bench is missing)")
        bindir = subprocess.run([os.path.join(ROOT, "scripts", "build-llama-cpp.sh")], check=True, text=True,
                                stdout=subprocess.PIPE).stdout.strip().splitlines()[-1]
        exe = os.path.join(bindir, "llama-batched-bench")
    ctx = max(npl) * (npp + ntg)
    cmd = [exe, "-m", model, "-c", str(ctx), "-b", "2048", "-ub", "512", "-npp", str(npp), "-ntg", str(ntg),
           "-npl", ",".join(map(str, npl)), "-t", str(threads)]
    log("+", " ".join(cmd))
    t0 = time.perf_counter()
    p = subprocess.run(cmd, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    res = {"cmd": cmd, "returncode": p.returncode, "seconds": time.perf_counter() - t0, "rows": [], "info": {}}
    res.update(parse_llama(p.stdout + "\n" + p.stderr))
    if p.returncode != 0 or not res["rows"]:
        res["error"] = (p.stderr or p.stdout)[-2000:]
        log(f"llama-batched-bench failed (exit {p.returncode}):\n{res['error']}")
    res["table"] = "\n".join(l for l in p.stdout.splitlines() if l.startswith("|"))
    return res


def machine_info(binary):
    info = {"date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
            "command": " ".join([sys.executable] + sys.argv), "cores": os.cpu_count(),
            "platform": platform.platform(), "python": platform.python_version(), "cpu": None,
            "mem_total": None, "loadavg_start": None, "binary": binary}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    info["cpu"] = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        with open("/proc/meminfo") as f:
            info["mem_total"] = f.readline().split(":", 1)[1].strip()
    except (OSError, IndexError):
        pass
    try:
        info["loadavg_start"] = os.getloadavg()
    except OSError:
        pass
    try:
        st = os.stat(binary)
        info["binary_mtime"] = datetime.datetime.fromtimestamp(st.st_mtime).astimezone().isoformat(timespec="seconds")
    except OSError:
        pass
    try:
        info["git_head"] = subprocess.run(["git", "-C", ROOT, "rev-parse", "HEAD"], text=True, capture_output=True,
                                          timeout=10).stdout.strip() or None
        info["git_dirty"] = bool(subprocess.run(["git", "-C", ROOT, "status", "--porcelain", "--untracked-files=no"],
                                                text=True, capture_output=True, timeout=10).stdout.strip())
    except (OSError, subprocess.SubprocessError):
        pass
    return info


async def ferrite_runs(a, binary, levels, problems, logdir):
    prompts = Prompts(a.seed)
    rng = random.Random(a.seed * 7919 + 1)
    out = {"levels": [], "batched": [], "servers": [], "calibration": None}
    anchor = None
    for c in levels:
        srv = Server(binary, a.model, a.threads, c, logdir)
        sinfo = {"concurrency": c, "cmd": srv.cmd, "log": srv.log_path}
        out["servers"].append(sinfo)
        try:
            await srv.start()
            sinfo["load_s"] = srv.load_s
            log(f"== C={c}: server up on port {srv.port} after {srv.load_s:.1f} s")
            # warm-up
            w = await completion(srv.port, prompts.make("prose", 64), 16, f"warm-up c={c}", problems)
            sinfo["warmup"] = strip_rec(w)
            if out["calibration"] is None:
                out["calibration"] = await calibrate(srv.port, prompts, problems)
                log("   characters/token: " + ", ".join(f"{g} {v:.2f}" for g, v in out["calibration"].items()))
            n = a.requests or max(8, 4 * c)
            m0 = await metrics(srv.port)
            recs, wall = await load_level(srv.port, c, n, prompts, rng, problems)
            m1 = await metrics(srv.port)
            lv = summarize_level(c, recs, wall, m0, m1)
            lv["request_records"] = [strip_rec(r) for r in recs]
            tgt = [(r["target_prompt_tokens"], r["prompt_tokens"]) for r in recs if r["ok"] and r["prompt_tokens"]]
            if tgt:
                lv["prompt_size_error_mean"] = sum(abs(b - t) / t for t, b in tgt) / len(tgt)
            out["levels"].append(lv)
            log(f"   load: {lv['ok']}/{lv['requests']} ok, {lv['completion_tokens']} tokens in {wall:.1f} s = "
                f"{num(lv['gen_tok_s'])} tok/s; TTFT p50 {ms(lv['ttft_s'][50])} ms; ITL p50 {ms(lv['itl_s'][50])} ms")
            md = lv["metrics_delta"]
            if md["generated_tokens"] is not None and md["generated_tokens"] != lv["completion_tokens"]:
                problems.append({"request": f"GET /metrics around the C={c} load level",
                                 "expected": f"ferrite_generated_tokens_total to grow by the sum of "
                                             f"usage.completion_tokens, {lv['completion_tokens']}",
                                 "got": f"{md['generated_tokens']:g}"})
            if not a.no_batched:
                b = await batched_style(srv.port, c, prompts, rng, anchor, problems)
                if b["valid"] and anchor is None:
                    anchor = {"prompt": b["prompts"][0], "text": b["texts"][0], "concurrency": c}
                elif b.get("anchor_used"):
                    same = b["texts"][0] == anchor["text"]
                    b["greedy_matches_anchor"] = same
                    if not same:
                        problems.append({
                            "request": f"batched c={c} #0: the same greedy prompt as at C={anchor['concurrency']}",
                            "expected": "the same text whatever the batch (docs/server.md)",
                            "got": f"C={anchor['concurrency']}: {anchor['text'][:120]!r} / C={c}: {b['texts'][0][:120]!r}"})
                b.pop("prompts", None)
                b["texts"] = [t[:200] for t in b.get("texts", [])]
                out["batched"].append(b)
        finally:
            srv.stop()
            sinfo["exit_code"] = srv.exit_code
            if srv.exit_code not in (0, None):
                problems.append({"request": f"SIGTERM to the C={c} server (idle)", "expected": "exit status 0",
                                 "got": f"{srv.exit_code}; log tail: {srv.tail(5)[-400:]}"})
    return out


def report(a, levels, res, llama, problems):
    lines = []
    P = lines.append
    L = {lv["concurrency"]: lv for lv in res.get("levels", [])}
    base = L.get(1)
    rows = []
    for lv in res.get("levels", []):
        ratio = (lv["gen_tok_s"] / base["gen_tok_s"]) if base and base["gen_tok_s"] and lv["gen_tok_s"] else None
        rows.append([lv["concurrency"], f"{lv['ok']}/{lv['requests']}", lv["prompt_tokens"], lv["completion_tokens"],
                     num(lv["wall_s"]), num(lv["gen_tok_s"]), num(lv["prompt_tok_s"]),
                     ms(lv["ttft_s"][50]), ms(lv["ttft_s"][90]), ms(lv["ttft_s"][99]),
                     ms(lv["itl_s"][50]), ms(lv["itl_s"][90]), ms(lv["itl_s"][99]),
                     num(ratio, "{:.2f}x")])
    P(f"ferrite serve load test: {os.path.basename(a.model)}, --threads {a.threads}, prompts {PROMPT_MIN}-{PROMPT_MAX} "
      f"tokens, max_tokens {GEN_MIN}-{GEN_MAX}, temperature 0, seed {a.seed}")
    P(table(["C", "req ok", "prompt tok", "gen tok", "wall s", "gen tok/s", "prompt tok/s", "TTFT p50 ms", "p90",
             "p99", "ITL p50 ms", "p90", "p99", "vs C=1"], rows))
    extra = [f"C={lv['concurrency']}: {lv['finish_stop']} ended at EOS, {lv['multi_token_chunks']} with fewer text chunks than "
             f"tokens, cached prompt tokens {lv['cached_prompt_tokens']}, preemptions "
             f"{num(lv['metrics_delta']['preemptions'], '{:g}')}" for lv in res.get("levels", [])]
    if extra:
        P("  " + "; ".join(extra))
    P("")
    B = {b["concurrency"]: b for b in res.get("batched", [])}
    LR = {r["pl"]: r for r in (llama or {}).get("rows", [])}
    if B or LR:
        P(f"batched-bench style: C sequences at once, ~{BB_TOKENS}-token prompts (llama: exactly {BB_TOKENS} random tokens), "
          f"exactly {BB_TOKENS} generated tokens each")
        rows = []
        fb1 = B.get(1, {}).get("agg_gen_tok_s") if B.get(1, {}).get("valid") else None
        for c in levels:
            b = B.get(c, {})
            fv = b.get("agg_gen_tok_s") if b.get("valid") else None
            lr = LR.get(c)
            pmean = b["prompt_tokens"] / c if b.get("valid") and b.get("prompt_tokens") else None
            rows.append([c, num(pmean, "{:.0f}"), num(fv), num(b.get("decode_phase_tok_s") if b.get("valid") else None),
                         num(lr["s_tg"] if lr else None), num(lr["s_pp"] if lr else None),
                         num(fv / lr["s_tg"] if fv and lr else None, "{:.2f}x"),
                         num(fv / fb1 if fv and fb1 else None, "{:.2f}x"),
                         (f"{len(b['attempts'])}" + ("" if b.get("valid") else " (none valid)")) if b else "-"])
        P(table(["C", "prompt tok/seq", "ferrite gen tok/s", "ferrite decode-phase tok/s", "llama S_TG t/s", "llama S_PP t/s",
                 "ferrite/llama", "ferrite vs C=1", "tries"], rows))
        P("  ferrite gen tok/s = C*128 / (first send -> last token), prompt processing included; decode-phase = "
          "tokens after every sequence has its first one / time to the end (closer to how S_TG is timed)")
        if llama and llama.get("rows"):
            P(f"  llama.cpp: {' '.join(os.path.basename(x) if i in (0, 2) else x for i, x in enumerate(llama['cmd']))}")
        for c, b in sorted(B.items()):
            if "greedy_matches_anchor" in b:
                P(f"  greedy text of the shared prompt at C={c} vs C={res['batched'][0]['concurrency']}: "
                  f"{'identical' if b['greedy_matches_anchor'] else 'DIFFERENT'}")
        P("")
    # targets
    top = max(levels)
    P(f"targets (stated for Qwen2.5-Coder-0.5B Q4_K_M at 8 sequences; checked here at C={top} vs C=1):")
    verdicts = []

    def verdict(name, value, limit, op, detail):
        if value is None:
            P(f"  SKIP  {name}: {detail}")
            verdicts.append((name, None))
            return
        ok = value >= limit if op == ">=" else value < limit
        P(f"  {'PASS' if ok else 'FAIL'}  {name}: {value:.2f} {op} {limit:g}  ({detail})")
        verdicts.append((name, ok))

    bt = B.get(top, {})
    fv = bt.get("agg_gen_tok_s") if bt.get("valid") else None
    lr = LR.get(top)
    verdict(f"ferrite / llama-batched-bench generated tok/s at {top}", fv / lr["s_tg"] if fv and lr else None,
            TARGET_VS_LLAMA, ">=", f"ferrite {num(fv)} tok/s (batched-bench style), llama S_TG {num(lr['s_tg'] if lr else None)}"
            if fv and lr else "needs --concurrency with the level, llama.cpp and a valid batched run")
    t8, t1 = L.get(top), base
    verdict(f"ferrite C={top} / C=1 generated tok/s (load test)",
            t8["gen_tok_s"] / t1["gen_tok_s"] if t8 and t1 and top != 1 else None, TARGET_SCALING, ">=",
            f"{num(t8['gen_tok_s'])} vs {num(t1['gen_tok_s'])} tok/s" if t8 and t1 and top != 1 else "needs levels 1 and another")
    b1 = B.get(1, {})
    fb1 = b1.get("agg_gen_tok_s") if b1.get("valid") else None
    verdict(f"ferrite C={top} / C=1 generated tok/s (batched-bench style)",
            fv / fb1 if fv and fb1 and top != 1 else None, TARGET_SCALING, ">=",
            f"{num(fv)} vs {num(fb1)} tok/s" if fv and fb1 and top != 1 else "needs levels 1 and another")
    i8 = t8["itl_s"][99] if t8 else None
    i1 = t1["itl_s"][99] if t1 else None
    verdict(f"ITL p99 at C={top} / ITL p99 at C=1 (load test)", i8 / i1 if i8 and i1 and top != 1 else None,
            TARGET_ITL, "<", f"{ms(i8)} vs {ms(i1)} ms" if i8 and i1 and top != 1 else "needs levels 1 and another")
    P("")
    if problems:
        P(f"server misbehaviour seen ({len(problems)}):")
        for p in problems[:40]:
            P(f"  - {p['request']}\n      expected: {p['expected']}\n      got: {p['got']}")
        if len(problems) > 40:
            P(f"  ... and {len(problems) - 40} more (see --json)")
    else:
        P("server misbehaviour seen: none")
    return "\n".join(lines), verdicts


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True, help="GGUF file")
    ap.add_argument("--concurrency", default="1,8", help="comma-separated concurrency levels (default 1,8)")
    ap.add_argument("--requests", type=int, default=None, help="requests per level (default max(8, 4*C))")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--binary", default=None, help="ferrite binary (default $FERRITE_BIN, else target/release/ferrite)")
    ap.add_argument("--no-llama", action="store_true", help="skip llama-batched-bench")
    ap.add_argument("--no-batched", action="store_true", help="skip ferrite's batched-bench-style run")
    ap.add_argument("--json", default=None, help="write every number here")
    a = ap.parse_args()
    levels = sorted({int(x) for x in a.concurrency.split(",") if x.strip()})
    if not levels or min(levels) < 1:
        ap.error("--concurrency needs positive integers")
    a.model = os.path.abspath(a.model)
    if not os.path.isfile(a.model):
        ap.error(f"no model file {a.model}")
    binary = os.path.abspath(a.binary or os.environ.get("FERRITE_BIN") or os.path.join(ROOT, "target", "release", "ferrite"))
    if not os.access(binary, os.X_OK):
        ap.error(f"no ferrite binary at {binary} (--binary or FERRITE_BIN)")

    info = machine_info(binary)
    log(f"machine: {info['cpu']}, {info['cores']} cores, load {info['loadavg_start']}")
    problems = []
    llama = None
    if not a.no_llama:
        llama = run_llama(a.model, a.threads, levels, BB_TOKENS, BB_TOKENS)
        if llama.get("table"):
            log(llama["table"])
    logdir = tempfile.mkdtemp(prefix="ferrite-load-")
    res = {}
    err = None
    try:
        res = asyncio.run(ferrite_runs(a, binary, levels, problems, logdir))
    except KeyboardInterrupt:
        err = "interrupted"
    except Exception as e:  # noqa: BLE001
        err = f"{type(e).__name__}: {e}"
        log(f"error: {err}")
    text, verdicts = report(a, levels, res, llama, problems)
    print(text, flush=True)
    if a.json:
        doc = {"machine": info, "model": a.model, "threads": a.threads, "seed": a.seed, "concurrency": levels,
               "prompt_tokens_range": [PROMPT_MIN, PROMPT_MAX], "max_tokens_range": [GEN_MIN, GEN_MAX],
               "batched_tokens": BB_TOKENS, "llama": llama, "ferrite": res, "problems": problems,
               "verdicts": [{"target": n, "pass": ok} for n, ok in verdicts], "error": err,
               "server_logs": logdir}
        with open(a.json, "w") as f:
            json.dump(doc, f, indent=1, default=str)
        log(f"wrote {a.json}")
    sys.exit(1 if err else 0)


if __name__ == "__main__":
    main()
