"""POST /v1/chat/completions: responses, streaming, logprobs, seeds."""

from __future__ import annotations

import json
import math

from ferrite_util import collect_chat_stream, user

STORY = "Write a story about a dragon who learns to bake bread."
SHORT = "What is 2+2? Answer with a number only."


def check_usage(usage, max_tokens: int, finish_reason: str):
    assert usage is not None, "no usage"
    assert usage.prompt_tokens > 0
    assert usage.completion_tokens >= 1
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens, usage
    assert usage.completion_tokens <= max_tokens, usage
    # no stop strings: "length" exactly when the token limit was reached
    assert (finish_reason == "length") == (usage.completion_tokens == max_tokens), (finish_reason, usage)


def test_chat_non_streaming(client, model_id):
    r = client.chat.completions.create(model=model_id, messages=user(STORY), temperature=0, max_tokens=16)
    assert r.object == "chat.completion"
    assert r.id.startswith("chatcmpl-"), r.id
    assert isinstance(r.created, int) and r.created > 1_600_000_000
    assert r.model == model_id
    assert len(r.choices) == 1
    ch = r.choices[0]
    assert ch.index == 0
    assert ch.message.role == "assistant"
    assert isinstance(ch.message.content, str) and ch.message.content.strip()
    assert ch.logprobs is None
    # a story does not end within 16 tokens
    assert ch.finish_reason == "length"
    assert r.usage.completion_tokens == 16
    check_usage(r.usage, 16, ch.finish_reason)


def test_chat_finish_stop(client, model_id):
    """An answer that ends by itself: finish_reason stop, fewer tokens than max_tokens."""
    r = client.chat.completions.create(model=model_id, messages=user(SHORT), temperature=0, max_tokens=48)
    ch = r.choices[0]
    assert ch.message.content.strip()
    assert ch.finish_reason == "stop", (ch.finish_reason, ch.message.content)
    assert r.usage.completion_tokens < 48
    check_usage(r.usage, 48, ch.finish_reason)


def test_chat_streaming_matches_non_streaming(client, model_id):
    req = dict(model=model_id, messages=user(STORY), temperature=0, max_tokens=32)
    full = client.chat.completions.create(**req)
    s = collect_chat_stream(client, stream_options={"include_usage": True}, **req)

    assert s.chunks, "no chunks"
    for c in s.chunks:
        assert c.object == "chat.completion.chunk", c
        assert c.id.startswith("chatcmpl-")
    assert len({c.id for c in s.chunks}) == 1, "chunks of one response must share an id"

    first = s.chunks[0]
    assert len(first.choices) == 1
    assert first.choices[0].delta.role == "assistant"
    assert first.choices[0].delta.content in ("", None)
    assert first.choices[0].finish_reason is None

    # the usage chunk comes last, with no choices
    last = s.chunks[-1]
    assert last.choices == [], last
    assert last.usage is not None
    for c in s.chunks[:-1]:
        assert c.usage is None, c
    # before it: the finish chunk with an empty delta
    fin = s.chunks[-2]
    assert len(fin.choices) == 1
    assert fin.choices[0].finish_reason == full.choices[0].finish_reason
    assert not fin.choices[0].delta.content
    for c in s.chunks[:-2]:
        assert c.choices[0].finish_reason is None

    assert s.text == full.choices[0].message.content
    assert s.finish_reason == full.choices[0].finish_reason
    for key in ("prompt_tokens", "completion_tokens", "total_tokens"):
        assert getattr(s.usage, key) == getattr(full.usage, key), (key, s.usage, full.usage)


def test_chat_streaming_without_usage(client, model_id):
    s = collect_chat_stream(client, model=model_id, messages=user(SHORT), temperature=0, max_tokens=24)
    assert s.usage is None
    assert all(c.choices for c in s.chunks), "no choices-less usage chunk without include_usage"
    assert s.chunks[-1].choices[0].finish_reason == "stop"
    assert s.text.strip()


def test_chat_streaming_multibyte(client, model_id):
    """Deltas carry whole UTF-8 characters: their concatenation equals the non-streaming text."""
    req = dict(model=model_id, messages=user("请用中文介绍一下长城。"), temperature=0, max_tokens=32)
    full = client.chat.completions.create(**req).choices[0].message.content
    s = collect_chat_stream(client, **req)
    assert s.text == full
    assert any(ord(c) > 127 for c in full), f"expected non-ASCII output, got {full!r}"
    if "\ufffd" not in full:
        for c in s.chunks:
            for ch in c.choices:
                assert "\ufffd" not in (ch.delta.content or ""), c


