#!/usr/bin/env python3
"""Expected token ids and texts for ferrite-tokenizer, from llama.cpp (commit 0c1e570).

    scripts/reference/tokenizer_fixtures.py    # writes crates/ferrite-tokenizer/tests/fixtures/llama_tokenize.json

Needs the llama.cpp build (`scripts/build-llama-cpp.sh`: the `llama-tokenize` tool and the static
libraries) and the models (`scripts/fetch-models.sh`).

Ids: every corpus string is written to a file and tokenized with
`llama-tokenize -f FILE --no-escape --ids --log-disable`, once parsing special tokens (the tool's default)
and once with `--no-parse-special`; BOS is added as the model's metadata says (the tool's default), which
the fixture records per target as `add_special`.

Special ids: what llama.cpp prints when loading each model and vocab file (BOS, EOS, EOT, EOM, UNK,
PAD and the end-of-generation set).

Texts: `detokenize_reference.cpp` (built here against libllama.a) runs `llama_detokenize` on the ids of
each string (special tokens parsed) and on random id sequences, rendering special tokens or not.
"""

import concurrent.futures
import json
import os
import random
import re
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CACHE = Path(os.environ.get("FERRITE_CACHE", ROOT / ".cache"))
LLAMA = CACHE / "llama_cpp_python-0.3.36"
TOOL = Path(os.environ.get("LLAMA_TOKENIZE", LLAMA / "build/bin/llama-tokenize"))
MODELS = Path(os.environ.get("FERRITE_MODELS", ROOT / "models"))
VOCABS = LLAMA / "vendor/llama.cpp/models"
OUT = ROOT / "crates/ferrite-tokenizer/tests/fixtures/llama_tokenize.json"

# (directory key, file): the three models of crates/ferrite-testdata, and llama.cpp vocab-only files
# that cover what those three do not (SentencePiece with a space prefix, phi-3's strip rules, Llama-3's
# ignore_merges, GPT-2's space clean-up, Gemma 4's SentencePiece-style BPE).
TARGETS = [
    ("models", "smollm2-135m-instruct-q4_1.gguf"),  # gpt2 / smollm
    ("models", "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf"),  # gpt2 / qwen2
    ("models", "gemma3-270m-q4_k_m.gguf"),  # llama (SentencePiece), no space prefix
    ("llama.cpp", "ggml-vocab-llama-spm.gguf"),
    ("llama.cpp", "ggml-vocab-phi-3.gguf"),
    ("llama.cpp", "ggml-vocab-llama-bpe.gguf"),
    ("llama.cpp", "ggml-vocab-gpt-2.gguf"),
    ("llama.cpp", "ggml-vocab-gemma-4.gguf"),
]

