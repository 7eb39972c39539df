"""GET /metrics, and cancellation of a request whose client goes away."""

from __future__ import annotations

import time

from ferrite_util import get_metrics, httpx, user, wait_metrics

ESSAY = "Write a very long, detailed essay about the history of the Roman Empire, covering every century."


def idle(m) -> bool:
    return m.value("ferrite_running_sequences") == 0 and m.value("ferrite_kv_blocks_used") == 0


def test_cancelled_stream_frees_blocks(make_client, base_url, model_id):
    ok, m0 = wait_metrics(base_url, idle, timeout=10)
    assert ok, "server not idle before the test"
    gen0 = m0.value("ferrite_generated_tokens_total")

    c = make_client(base_url)  # its own connection pool, closed with the stream
    stream = c.chat.completions.create(model=model_id, messages=user(ESSAY), temperature=0, max_tokens=400,
                                       stream=True)
    got = 0
    for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            got += 1
            if got >= 5:
                break
    assert got >= 5
    running = get_metrics(base_url)
    assert running.value("ferrite_running_sequences") == 1
    assert running.value("ferrite_kv_blocks_used") > 0
    stream.close()
    c.close()
    t_close = time.monotonic()

    ok, m1 = wait_metrics(base_url, idle, timeout=5)
    waited = time.monotonic() - t_close
    assert ok, (f"5 s after the client disconnected: running_sequences "
                f"{m1.value('ferrite_running_sequences')}, kv_blocks_used {m1.value('ferrite_kv_blocks_used')}")
    time.sleep(0.5)
    gen = get_metrics(base_url).value("ferrite_generated_tokens_total") - gen0
    # greedy generation of this prompt runs the full 400 tokens when nobody stops it
    assert gen < 200, f"{gen:.0f} tokens were generated for a request cancelled after 5 ({waited:.2f} s to idle)"
    m = get_metrics(base_url)
    assert m.value("ferrite_kv_blocks_free") == m.value("ferrite_kv_blocks_total")


def test_metrics(client, model_id, base_url, http):
    m0 = get_metrics(base_url)
    r = client.chat.completions.create(model=model_id, messages=user("Name three rivers."), temperature=0,
                                       max_tokens=6)
    assert r.choices[0].finish_reason == "length"
    bad = http.post("/v1/chat/completions", json={"model": "m"})
    assert bad.status_code == 400

    def chat_requests(m, status):
        return sum(v for labels, v in m.series("ferrite_requests_total")
                   if "chat" in labels.get("endpoint", "") and labels.get("status") == status)

    ok, m = wait_metrics(base_url, lambda m: chat_requests(m, "200") >= chat_requests(m0, "200") + 1
                         and chat_requests(m, "400") >= chat_requests(m0, "400") + 1
                         and m.value("ferrite_generated_tokens_total")
                         >= m0.value("ferrite_generated_tokens_total", 0) + 6, timeout=3)
    text = http.get("/metrics")
    assert text.headers["content-type"].startswith("text/plain"), text.headers["content-type"]

    for labels, _ in m.series("ferrite_requests_total"):
        assert "endpoint" in labels and "status" in labels, labels
    assert chat_requests(m, "200") == chat_requests(m0, "200") + 1, "one 200 chat request"
    assert chat_requests(m, "400") == chat_requests(m0, "400") + 1, "one 400 chat request"

    assert m.value("ferrite_prompt_tokens_total") - m0.value("ferrite_prompt_tokens_total", 0) \
        == r.usage.prompt_tokens
    assert m.value("ferrite_generated_tokens_total") - m0.value("ferrite_generated_tokens_total", 0) \
        == r.usage.completion_tokens
    assert m.has("ferrite_prompt_tokens_cached_total")

    for h in ("ferrite_time_to_first_token_seconds", "ferrite_inter_token_latency_seconds",
              "ferrite_request_duration_seconds", "ferrite_batch_sequences", "ferrite_batch_tokens"):
        assert m.types.get(h) == "histogram", (h, m.types.get(h))
        buckets = m.series(h + "_bucket")
        assert buckets, f"no {h}_bucket samples"
        les = [lab["le"] for lab, _ in buckets]
        assert "+Inf" in les, les
        counts = [v for _, v in sorted(buckets, key=lambda b: float(b[0]["le"]))]
        assert counts == sorted(counts), f"{h} buckets not cumulative: {counts}"
        assert counts[-1] == m.value(h + "_count"), h
        assert m.has(h + "_sum")
    ttft_n = m.value("ferrite_time_to_first_token_seconds_count") \
        - m0.value("ferrite_time_to_first_token_seconds_count", 0)
    assert ttft_n == 1, ttft_n
    assert m.value("ferrite_time_to_first_token_seconds_sum") > 0

    for g in ("ferrite_queue_depth", "ferrite_running_sequences", "ferrite_kv_blocks_total",
              "ferrite_kv_blocks_used", "ferrite_kv_blocks_cached", "ferrite_kv_blocks_free",
              "ferrite_prefix_cache_hit_rate"):
        assert m.types.get(g) == "gauge", (g, m.types.get(g))
    for c in ("ferrite_requests_total", "ferrite_prompt_tokens_total", "ferrite_prompt_tokens_cached_total",
              "ferrite_generated_tokens_total", "ferrite_preemptions_total"):
        kind = m.types.get(c, m.types.get(c.removesuffix("_total")))  # OpenMetrics names the family without _total
        assert kind == "counter", (c, kind)
        assert m.has(c) or c == "ferrite_requests_total", f"no sample of {c}"

    total = m.value("ferrite_kv_blocks_total")
    assert total > 0
    assert m.value("ferrite_kv_blocks_free") == total - m.value("ferrite_kv_blocks_used")
    assert 0 <= m.value("ferrite_kv_blocks_cached") <= m.value("ferrite_kv_blocks_free")
    assert 0 <= m.value("ferrite_prefix_cache_hit_rate") <= 1
    hit = m.value("ferrite_prompt_tokens_cached_total") / m.value("ferrite_prompt_tokens_total")
    assert abs(m.value("ferrite_prefix_cache_hit_rate") - hit) < 1e-3
