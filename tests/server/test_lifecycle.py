"""Servers with their own flags: graceful shutdown, the admission queue, the request timeout."""

from __future__ import annotations

import signal
import threading
import time

import openai
import pytest

from ferrite_util import SHUTDOWN_TIMEOUT_S, assert_error_shape, collect_chat_stream, httpx, user, wait_metrics

ESSAY = "Write a very long, detailed essay about the history of the Roman Empire, covering every century."
SMALL = ["--threads", "2", "--ctx", "1024", "--kv-mem", "64M"]


def test_sigterm_finishes_requests_in_flight(make_server, make_client):
    srv = make_server(SMALL, "shutdown")
    c = make_client(srv.base_url)
    first_token = threading.Event()
    result: dict = {}

    def stream():
        try:
            s = c.chat.completions.create(model=srv.model_id, messages=user(ESSAY), temperature=0,
                                          max_tokens=64, stream=True, stream_options={"include_usage": True})
            text, usage, finish = [], None, None
            for chunk in s:
                if chunk.usage is not None:
                    usage = chunk.usage
                for ch in chunk.choices:
                    if ch.delta.content:
                        text.append(ch.delta.content)
                        first_token.set()
                    finish = ch.finish_reason or finish
            result.update(text="".join(text), usage=usage, finish=finish)
        except Exception as e:  # reported by the main thread
            result["error"] = e
        finally:
            first_token.set()

    t = threading.Thread(target=stream)
    t.start()
    assert first_token.wait(60)
    assert "error" not in result, result
    srv.proc.send_signal(signal.SIGTERM)
    time.sleep(0.2)

    # no new work is accepted while the old one finishes
    try:
        r = httpx.post(srv.base_url + "/v1/chat/completions", timeout=10,
                       json={"model": "m", "messages": user("Hi"), "max_tokens": 2})
        assert_error_shape(r, 503, "server_error", "unavailable")
    except httpx.TransportError:
        pass  # the listener is already closed: fine

    t.join(60)
    assert not t.is_alive()
    assert "error" not in result, f"the request in flight failed during shutdown: {result['error']!r}"
    assert result["finish"] == "length" and result["usage"].completion_tokens == 64, result
    try:
        rc = srv.proc.wait(SHUTDOWN_TIMEOUT_S)
    except Exception:
        pytest.fail(f"no exit {SHUTDOWN_TIMEOUT_S:.0f} s after SIGTERM; log:\n{srv.log_text()[-3000:]}")
    assert rc == 0, f"exit status {rc} after SIGTERM; log:\n{srv.log_text()[-3000:]}"


def test_queue_full_gets_429(make_server, make_client):
    srv = make_server(SMALL + ["--max-seqs", "1", "--max-queue", "1"], "queue")
    c1, c2, c3 = make_client(srv.base_url), make_client(srv.base_url), make_client(srv.base_url)

    # 1: running (the only sequence slot)
    s1 = c1.chat.completions.create(model=srv.model_id, messages=user(ESSAY), temperature=0, max_tokens=300,
                                    stream=True)
    it = iter(s1)
    while True:
        chunk = next(it)
        if chunk.choices and chunk.choices[0].delta.content:
            break

    # 2: waiting for admission
    second: dict = {}

    def run_second():
        try:
            s = collect_chat_stream(c2, model=srv.model_id, messages=user("Hi!"), temperature=0, max_tokens=8)
            second.update(text=s.text, finish=s.finish_reason)
        except Exception as e:
            second["error"] = e

    t = threading.Thread(target=run_second)
    t.start()
    ok, m = wait_metrics(srv.base_url, lambda m: m.value("ferrite_queue_depth") == 1, timeout=10)
    assert ok, f"ferrite_queue_depth {m.value('ferrite_queue_depth')}, want 1"

    # 3: the queue is full
    r = httpx.post(srv.base_url + "/v1/chat/completions", timeout=30,
                   json={"model": "m", "messages": user("Hello"), "max_tokens": 2})
    assert_error_shape(r, 429, "rate_limit_error", "queue_full")
    assert "retry-after" in r.headers, dict(r.headers)
    assert int(r.headers["retry-after"]) >= 1
    with pytest.raises(openai.RateLimitError):
        c3.chat.completions.create(model=srv.model_id, messages=user("Hello"), max_tokens=2)

    # cancelling 1 lets 2 in
    s1.close()
    c1.close()
    t.join(60)
    assert not t.is_alive()
    assert "error" not in second, second
    assert second["text"] and second["finish"] in ("stop", "length")
    ok, m = wait_metrics(srv.base_url, lambda m: m.value("ferrite_running_sequences") == 0
                         and m.value("ferrite_queue_depth") == 0, timeout=5)
    assert ok


def test_request_timeout(make_server, make_client):
    srv = make_server(SMALL + ["--request-timeout", "1"], "timeout")
    c = make_client(srv.base_url)
    t0 = time.monotonic()
    r = c.chat.completions.create(model=srv.model_id, messages=user(ESSAY), temperature=0, max_tokens=400)
    elapsed = time.monotonic() - t0
    assert r.choices[0].finish_reason == "length"
    assert 0 < r.usage.completion_tokens < 400, r.usage
    assert elapsed < 5, f"a 1 s timeout ended the request after {elapsed:.1f} s"