CORPUS = [
    "",
    " ",
    "  ",
    "\n",
    "\n\n\n",
    "\r",
    " \n ",
    "Hello world",
    " Hello world",
    "  leading and trailing  ",
    "trailing spaces   ",
    "Hello\nworld",
    "line1\r\nline2\r\n\r\nline4",
    "\t\ttabs\tand  spaces   \n\n\n  x",
    "   \n   \n\t \r\n  ",
    "café naïve résumé Ångström",
    "cafe\u0301 nai\u0308ve re\u0301sume\u0301",
    "Ünïcödé ÀÉÎÕÜ ß ẞ ǅ ﬁ ﬂ",
    "👍🏽 👨\u200d👩\u200d👧\u200d👦 🏳\ufe0f\u200d🌈 😀😃😄",
    "emoji skin tones 👋🏻👋🏼👋🏽👋🏾👋🏿 and flags 🇺🇸🇯🇵🇩🇪",
    "❤\ufe0f ✅ ☕ 🦙 🚀 (normal) 😶\u200d🌫\ufe0f",
    "我想在apple工作1314151天～",
    "日本語のテキスト、カタカナとひらがな。",
    "한국어 텍스트입니다. 안녕하세요!",
    "مرحبا بالعالم، كيف حالك؟",
    "שלום עולם! The word שלום means peace.",
    "Mixed русский English 中文 العربية עברית ελληνικά",
    "ภาษาไทยไม่มีช่องว่าง नमस्ते दुनिया កាន់តែពិសេស",
    "a\u00a0b\u3000c\u2003d\u2028e\u0085f",
    "Zero\u200bwidth\u200cjoiners\u200d here\ufeff",
    "bell\u0007 esc\u001b[0m nul\u0000end",
    "def foo(x):\n    if x > 0:\n        return x ** 2\n    return -x\n",
    'fn main() {\n\tprintln!("{}", 42);\n}\n',
    '{"key": [1, 2.5e-3, null], "k2": "v\\n"}',
    "# Title\n\n- item 1\n- item 2\n\n```python\nprint('hi')\n```\n",
    "3.14159265358979323846",
    "1234567890123456789 and 00012 and 1,000,000.00",
    "0x1F 0b1010 1e10 -42 +7 2^10=1024 10/2=5",
    "$100 €50 £30 ¥1000 ₹500",
    "math: ∑_{i=1}^{n} x_i² ≤ ∞ ± √2 ≠ π",
    "URL https://example.com/path?q=1&r=2#frag user@mail.org",
    "!!!???...,,,;;;::: '''\"\"\"```",
    "I'm, you're, it's, we've, they'll, he'd; DON'T 'S 'Re",
    "ALLCAPS lowercase MiXeD CamelCase snake_case kebab-case",
    "Pneumonoultramicroscopicsilicovolcanoconiosis",
    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
    "<0x0A> <0xFF> ▁ Ġ Ċ ▁▁",
    "<|im_start|>system\nYou are helpful.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n",
    " <|im_start|> spaced <|im_end|> ",
    "<|im_start|",
    "<<|im_end|>>",
    "<|endoftext|>",
    "<|im_end|>",
    "<start_of_turn>user\nHello<end_of_turn>\n<start_of_turn>model\n",
    "<end_of_turn>",
    "<bos><eos><pad><unk>",
    "<s> </s> <unk>",
    "<|fim_prefix|>def f():<|fim_suffix|>\n<|fim_middle|>",
    "<think>\nreasoning\n</think>",
    "<tool_call>\n{\"name\": \"f\"}\n</tool_call>",
    "The quick brown fox jumps over the lazy dog. It wasn't the dog's fault; "
    "the fox—being quick—had simply planned ahead (as foxes do).",
]


def tokenize(model: Path, text: str, parse_special: bool, bos: bool = True) -> list:
    with tempfile.NamedTemporaryFile("wb", suffix=".txt", delete=False) as f:
        f.write(text.encode("utf-8"))
        path = f.name
    try:
        args = [str(TOOL), "-m", str(model), "-f", path, "--no-escape", "--ids", "--log-disable"]
        if not parse_special:
            args.append("--no-parse-special")
        if not bos:
            args.append("--no-bos")
        out = subprocess.run(args, check=True, capture_output=True).stdout.decode()
    finally:
        os.unlink(path)
    line = [l for l in out.splitlines() if l.startswith("[")][-1]
    return json.loads(line)


def n_tokens(model: Path) -> int:
    sys.path.insert(0, str(LLAMA / "vendor/llama.cpp/gguf-py"))
    from gguf import GGUFReader  # the reader that ships with llama.cpp

    return len(GGUFReader(str(model)).fields["tokenizer.ggml.tokens"].data)


def build_detokenizer(tmp: Path) -> Path:
    exe = tmp / "detokenize_reference"
    src = LLAMA / "vendor/llama.cpp"
    lib = LLAMA / "build"
    subprocess.run(
        ["g++", "-O1", "-std=c++17", f"-I{src}/include", f"-I{src}/ggml/include",
         str(Path(__file__).with_name("detokenize_reference.cpp")), "-o", str(exe),
         f"{lib}/src/libllama.a", f"{lib}/ggml/src/libggml.a", f"{lib}/ggml/src/libggml-cpu.a",
         f"{lib}/ggml/src/libggml-base.a", "-fopenmp", "-lpthread", "-ldl"],
        check=True)
    return exe


