"""/v1/embeddings: OpenAI's embeddings API over `ferrite serve --embed-model`, checked with the official
client against sentence-transformers' own vectors (tests/reference/minilm/embeddings.json)."""

from __future__ import annotations

import base64
import json
import math
import struct

import openai
import pytest

from ferrite_util import REPO_ROOT, httpx, missing, start_server, stop_server_checked

EMBED_DIR = REPO_ROOT / "models" / "all-minilm-l6-v2"
FIXTURES = REPO_ROOT / "tests" / "reference" / "minilm" / "embeddings.json"


@pytest.fixture(scope="module")
def embed_server(ferrite_bin, model_path, tmp_path_factory):
    if not (EMBED_DIR / "model.safetensors").is_file():
        missing("all-MiniLM-L6-v2 missing (scripts/fetch-models.sh minilm)")
    log = tmp_path_factory.mktemp("serve-embed") / "ferrite-serve-embed.log"
    srv = start_server(ferrite_bin, model_path, ["--threads", "2", "--ctx", "1024", "--kv-mem", "64M", "--embed-model", str(EMBED_DIR)], log)
    try:
        yield srv
    finally:
        stop_server_checked(srv)


@pytest.fixture(scope="module")
def eclient(embed_server):
    c = openai.OpenAI(base_url=embed_server.base_url + "/v1", api_key="sk-unused", max_retries=0, timeout=120.0)
    yield c
    c.close()


def cosine(a, b):
    dot = sum(x * y for x, y in zip(a, b))
    return dot / math.sqrt(sum(x * x for x in a) * sum(y * y for y in b))


def short_items():
    items = json.loads(FIXTURES.read_text())["items"]
    return [it for it in items if len(it["ids"]) < 256]


def test_vectors_match_sentence_transformers(eclient):
    items = short_items()
    r = eclient.embeddings.create(model="all-minilm-l6-v2", input=[it["text"] for it in items])
    assert r.object == "list" and r.model == "all-minilm-l6-v2"
    assert [d.index for d in r.data] == list(range(len(items)))
    assert r.usage.prompt_tokens == r.usage.total_tokens == sum(len(it["ids"]) for it in items)
    worst = min(cosine(d.embedding, it["embedding"]) for d, it in zip(r.data, items))
    assert worst >= 0.9999, worst


def test_single_string_and_base64(eclient, embed_server):
    text = "The quick brown fox jumps over the lazy dog."
    floats = eclient.embeddings.create(model="x", input=text).data[0].embedding
    assert len(floats) == 384
    # The raw API: base64 of little-endian f32 (the openai client decodes it itself when asked for floats).
    raw = httpx.post(embed_server.base_url + "/v1/embeddings", json={"input": [text], "encoding_format": "base64"}, timeout=60).json()
    blob = base64.b64decode(raw["data"][0]["embedding"])
    decoded = struct.unpack(f"<{len(blob) // 4}f", blob)
    assert len(decoded) == 384
    assert max(abs(a - b) for a, b in zip(decoded, floats)) < 1e-6
    assert abs(math.sqrt(sum(x * x for x in decoded)) - 1.0) < 1e-5


def test_too_long_is_refused_unless_truncation_is_asked_for(eclient, embed_server):
    long = "word " * 400
    with pytest.raises(openai.BadRequestError) as e:
        eclient.embeddings.create(model="x", input=["short", long])
    body = e.value.response.json()["error"]
    assert body["code"] == "context_length_exceeded" and body["param"] == "input" and "input[1]" in body["message"]
    r = eclient.embeddings.create(model="x", input=["short", long], extra_body={"truncate": True})
    assert len(r.data) == 2 and r.usage.prompt_tokens == 3 + 256


@pytest.mark.parametrize("body,param", [
    ({"input": []}, "input"),
    ({"input": [1, 2, 3]}, "input"),
    ({"input": [[1, 2], [3]]}, "input"),
    ({"input": 5}, "input"),
    ({"input": ["a"], "encoding_format": "int8"}, "encoding_format"),
    ({"input": ["a"], "dimensions": 128}, "dimensions"),
])
def test_bad_requests(embed_server, body, param):
    r = httpx.post(embed_server.base_url + "/v1/embeddings", json=body, timeout=60)
    assert r.status_code == 400, r.text
    assert r.json()["error"]["param"] == param


def test_malformed_json(embed_server):
    r = httpx.post(embed_server.base_url + "/v1/embeddings", content=b"{not json", headers={"content-type": "application/json"}, timeout=60)
    assert r.status_code == 400 and r.json()["error"]["type"] == "invalid_request_error"


def test_models_lists_the_embedding_model_and_metrics_count_tokens(eclient, embed_server):
    ids = {m.id for m in eclient.models.list().data}
    assert "all-minilm-l6-v2" in ids and len(ids) == 2
    before = httpx.get(embed_server.base_url + "/metrics", timeout=60).text
    count = lambda text: float(next(l for l in text.splitlines() if l.startswith("ferrite_embedding_tokens_total ")).split()[1])
    eclient.embeddings.create(model="x", input=["one two three"])  # [CLS] one two three [SEP]
    after = httpx.get(embed_server.base_url + "/metrics", timeout=60).text
    assert count(after) - count(before) == 5
    assert 'ferrite_requests_total{endpoint="embeddings",status="200"}' in after


def test_server_without_embedding_model_says_so(client):
    with pytest.raises(openai.BadRequestError) as e:
        client.embeddings.create(model="x", input="hello")
    assert "--embed-model" in e.value.response.json()["error"]["message"]
