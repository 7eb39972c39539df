"""Error responses, the API key, /health, /v1/models and the page at /."""

from __future__ import annotations

import json

import openai
import pytest

from ferrite_util import API_KEY, assert_error_shape, httpx, user, varied_text

CTX = 2048


def test_health(http):
    r = http.get("/health")
    assert r.status_code == 200
    assert r.json() == {"status": "ok"}


def test_models(client, model_id, http):
    models = client.models.list()
    assert [m.id for m in models.data] == [model_id]
    m = models.data[0]
    assert m.object == "model" and m.owned_by == "ferrite" and isinstance(m.created, int)
    raw = http.get("/v1/models").json()
    assert raw["object"] == "list" and len(raw["data"]) == 1


def test_web_page(http):
    r = http.get("/")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/html")
    assert "<html" in r.text.lower()


def test_listening_line(server):
    assert f"ferrite: listening on http://127.0.0.1:{server.port}" in server.log_text()


def test_malformed_json(http):
    r = http.post("/v1/chat/completions", content=b'{"model": "x", "messages": [{"role": "user", ',
                  headers={"content-type": "application/json"})
    assert_error_shape(r, 400, "invalid_request_error")


@pytest.mark.parametrize("path,body", [
    ("/v1/chat/completions", {"model": "m"}),                                        # no messages
    ("/v1/chat/completions", {"model": "m", "messages": "hello"}),                   # not a list
    ("/v1/chat/completions", {"model": "m", "messages": [{"role": "wizard", "content": "hi"}]}),
    ("/v1/chat/completions", {"model": "m", "messages": [{"role": "user", "content": "hi"}],
                              "temperature": "hot"}),
    ("/v1/chat/completions", {"model": "m", "messages": [{"role": "user", "content": "hi"}],
                              "stop": ["a", "b", "c", "d", "e"]}),                   # more than 4
    ("/v1/chat/completions", {"model": "m", "messages": [{"role": "user", "content": "hi"}],
                              "logprobs": True, "top_logprobs": 21}),                # over 20
    ("/v1/completions", {"model": "m"}),                                             # no prompt
], ids=["no-messages", "messages-not-list", "bad-role", "bad-temperature", "five-stops", "top-logprobs-21",
        "no-prompt"])
def test_invalid_request(http, path, body):
    r = http.post(path, json=body)
    assert_error_shape(r, 400, "invalid_request_error")


def test_missing_messages_openai_client(client, model_id):
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model=model_id, messages=[])


def test_n_greater_than_one(client, model_id):
    with pytest.raises(openai.BadRequestError) as ei:
        client.chat.completions.create(model=model_id, messages=user("Hi"), n=2, max_tokens=4)
    assert ei.value.status_code == 400


def test_prompt_over_context(client, model_id):
    long = varied_text(150, seed=11)  # about 3,200 tokens
    with pytest.raises(openai.BadRequestError) as ei:
        client.chat.completions.create(model=model_id, messages=user(long), temperature=0, max_tokens=16)
    e = ei.value
    assert e.status_code == 400
    assert e.code == "context_length_exceeded", e.body
    assert e.type == "invalid_request_error", e.body
    msg = str(e.body.get("message") if isinstance(e.body, dict) else e.message)
    assert "context" in msg.lower(), msg
    assert str(CTX) in msg, f"the message should give the context size: {msg}"


def test_prompt_plus_max_tokens_over_context(client, model_id):
    """The prompt fits but prompt + max_tokens does not: 400, never truncated."""
    text = varied_text(20, seed=12)  # about 450 tokens
    ok = client.chat.completions.create(model=model_id, messages=user(text), temperature=0, max_tokens=1)
    p = ok.usage.prompt_tokens
    assert 300 < p < CTX - 100, p
    mx = CTX - p + 1
    with pytest.raises(openai.BadRequestError) as ei:
        client.chat.completions.create(model=model_id, messages=user(text), temperature=0, max_tokens=mx)
    assert ei.value.code == "context_length_exceeded", ei.value.body
    msg = str(ei.value.body.get("message") if isinstance(ei.value.body, dict) else ei.value.message)
    assert str(p) in msg or str(p + mx) in msg, \
        f"the message should give the tokens asked for ({p} + {mx} = {p + mx}): {msg}"
    assert str(CTX) in msg, f"the message should give the context size: {msg}"


def test_completion_over_context(client, model_id):
    with pytest.raises(openai.BadRequestError) as ei:
        client.completions.create(model=model_id, prompt=varied_text(150, seed=13), max_tokens=8)
    assert ei.value.code == "context_length_exceeded"


def test_unknown_path(http):
    r = http.get("/v1/no-such-endpoint")
    assert_error_shape(r, 404, "invalid_request_error", "not_found")
    r = http.post("/v1/embeddingz", json={"input": "x"})
    assert r.status_code == 404


def test_body_too_large(http):
    big = json.dumps({"model": "m", "messages": user("x" * (9 * 1024 * 1024))}).encode()
    try:
        r = http.post("/v1/chat/completions", content=big, headers={"content-type": "application/json"})
    except httpx.TransportError as e:
        pytest.fail(f"no 413 response to a 9 MiB body (the connection failed: {e!r})")
    assert_error_shape(r, 413, "invalid_request_error", "request_too_large")


# ---- API key ----------------------------------------------------------------------------------


def test_auth_no_key(auth_server, make_client):
    r = httpx.post(auth_server.base_url + "/v1/chat/completions",
                   json={"model": "m", "messages": user("Hi"), "max_tokens": 2}, timeout=30)
    assert_error_shape(r, 401, "authentication_error", "invalid_api_key")
    r = httpx.get(auth_server.base_url + "/v1/models", timeout=30)
    assert r.status_code == 401
    c = make_client(auth_server.base_url, "placeholder")
    with pytest.raises(openai.AuthenticationError):
        c.chat.completions.create(model=auth_server.model_id, messages=user("Hi"), max_tokens=2,
                                  extra_headers={"Authorization": openai.Omit()})


def test_auth_wrong_key(auth_server, make_client):
    c = make_client(auth_server.base_url, "wrong-key")
    with pytest.raises(openai.AuthenticationError) as ei:
        c.chat.completions.create(model=auth_server.model_id, messages=user("Hi"), max_tokens=2)
    assert ei.value.status_code == 401
    with pytest.raises(openai.AuthenticationError):
        c.models.list()
    with pytest.raises(openai.AuthenticationError):
        c.completions.create(model=auth_server.model_id, prompt="Hi", max_tokens=2)


def test_auth_right_key(auth_server, make_client):
    c = make_client(auth_server.base_url, API_KEY)
    r = c.chat.completions.create(model=auth_server.model_id, messages=user("Hi"), temperature=0, max_tokens=4)
    assert r.choices[0].message.content
    assert [m.id for m in c.models.list().data] == [auth_server.model_id]


def test_auth_open_endpoints(auth_server):
    for path in ("/health", "/metrics", "/"):
        r = httpx.get(auth_server.base_url + path, timeout=30)
        assert r.status_code == 200, (path, r.status_code, r.text[:200])
