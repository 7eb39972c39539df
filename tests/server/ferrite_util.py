"""Helpers for the `ferrite serve` end-to-end tests: locating the binary and model, starting and
stopping server processes, parsing Prometheus text, collecting streams, building long prompts."""

from __future__ import annotations

import os
import pathlib
import random
import re
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field

import pytest

try:  # openai 1.x/2.x depend on httpx; newer releases on its successor httpx2 (same API)
    import httpx
except ImportError:  # pragma: no cover - depends on the installed openai
    import httpx2 as httpx  # type: ignore[no-redef]

REPO_ROOT = pathlib.Path(__file__).resolve().parents[2]
DEFAULT_MODEL = REPO_ROOT / "models" / "smollm2-135m-instruct-q4_1.gguf"
SERVER_START_TIMEOUT_S = 120.0
SHUTDOWN_TIMEOUT_S = 30.0
API_KEY = "secret-key"  # the --api-key of the auth server


# ---------------------------------------------------------------------------------------------
# locating the binary and the model


def _require_data() -> bool:
    return os.environ.get("FERRITE_REQUIRE_DATA") == "1"


def missing(what: str) -> None:
    """Fail (FERRITE_REQUIRE_DATA=1) or skip because something the tests need is missing."""
    if _require_data():
        pytest.fail(f"{what} (FERRITE_REQUIRE_DATA=1)", pytrace=False)
    pytest.skip(what)


def _resolve(p: str) -> pathlib.Path:
    path = pathlib.Path(p).expanduser()
    if path.is_absolute() or path.exists():
        return path.resolve()
    return (REPO_ROOT / path).resolve()


def find_binary() -> pathlib.Path | None:
    env = os.environ.get("FERRITE_BIN")
    if env:
        path = _resolve(env)
        return path if path.is_file() else None
    for rel in ("target/release/ferrite", "target/debug/ferrite"):
        path = REPO_ROOT / rel
        if path.is_file():
            return path
    return None


def find_model() -> pathlib.Path | None:
    env = os.environ.get("FERRITE_TEST_MODEL")
    path = _resolve(env) if env else DEFAULT_MODEL
    return path if path.is_file() else None


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---------------------------------------------------------------------------------------------
# server processes


class ServerProcess:
    """One `ferrite serve` process on a free local port; its stdout+stderr go to a log file."""

    def __init__(self, binary: pathlib.Path, model: pathlib.Path, args: list[str], log_path: pathlib.Path):
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.model = model
        self.model_id = model.stem  # the default --model-name: the file name without .gguf
        self.log_path = log_path
        self.argv = [str(binary), "serve", "--model", str(model), "--host", "127.0.0.1",
                     "--port", str(self.port), *args]
        self._log = open(log_path, "wb")
        self.proc = subprocess.Popen(self.argv, stdout=self._log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL)
        self.returncode: int | None = None

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def wait_ready(self, timeout: float = SERVER_START_TIMEOUT_S) -> None:
        """Wait until GET /health answers 200; fail with the server's log if it exits or times out."""
        deadline = time.monotonic() + timeout
        last = "no answer"
        while time.monotonic() < deadline:
            rc = self.proc.poll()
            if rc is not None:
                raise RuntimeError(f"`{' '.join(self.argv)}` exited with {rc} before becoming ready; "
                                   f"log:\n{self.log_text()[-4000:]}")
            try:
                r = httpx.get(self.base_url + "/health", timeout=2.0)
                if r.status_code == 200:
                    return
                last = f"{r.status_code} {r.text[:200]}"
            except httpx.TransportError as e:
                last = repr(e)
            time.sleep(0.1)
        raise RuntimeError(f"server not ready after {timeout:.0f} s (last /health: {last}); "
                           f"log:\n{self.log_text()[-4000:]}")

    def terminate(self, timeout: float = SHUTDOWN_TIMEOUT_S) -> int | None:
        """SIGTERM and wait; the exit status, or None if it did not exit in time (then it is killed)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                self._log.close()
                self.returncode = None
                return None
        self._log.close()
        self.returncode = self.proc.returncode
        return self.returncode

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self._log.close()


def start_server(binary, model, args, log_path) -> ServerProcess:
    srv = ServerProcess(binary, model, args, log_path)
    try:
        srv.wait_ready()
    except BaseException:
        srv.kill()
        raise
    return srv


def stop_server_checked(srv: ServerProcess) -> None:
    """SIGTERM; assert a graceful exit (status 0 within SHUTDOWN_TIMEOUT_S)."""
    rc = srv.terminate()
    assert rc is not None, (f"server did not exit within {SHUTDOWN_TIMEOUT_S:.0f} s of SIGTERM; "
                            f"log tail:\n{srv.log_text()[-3000:]}")
    assert rc == 0, f"server exited with {rc} after SIGTERM (want 0); log tail:\n{srv.log_text()[-3000:]}"


# ---------------------------------------------------------------------------------------------
# Prometheus text format


_SAMPLE_RE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)(?:\s+-?\d+)?\s*$")
_LABEL_RE = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*=\s*"((?:[^"\\]|\\.)*)"\s*,?')


@dataclass
class Metrics:
    samples: list[tuple[str, dict[str, str], float]] = field(default_factory=list)
    types: dict[str, str] = field(default_factory=dict)

    @classmethod
    def parse(cls, text: str) -> "Metrics":
        m = cls()
        for line in text.splitlines():
            line = line.strip()
            if not line:
                continue
            if line.startswith("#"):
                parts = line.split()
                if len(parts) >= 4 and parts[1] == "TYPE":
                    m.types[parts[2]] = parts[3]
                continue
            sm = _SAMPLE_RE.match(line)
            if not sm:
                raise ValueError(f"unparseable Prometheus line: {line!r}")
            name, labels_text, value = sm.groups()
            labels = {k: v for k, v in _LABEL_RE.findall(labels_text or "")}
            m.samples.append((name, labels, float(value)))
        return m

    def has(self, name: str) -> bool:
        return any(n == name for n, _, _ in self.samples)

    def series(self, name: str) -> list[tuple[dict[str, str], float]]:
        return [(labels, v) for n, labels, v in self.samples if n == name]

    def value(self, name: str, default: float | None = None, **labels: str) -> float:
        """Sum of the samples of `name` whose labels include `labels`."""
        hits = [v for n, lab, v in self.samples
                if n == name and all(lab.get(k) == str(want) for k, want in labels.items())]
        if not hits:
            if default is not None:
                return default
            raise KeyError(f"no sample {name}{labels or ''} in /metrics")
        return sum(hits)


def get_metrics(base_url: str) -> Metrics:
    r = httpx.get(base_url + "/metrics", timeout=10.0)
    assert r.status_code == 200, f"GET /metrics -> {r.status_code} {r.text[:300]}"
    return Metrics.parse(r.text)


def wait_metrics(base_url: str, pred, timeout: float = 5.0, interval: float = 0.05) -> tuple[bool, Metrics]:
    """Poll /metrics until pred(metrics) is true; (True, m) or (False, last m)."""
    deadline = time.monotonic() + timeout
    while True:
        m = get_metrics(base_url)
        try:
            ok = pred(m)
        except KeyError:
            ok = False
        if ok:
            return True, m
        if time.monotonic() >= deadline:
            return False, m
        time.sleep(interval)


# ---------------------------------------------------------------------------------------------
# requests


def user(text: str) -> list[dict]:
    return [{"role": "user", "content": text}]


@dataclass
class StreamResult:
    chunks: list
    text: str
    finish_reason: str | None
    usage: object | None
    ttft: float | None  # seconds from the request's start to the first content (or finish) chunk


def _collect(stream, t0: float, text_of) -> StreamResult:
    """Gather a stream of chunks; `text_of(choice)` is a choice's text. Asserts nothing."""
    chunks, pieces, finish, usage, ttft = [], [], None, None, None
    with stream:
        for chunk in stream:
            chunks.append(chunk)
            if chunk.usage is not None:
                usage = chunk.usage
            for ch in chunk.choices:
                text = text_of(ch)
                if ttft is None and (text or ch.finish_reason):
                    ttft = time.perf_counter() - t0
                if text:
                    pieces.append(text)
                if ch.finish_reason is not None:
                    finish = ch.finish_reason
    return StreamResult(chunks, "".join(pieces), finish, usage, ttft)


