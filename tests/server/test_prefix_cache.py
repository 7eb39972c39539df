"""Prefix reuse: a second request sharing a ~1,000-token prefix skips its computation."""

from __future__ import annotations

import time
import uuid

from ferrite_util import collect_chat_stream, get_metrics, varied_text, wait_metrics

BLOCK = 16
# The engine always computes at least the last 64 prompt tokens itself (ferrite_engine::reusable_prefix:
# chunks of 64 or more take the same kernels, so the output is bit-identical to an uncached run).
MIN_RECOMPUTE = 64


def reusable(common: int, prompt_tokens: int) -> int:
    """The cached tokens the engine's rule allows: whole blocks of the common prefix, leaving 64 to compute."""
    return min(common, prompt_tokens - MIN_RECOMPUTE) // BLOCK * BLOCK


def test_shared_prefix_is_reused(client, model_id, base_url):
    # a unique first line, so no earlier request can have cached any block of this prefix
    system = f"Reference notes, session {uuid.uuid4()}.\n" + varied_text(50, seed=21)

    def ask(question):
        return collect_chat_stream(
            client, t0=time.perf_counter(), model=model_id, temperature=0, max_tokens=4,
            stream_options={"include_usage": True},
            messages=[{"role": "system", "content": system}, {"role": "user", "content": question}])

    m0 = get_metrics(base_url)
    a = ask("Which object did the village baker repair?")
    m1 = get_metrics(base_url)
    b = ask("On which day did the curious otter discover something?")
    _, m2 = wait_metrics(base_url, lambda m: m.value("ferrite_prompt_tokens_total")
                         - m1.value("ferrite_prompt_tokens_total") >= b.usage.prompt_tokens, timeout=2)

    assert a.usage.prompt_tokens >= 1000, a.usage
    assert b.usage.prompt_tokens >= 1000, b.usage
    assert a.ttft is not None and b.ttft is not None
    assert b.ttft * 5 <= a.ttft, f"TTFT cold {a.ttft * 1000:.0f} ms, with the shared prefix {b.ttft * 1000:.0f} ms"

    details_a = getattr(a.usage, "prompt_tokens_details", None)
    details_b = getattr(b.usage, "prompt_tokens_details", None)
    if details_b is not None and details_b.cached_tokens is not None:
        assert details_b.cached_tokens >= 900, b.usage
        assert details_b.cached_tokens < b.usage.prompt_tokens
    if details_a is not None and details_a.cached_tokens is not None:
        assert details_a.cached_tokens < 100, f"the cold request already had cached tokens: {a.usage}"

    cached_b = m2.value("ferrite_prompt_tokens_cached_total") - m1.value("ferrite_prompt_tokens_cached_total")
    assert cached_b >= 900, f"ferrite_prompt_tokens_cached_total grew by {cached_b:.0f} for request B"
    cached_a = m1.value("ferrite_prompt_tokens_cached_total") - m0.value("ferrite_prompt_tokens_cached_total")
    assert cached_a < 100

    # the same request again: (nearly) all of it from the cache, and the same greedy text
    c = ask("Which object did the village baker repair?")
    assert c.text == a.text, (a.text, c.text)
    assert c.usage.prompt_tokens == a.usage.prompt_tokens
    details_c = getattr(c.usage, "prompt_tokens_details", None)
    if details_c is not None and details_c.cached_tokens is not None:
        want = reusable(a.usage.prompt_tokens, a.usage.prompt_tokens)
        assert details_c.cached_tokens >= want, \
            f"identical prompt of {a.usage.prompt_tokens} tokens: {details_c.cached_tokens} cached, want {want}"


def test_conversation_prefix_reused(client, model_id, base_url):
    """The next turn of a conversation reuses the previous turn's blocks."""
    system = f"Notes {uuid.uuid4()}. " + varied_text(20, seed=22)
    msgs = [{"role": "system", "content": system}, {"role": "user", "content": "Summarise the notes."}]
    r1 = client.chat.completions.create(model=model_id, messages=msgs, temperature=0, max_tokens=16)
    m1 = get_metrics(base_url)
    msgs += [{"role": "assistant", "content": r1.choices[0].message.content},
             {"role": "user", "content": "Now in one word."}]
    r2 = client.chat.completions.create(model=model_id, messages=msgs, temperature=0, max_tokens=4)
    _, m2 = wait_metrics(base_url, lambda m: m.value("ferrite_prompt_tokens_total")
                         - m1.value("ferrite_prompt_tokens_total") >= r2.usage.prompt_tokens, timeout=2)
    cached = m2.value("ferrite_prompt_tokens_cached_total") - m1.value("ferrite_prompt_tokens_cached_total")
    # the first turn's prompt is a prefix of the second's
    want = reusable(r1.usage.prompt_tokens, r2.usage.prompt_tokens)
    assert cached >= want, f"{cached:.0f} tokens cached, want >= {want} (first turn: {r1.usage}, second: {r2.usage})"
