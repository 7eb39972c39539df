"""POST /v1/completions with a raw prompt."""

from __future__ import annotations

import math

from ferrite_util import collect_completion_stream

PROMPT = "The three most important inventions of the nineteenth century were"


def test_completion_non_streaming(client, model_id):
    r = client.completions.create(model=model_id, prompt=PROMPT, temperature=0, max_tokens=20)
    assert r.object == "text_completion"
    assert r.model == model_id
    assert len(r.choices) == 1
    ch = r.choices[0]
    assert ch.index == 0
    assert isinstance(ch.text, str) and ch.text.strip()
    assert ch.finish_reason in ("stop", "length")
    u = r.usage
    assert u.prompt_tokens > 0 and u.total_tokens == u.prompt_tokens + u.completion_tokens
    assert 1 <= u.completion_tokens <= 20
    assert (ch.finish_reason == "length") == (u.completion_tokens == 20)
    assert not ch.text.startswith(PROMPT), "the prompt is not echoed"


def test_completion_streaming_matches(client, model_id):
    req = dict(model=model_id, prompt=PROMPT, temperature=0, max_tokens=20)
    full = client.completions.create(**req)
    s = collect_completion_stream(client, stream_options={"include_usage": True}, **req)
    assert all(c.object == "text_completion" for c in s.chunks)
    assert s.text == full.choices[0].text
    assert s.finish_reason == full.choices[0].finish_reason
    assert s.chunks[-1].choices == [] and s.chunks[-1].usage is not None
    for key in ("prompt_tokens", "completion_tokens", "total_tokens"):
        assert getattr(s.usage, key) == getattr(full.usage, key)


def test_completion_prompt_list_of_one(client, model_id):
    a = client.completions.create(model=model_id, prompt=PROMPT, temperature=0, max_tokens=12)
    b = client.completions.create(model=model_id, prompt=[PROMPT], temperature=0, max_tokens=12)
    assert a.choices[0].text == b.choices[0].text
    assert a.usage.prompt_tokens == b.usage.prompt_tokens


def test_completion_raw_prompt_is_not_templated(client, model_id):
    """The same text as a chat message has more prompt tokens (the template's markers)."""
    c = client.completions.create(model=model_id, prompt=PROMPT, temperature=0, max_tokens=1)
    ch = client.chat.completions.create(model=model_id, messages=[{"role": "user", "content": PROMPT}],
                                        temperature=0, max_tokens=1)
    assert c.usage.prompt_tokens + 5 <= ch.usage.prompt_tokens


def test_completion_logprobs(client, model_id):
    r = client.completions.create(model=model_id, prompt=PROMPT, temperature=0, max_tokens=8, logprobs=2)
    lp = r.choices[0].logprobs
    assert lp is not None
    assert len(lp.tokens) == len(lp.token_logprobs) == r.usage.completion_tokens
    assert lp.top_logprobs is not None and len(lp.top_logprobs) == len(lp.tokens)
    for tok, tlp, top in zip(lp.tokens, lp.token_logprobs, lp.top_logprobs):
        assert math.isfinite(tlp) and tlp <= 1e-6
        assert 1 <= len(top) <= 2  # a dict: two alternatives may render as the same string
        assert abs(max(top.values()) - tlp) <= 1e-4, (tok, tlp, top)
    if r.choices[0].text.isascii():
        assert "".join(lp.tokens) == r.choices[0].text