def test_raw_sse(http, model_id):
    body = {"model": model_id, "messages": user(SHORT), "temperature": 0, "max_tokens": 16, "stream": True,
            "stream_options": {"include_usage": True}}
    with http.stream("POST", "/v1/chat/completions", json=body) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream"), r.headers["content-type"]
        raw = r.read().decode("utf-8")
    assert raw.rstrip("\r\n").endswith("data: [DONE]"), raw[-200:]
    events = [e for e in raw.replace("\r\n", "\n").split("\n\n") if e.strip()]
    datas = []
    for e in events:
        lines = [ln for ln in e.split("\n") if not ln.startswith(":")]  # ':' lines are SSE comments
        if not lines:
            continue
        assert len(lines) == 1 and lines[0].startswith("data: "), f"unexpected SSE event {e!r}"
        datas.append(lines[0][len("data: "):])
    assert datas[-1] == "[DONE]"
    assert "[DONE]" not in datas[:-1]
    chunks = [json.loads(d) for d in datas[:-1]]
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["total_tokens"] > 0
    assert chunks[-2]["choices"][0]["finish_reason"] in ("stop", "length")


def test_content_parts_and_unknown_fields(client, model_id):
    """content as a list of text parts == the plain string; unknown fields are ignored;
    max_completion_tokens is honoured; any model name is accepted."""
    base = client.chat.completions.create(model=model_id, messages=user(STORY), temperature=0, max_tokens=12)
    parts = client.chat.completions.create(
        model="some-other-name",
        messages=[{"role": "user", "content": [{"type": "text", "text": STORY}]}],
        temperature=0, max_completion_tokens=12,
        extra_body={"no_such_field": 1, "another_unknown": {"x": [1, 2]}})
    assert parts.choices[0].message.content == base.choices[0].message.content
    assert parts.usage.completion_tokens == 12
    assert parts.usage.prompt_tokens == base.usage.prompt_tokens


def test_multi_turn_roles(client, model_id):
    msgs = [{"role": "system", "content": "You are a terse assistant."},
            {"role": "user", "content": "Name a colour."},
            {"role": "assistant", "content": "Blue."},
            {"role": "user", "content": "Name another one."}]
    r = client.chat.completions.create(model=model_id, messages=msgs, temperature=0, max_tokens=12)
    assert r.choices[0].message.content.strip()
    # without the earlier turns (same system message, so the template adds no default one)
    short = client.chat.completions.create(model=model_id, messages=[msgs[0], msgs[-1]], temperature=0,
                                           max_tokens=1)
    assert r.usage.prompt_tokens >= short.usage.prompt_tokens + 8, "earlier turns must be part of the prompt"


def test_chat_logprobs(client, model_id):
    r = client.chat.completions.create(model=model_id, messages=user(STORY), temperature=0, max_tokens=16,
                                       logprobs=True, top_logprobs=3)
    ch = r.choices[0]
    assert ch.finish_reason == "length"
    assert ch.logprobs is not None and ch.logprobs.content is not None
    entries = ch.logprobs.content
    assert len(entries) == r.usage.completion_tokens == 16
    for e in entries:
        assert isinstance(e.token, str)
        assert math.isfinite(e.logprob) and e.logprob <= 1e-6, e
        assert len(e.top_logprobs) == 3, e
        tops = [t.logprob for t in e.top_logprobs]
        assert all(math.isfinite(t) and t <= 1e-6 for t in tops), e
        assert tops == sorted(tops, reverse=True), f"top_logprobs not sorted descending: {tops}"
        # greedy: the chosen token is the most likely one
        assert abs(e.logprob - tops[0]) <= 1e-4, e
        assert e.token in [t.token for t in e.top_logprobs if abs(t.logprob - tops[0]) <= 1e-4], e
    text = ch.message.content
    if text.isascii():
        assert "".join(e.token for e in entries) == text


def test_chat_logprobs_streaming(client, model_id):
    s = collect_chat_stream(client, model=model_id, messages=user(STORY), temperature=0, max_tokens=8,
                            logprobs=True, top_logprobs=2)
    entries = [e for c in s.chunks for ch in c.choices if ch.logprobs and ch.logprobs.content
               for e in ch.logprobs.content]
    assert len(entries) == 8
    assert all(len(e.top_logprobs) == 2 for e in entries)


def test_seed_reproducible(client, model_id):
    req = dict(model=model_id, messages=user("Tell me a short story about a cat."), temperature=0.8,
               max_tokens=24)
    a = client.chat.completions.create(seed=1234, **req)
    b = client.chat.completions.create(seed=1234, **req)
    assert a.choices[0].message.content == b.choices[0].message.content
    for r in (a, b):
        assert 1 <= r.usage.completion_tokens <= 24
    # the seed and the temperature matter: three other seeds do not all give the same text
    others = {client.chat.completions.create(seed=s, **req).choices[0].message.content for s in (1, 2, 3)}
    assert others != {a.choices[0].message.content}, "temperature 0.8 ignores the seed"


def test_max_tokens_respected_sampling(client, model_id):
    r = client.chat.completions.create(model=model_id, messages=user(STORY), temperature=0.8, seed=7,
                                       max_tokens=5)
    assert r.usage.completion_tokens <= 5
    assert r.choices[0].finish_reason in ("stop", "length")
    assert (r.choices[0].finish_reason == "length") == (r.usage.completion_tokens == 5)
