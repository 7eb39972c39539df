"""Stop strings: generation ends before the first occurrence; the stop string is not included."""

from __future__ import annotations

import re

from ferrite_util import collect_chat_stream, collect_completion_stream, user

PROMPT = "Write a story about a dragon who learns to bake bread."
MAX = 40


def pick_stop(text: str) -> tuple[str, str]:
    """A word from the middle of `text` (not at its very start) and the text before its first occurrence."""
    words = [m for m in re.finditer(r"[A-Za-z]{4,}", text)]
    assert len(words) >= 4, f"too few words to pick a stop string from: {text!r}"
    mid = len(words) // 2
    for m in words[mid:] + words[:mid]:
        w = m.group(0)
        idx = text.find(w)
        if idx > 0:
            return w, text[:idx]
    raise AssertionError(f"no usable stop word in {text!r}")


def test_chat_stop_string(client, model_id):
    req = dict(model=model_id, messages=user(PROMPT), temperature=0, max_tokens=MAX)
    free = client.chat.completions.create(**req)
    text = free.choices[0].message.content
    stop, before = pick_stop(text)

    r = client.chat.completions.create(stop=stop, **req)
    assert r.choices[0].message.content == before, (stop, text)
    assert r.choices[0].finish_reason == "stop"
    assert r.usage.completion_tokens < free.usage.completion_tokens

    # a list, with a string that never occurs
    r2 = client.chat.completions.create(stop=["@@never@@", stop], **req)
    assert r2.choices[0].message.content == before
    assert r2.choices[0].finish_reason == "stop"

    # streaming holds back text that might start a stop string
    s = collect_chat_stream(client, stop=[stop], **req)
    assert s.text == before
    assert s.finish_reason == "stop"
    assert stop not in "".join(c.choices[0].delta.content or "" for c in s.chunks if c.choices)


def test_completion_stop_string(client, model_id):
    req = dict(model=model_id, prompt="Once upon a time, in a small village by the sea,", temperature=0,
               max_tokens=MAX)
    free = client.completions.create(**req)
    text = free.choices[0].text
    stop, before = pick_stop(text)
    r = client.completions.create(stop=[stop], **req)
    assert r.choices[0].text == before, (stop, text)
    assert r.choices[0].finish_reason == "stop"
    s = collect_completion_stream(client, stop=stop, **req)
    assert s.text == before
    assert s.finish_reason == "stop"


def test_stop_string_spanning_tokens(client, model_id):
    """A stop string made of the end of one word and the start of the next."""
    req = dict(model=model_id, messages=user(PROMPT), temperature=0, max_tokens=MAX)
    text = client.chat.completions.create(**req).choices[0].message.content
    m = [m for m in re.finditer(r"[a-z]{3,} [a-z]{3,}", text)]
    assert m, text
    m = m[len(m) // 2]
    a, b = m.group(0).split(" ")
    stop = a[-2:] + " " + b[:2]
    idx = text.find(stop)
    assert idx > 0
    r = client.chat.completions.create(stop=stop, **req)
    assert r.choices[0].message.content == text[:idx], (stop, text)
    assert r.choices[0].finish_reason == "stop"
    # streamed, the start of the stop string must be held back until it is known not to match
    s = collect_chat_stream(client, stop=[stop], **req)
    assert s.text == text[:idx], (stop, text)
    assert s.finish_reason == "stop"
