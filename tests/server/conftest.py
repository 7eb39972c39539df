"""Fixtures for the `ferrite serve` end-to-end tests (see README.md)."""

from __future__ import annotations

import openai
import pytest

from ferrite_util import (
    API_KEY,
    ServerProcess,
    find_binary,
    find_model,
    httpx,
    missing,
    start_server,
    stop_server_checked,
)

SERVER_ARGS = ["--threads", "2", "--ctx", "2048", "--max-seqs", "32"]


@pytest.fixture(scope="session")
def ferrite_bin():
    path = find_binary()
    if path is None:
        missing("no ferrite binary (set FERRITE_BIN, or build target/release/ferrite)")
    return path


@pytest.fixture(scope="session")
def model_path():
    path = find_model()
    if path is None:
        missing("test model missing (set FERRITE_TEST_MODEL, or run scripts/fetch-models.sh smollm2)")
    return path


def _make_client(base_url: str, api_key: str = "sk-unused") -> openai.OpenAI:
    return openai.OpenAI(base_url=base_url + "/v1", api_key=api_key, max_retries=0, timeout=120.0)


@pytest.fixture(scope="session")
def server(ferrite_bin, model_path, tmp_path_factory):
    """The shared server: --ctx 2048 --max-seqs 32; SIGTERM at the end must exit 0 within 30 s."""
    log = tmp_path_factory.mktemp("serve") / "ferrite-serve.log"
    srv = start_server(ferrite_bin, model_path, SERVER_ARGS, log)
    try:
        yield srv
    finally:
        stop_server_checked(srv)


@pytest.fixture(scope="session")
def base_url(server: ServerProcess) -> str:
    return server.base_url


@pytest.fixture(scope="session")
def model_id(server: ServerProcess) -> str:
    return server.model_id


@pytest.fixture(scope="session")
def client(server: ServerProcess) -> openai.OpenAI:
    c = _make_client(server.base_url)
    yield c
    c.close()


@pytest.fixture(scope="session")
def http(server: ServerProcess):
    with httpx.Client(base_url=server.base_url, timeout=120.0) as c:
        yield c


@pytest.fixture(scope="module")
def auth_server(ferrite_bin, model_path, tmp_path_factory):
    """A second server that requires `Authorization: Bearer secret-key` on /v1/*."""
    log = tmp_path_factory.mktemp("serve-auth") / "ferrite-serve-auth.log"
    srv = start_server(ferrite_bin, model_path,
                       ["--threads", "2", "--ctx", "2048", "--kv-mem", "64M", "--api-key", API_KEY], log)
    try:
        yield srv
    finally:
        stop_server_checked(srv)


@pytest.fixture
def make_server(ferrite_bin, model_path, tmp_path):
    """Factory for servers with custom flags; whatever the test leaves running is killed at the end."""
    started: list[ServerProcess] = []

    def make(args: list[str], name: str = "extra") -> ServerProcess:
        srv = start_server(ferrite_bin, model_path, args, tmp_path / f"ferrite-serve-{name}-{len(started)}.log")
        started.append(srv)
        return srv

    yield make
    for srv in started:
        srv.kill()


@pytest.fixture
def make_client():
    made: list[openai.OpenAI] = []

    def make(base_url: str, api_key: str = "sk-unused") -> openai.OpenAI:
        c = _make_client(base_url, api_key)
        made.append(c)
        return c

    yield make
    for c in made:
        c.close()