def collect_chat_stream(client, t0: float | None = None, **kwargs) -> StreamResult:
    """Run a streaming chat request and gather it; asserts nothing."""
    t0 = time.perf_counter() if t0 is None else t0
    return _collect(client.chat.completions.create(stream=True, **kwargs), t0, lambda ch: ch.delta.content)


def collect_completion_stream(client, **kwargs) -> StreamResult:
    t0 = time.perf_counter()
    return _collect(client.completions.create(stream=True, **kwargs), t0, lambda ch: ch.text)


def assert_error_shape(resp, status: int, type_: str | None = None, code: str | None = None) -> dict:
    """`resp` is an httpx.Response; check the OpenAI error shape; return the error object."""
    assert resp.status_code == status, f"want {status}, got {resp.status_code}: {resp.text[:500]}"
    try:
        body = resp.json()
    except ValueError:
        raise AssertionError(f"error body is not JSON: {resp.text[:500]!r}")
    assert isinstance(body, dict) and isinstance(body.get("error"), dict), f"no error object: {body}"
    err = body["error"]
    for key in ("message", "type", "param", "code"):
        assert key in err, f"error object lacks {key!r}: {err}"
    assert isinstance(err["message"], str) and err["message"], f"empty error message: {err}"
    if type_ is not None:
        assert err["type"] == type_, f"error type {err['type']!r}, want {type_!r}: {err}"
    if code is not None:
        assert err["code"] == code, f"error code {err['code']!r}, want {code!r}: {err}"
    return err


# ---------------------------------------------------------------------------------------------
# long, varied text (about 21 SmolLM2 tokens per sentence)


def varied_text(n_sentences: int, seed: int) -> str:
    rng = random.Random(seed)
    subjects = ["The old lighthouse keeper", "A young botanist", "The city council", "Every migrating swallow",
                "The night train to Vienna", "A retired chess champion", "The village baker",
                "Our research vessel", "The mountain observatory", "A curious otter", "The museum curator",
                "Each apprentice weaver"]
    verbs = ["catalogued", "repaired", "painted", "measured", "questioned", "remembered", "carried",
             "discovered", "ignored", "celebrated", "described", "traded"]
    objects = ["seventeen brass compasses", "a map of forgotten islands", "the winter harvest of pears",
               "three letters sealed with green wax", "the tide tables for October", "a violin with no strings",
               "the recipe for barley soup", "an atlas of northern rivers", "a box of glass marbles",
               "the census of 1887", "twelve jars of honey", "a kite shaped like a heron"]
    places = ["near the harbour", "beside the granite bridge", "under the copper roof", "in the eastern valley",
              "at the edge of the salt marsh", "behind the clock tower", "on the third floor of the archive",
              "inside the greenhouse", "along the frozen canal", "across the market square"]
    return " ".join(
        f"{rng.choice(subjects)} {rng.choice(verbs)} {rng.choice(objects)} {rng.choice(places)} "
        f"on day {rng.randint(1, 365)}."
        for _ in range(n_sentences))