def detokenize(exe: Path, model: Path, requests: list) -> list:
    """requests: (remove_special, unparse_special, ids) → hex of the bytes."""
    lines = "".join(f"{int(r)} {int(u)} {' '.join(map(str, ids))}\n" for r, u, ids in requests)
    out = subprocess.run([str(exe), str(model)], input=lines.encode(), check=True, capture_output=True)
    replies = out.stdout.decode().split("\n")[: len(requests)]
    assert len(replies) == len(requests)
    return replies


def target(exe: Path, where: str, name: str) -> dict:
    path = (MODELS if where == "models" else VOCABS) / name
    if not path.exists():
        raise SystemExit(f"{path} is missing: run scripts/fetch-models.sh / scripts/build-llama-cpp.sh")
    # Whether the tool adds BOS: compare with --no-bos.
    add_special = len(tokenize(path, "x", True)) != len(tokenize(path, "x", True, bos=False))
    parse = [tokenize(path, t, True) for t in CORPUS]
    no_parse = [tokenize(path, t, False) for t in CORPUS]
    rng = random.Random(name)
    vocab_size = n_tokens(path)
    # Random sequences over the whole vocabulary: ids from the front (special and byte tokens live
    # there), from what the corpus used, and from anywhere below the largest id seen.
    used = sorted({i for ids in parse for i in ids})
    random_ids = []
    for k in range(12):
        seq = []
        for _ in range(16):
            pick = rng.random()
            if pick < 0.3:
                seq.append(rng.randrange(0, 300))
            elif pick < 0.6:
                seq.append(rng.choice(used))
            else:
                seq.append(rng.randrange(0, vocab_size))
        random_ids.append(seq)
    requests = [(False, False, ids) for ids in parse] + [(False, True, ids) for ids in parse]
    for ids in random_ids:
        requests += [(False, False, ids), (False, True, ids), (True, False, ids)]
    replies = detokenize(exe, path, requests)
    n = len(parse)
    rand = replies[2 * n:]
    print(f"{name}: {len(CORPUS)} texts", file=sys.stderr)
    return {
        "in": where,
        "file": name,
        "add_special": add_special,
        "parse_special": parse,
        "no_parse_special": no_parse,
        "decode": replies[:n],
        "decode_unparse": replies[n:2 * n],
        "random_ids": random_ids,
        "random_decode": [rand[3 * i: 3 * i + 3] for i in range(len(random_ids))],
    }


def special_ids(path: Path) -> dict:
    """The special ids llama.cpp reports when loading (print_info): bos, eos, eot, eom, unk, pad, and the
    sorted end-of-generation set."""
    out = subprocess.run([str(TOOL), "-m", str(path), "-p", "x", "--ids", "-v"], capture_output=True)
    info = {"eog": []}
    for line in (out.stdout + out.stderr).decode(errors="replace").splitlines():
        m = re.search(r"print_info: (BOS|EOS|EOT|EOM|UNK|PAD|EOG) token\s+= (\d+) ", line)
        if not m:
            continue
        if m.group(1) == "EOG":
            info["eog"].append(int(m.group(2)))
        else:
            info[m.group(1).lower()] = int(m.group(2))
    return info


def main() -> int:
    if not TOOL.exists():
        print(f"{TOOL} is missing: run scripts/build-llama-cpp.sh", file=sys.stderr)
        return 1
    version = subprocess.run([str(TOOL), "--version"], capture_output=True, text=True)
    with tempfile.TemporaryDirectory() as tmp:
        exe = build_detokenizer(Path(tmp))
        with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
            targets = list(pool.map(lambda t: target(exe, *t), TARGETS))
    # Special ids of every model and llama.cpp vocab file.
    files = [MODELS / name for where, name in TARGETS if where == "models"] + sorted(VOCABS.glob("ggml-vocab-*.gguf"))
    special = {f.name: special_ids(f) for f in files}
    fixture = {
        "generated_by": "scripts/reference/tokenizer_fixtures.py",
        "llama_tokenize": (version.stdout + version.stderr).strip().splitlines()[0],
        "corpus": CORPUS,
        "targets": targets,
        "special_ids": special,
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(fixture, ensure_ascii=True, separators=(",", ":")) + "\n")
    print(f"wrote {OUT} ({OUT.stat().st_size} bytes)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
