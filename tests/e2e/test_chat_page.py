"""End-to-end test of the web chat page that `ferrite serve` serves at `/`, in headless Chromium.

Starts the real server on a free port, drives the page with Selenium + chromedriver, and checks what the
page shows against the same requests made directly with urllib. See README.md next to this file.

Environment:
  FERRITE_BIN           the ferrite binary (default: target/release/ferrite, then target/debug/ferrite)
  FERRITE_TEST_MODEL    the model (default: models/smollm2-135m-instruct-q4_1.gguf)
  FERRITE_REQUIRE_DATA  1: anything missing (browser, driver, selenium, binary, model) is a failure, not a skip
  CHROMIUM_BIN, CHROMEDRIVER_BIN   override the browser / driver paths
"""

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
REQUIRE = os.environ.get("FERRITE_REQUIRE_DATA") == "1"
ANSWER_TIMEOUT = 60
SYSTEM_PROMPT = "You are a helpful assistant. Answer briefly."
PROMPT_1 = "What is the capital of France?"
PROMPT_2 = "And what is the capital of Italy?"
LONG_PROMPT = "Write a long, detailed story about a dragon who learns to cook. Describe every dish."


def _missing(what):
    if REQUIRE:
        pytest.fail(f"FERRITE_REQUIRE_DATA=1 but {what}")
    pytest.skip(f"SKIP: {what}")


# ---------------------------------------------------------------------------------------------------------
# prerequisites


def _find_binary():
    env = os.environ.get("FERRITE_BIN")
    if env:
        return Path(env)
    for p in (REPO / "target/release/ferrite", REPO / "target/debug/ferrite"):
        if p.is_file():
            return p
    return None


def _find_exe(env_name, *names):
    env = os.environ.get(env_name)
    if env:
        return env if os.access(env, os.X_OK) else None
    for n in names:
        p = shutil.which(n)
        if p:
            return p
    return None


@pytest.fixture(scope="module")
def prereqs():
    try:
        import selenium  # noqa: F401
    except ImportError:
        _missing("the selenium Python package is not installed (pip install selenium)")
    chromium = _find_exe("CHROMIUM_BIN", "chromium", "chromium-browser", "google-chrome")
    if not chromium:
        _missing("chromium is not installed (apt-get install chromium)")
    driver = _find_exe("CHROMEDRIVER_BIN", "chromedriver")
    if not driver:
        _missing("chromedriver is not installed (apt-get install chromium-driver)")
    binary = _find_binary()
    if binary is None or not binary.is_file():
        _missing(f"no ferrite binary (FERRITE_BIN={os.environ.get('FERRITE_BIN')!r}, target/release, target/debug)")
    r = subprocess.run([str(binary), "serve", "--help"], capture_output=True, text=True, timeout=60)
    if r.returncode != 0:
        _missing(f"{binary} has no working `serve` command: {(r.stderr or r.stdout).strip()[:300]}")
    model = Path(os.environ.get("FERRITE_TEST_MODEL", REPO / "models/smollm2-135m-instruct-q4_1.gguf"))
    if not model.is_file():
        _missing(f"model {model} not found (scripts/fetch-models.sh smollm2)")
    return {"chromium": chromium, "chromedriver": driver, "binary": binary, "model": model}


# ---------------------------------------------------------------------------------------------------------
# the server


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http(method, url, body=None, headers=None, timeout=120):
    """(status, parsed JSON or text, headers) of a request; HTTP errors are returned, not raised."""
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method, headers=dict(headers or {}))
    if data is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            status, raw, hdrs = r.status, r.read(), r.headers
    except urllib.error.HTTPError as e:
        status, raw, hdrs = e.code, e.read(), e.headers
    text = raw.decode("utf-8", "replace")
    try:
        return status, json.loads(text), hdrs
    except ValueError:
        return status, text, hdrs


class Server:
    def __init__(self, prereqs, extra_args=()):
        self.port = _free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.final_log = ""
        self.log = tempfile.NamedTemporaryFile(prefix="ferrite-serve-", suffix=".log", delete=False)
        cmd = [str(prereqs["binary"]), "serve", "--model", str(prereqs["model"]), "--port", str(self.port),
               "--threads", "2", *extra_args]
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT, cwd=REPO)
        deadline = time.time() + 180
        while True:
            if self.proc.poll() is not None:
                self.stop()
                raise AssertionError(f"{cmd} exited with {self.proc.returncode}:\n{self.log_tail()}")
            try:
                status, _, _ = http("GET", self.base + "/health", timeout=5)
                if status == 200:
                    break
            except OSError:
                pass
            if time.time() > deadline:
                self.stop()
                raise AssertionError(f"{cmd}: /health not 200 within 180 s:\n{self.log_tail()}")
            time.sleep(0.25)

    def log_tail(self, n=4000):
        try:
            return Path(self.log.name).read_text(errors="replace")[-n:]
        except OSError:
            return self.final_log[-n:]

    def stop(self):
        """SIGTERM, then the exit status (None: killed after 30 s). Removes the log file."""
        rc = None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                rc = self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        else:
            rc = self.proc.returncode
        self.final_log = self.log_tail(20000)
        self.log.close()
        Path(self.log.name).unlink(missing_ok=True)
        return rc

    def chat(self, messages, headers=None, **params):
        """Non-streaming chat completion: the whole response JSON."""
        status, j, _ = http("POST", self.base + "/v1/chat/completions",
                            {"messages": messages, **params}, headers=headers)
        assert status == 200, f"non-streaming request failed: {status} {j}"
        return j

    def running_sequences(self):
        status, text, _ = http("GET", self.base + "/metrics", timeout=10)
        if status != 200 or not isinstance(text, str):
            return None
        m = re.search(r"^ferrite_running_sequences(?:\{[^}]*\})?\s+([0-9.eE+-]+)\s*$", text, re.M)
        return float(m.group(1)) if m else None


@pytest.fixture(scope="module")
def server(prereqs):
    s = Server(prereqs)
    yield s
    s.stop()


# ---------------------------------------------------------------------------------------------------------
# the browser


@pytest.fixture(scope="module")
def browser(prereqs):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = prereqs["chromium"]
    for a in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
              "--window-size=1280,900", "--no-first-run", "--disable-background-networking",
              "--disable-component-update", "--disable-sync", "--disable-default-apps"):
        opts.add_argument(a)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    service = Service(executable_path=prereqs["chromedriver"])
    driver = webdriver.Chrome(service=service, options=opts)
    driver.set_page_load_timeout(60)
    driver.set_script_timeout(30)
    yield driver
    driver.quit()


# Wraps window.fetch to record every request the page makes (url, method, headers, body).
RECORD_FETCH = """
window.__requests = [];
const orig = window.fetch;
window.fetch = function (input, init) {
  init = init || {};
  window.__requests.push({url: String(input), method: init.method || 'GET',
                          headers: init.headers || {}, body: init.body || null});
  return orig.apply(this, arguments);
};
"""


class Page:
    def __init__(self, driver, server):
        self.d = driver
        self.server = server

    def open(self, clear_storage=True):
        self.d.get(self.server.base + "/")
        if clear_storage:
            self.d.execute_script("localStorage.clear()")
            self.d.get(self.server.base + "/")
        self.wait(lambda: self.text("#model") not in ("", "loading model…"), 30, "the model name to load")
        self.d.execute_script(RECORD_FETCH)

    def js(self, script, *args):
        return self.d.execute_script(script, *args)

    def q(self, css):
        from selenium.webdriver.common.by import By
        return self.d.find_element(By.CSS_SELECTOR, css)

    def text(self, css):
        return self.js("const e = document.querySelector(arguments[0]); return e ? e.textContent : null;", css)

    def set_input(self, css, value):
        e = self.q(css)
        e.clear()
        if value != "":
            e.send_keys(value)

    def assistant_texts(self):
        return self.js("return [...document.querySelectorAll('#messages .msg.assistant .content')]"
                       ".map(e => e.textContent);")

    def count(self, css):
        return self.js("return document.querySelectorAll(arguments[0]).length;", css)

    def state(self):
        return self.js("return document.body.dataset.state;")

    def requests(self, path="chat/completions"):
        return [r for r in self.js("return window.__requests;") if path in r["url"]]

    def dump(self):
        try:
            logs = self.d.get_log("browser")
        except Exception:  # not every driver keeps them
            logs = []
        return (f"state={self.state()!r} stats={self.text('#stats')!r} error={self.text('#error')!r}\n"
                f"assistant={self.assistant_texts()!r}\nbrowser log={logs!r}\n"
                f"server log tail:\n{self.server.log_tail(2000)}")

    def wait(self, cond, timeout, what):
        deadline = time.time() + timeout
        while True:
            try:
                if cond():
                    return
            except Exception:  # a transient script error while the page changes
                pass
            if time.time() > deadline:
                raise AssertionError(f"timed out after {timeout} s waiting for {what}\n{self.dump()}")
            time.sleep(0.1)

    def send(self, prompt):
        self.set_input("#prompt", prompt)
        self.q("#send").click()

    def wait_answer(self, n_assistant):
        """Waits for the n-th answer to be complete: idle again, n assistant messages, tokens/s shown."""
        self.wait(lambda: self.state() == "idle" and self.count("#messages .msg.assistant") == n_assistant
                  and "tokens/s" in (self.text("#stats") or ""), ANSWER_TIMEOUT, f"answer {n_assistant}")


def _tokens_per_s(stats):
    m = re.search(r"([0-9]+(?:\.[0-9]+)?) tokens/s", stats)
    assert m, f"no tokens/s number in the stats {stats!r}"
    return float(m.group(1))


def _body(req):
    return json.loads(req["body"])


# ---------------------------------------------------------------------------------------------------------
# tests


def test_page_is_self_contained(server, browser):
    status, html, hdrs = http("GET", server.base + "/")
    assert status == 200, f"GET / -> {status}"
    assert hdrs.get("Content-Type", "").startswith("text/html"), hdrs.get("Content-Type")
    assert isinstance(html, str) and "<html" in html.lower()
    external = re.findall(r"""(?:src|href|action)\s*=\s*["']?\s*(?:https?:)?//""", html, re.I)
    assert not external, f"the page references external resources: {external}"
    assert not re.search(r"""url\(\s*["']?\s*(?:https?:)?//|@import""", html, re.I), "external CSS"
    # Model output must be rendered as text: no HTML-injecting APIs anywhere in the page.
    for api in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write"):
        assert api not in html, f"the page uses {api}"

    page = Page(browser, server)
    page.open()
    for css in ("#system", "#prompt", "#send", "#stop", "#messages", "#stats", "#error", "#temperature",
                "#max-tokens"):
        assert page.count(css) == 1, f"missing {css}"
    _, models, _ = http("GET", server.base + "/v1/models")
    assert page.text("#model") == models["data"][0]["id"]
    assert page.text("#error") == ""
    origin = server.base
    resources = page.js("return performance.getEntriesByType('resource').map(e => e.name);")
    assert all(r.startswith(origin + "/") or r.startswith("data:") for r in resources), resources


def test_chat_two_turns_match_non_streaming(server, browser):
    page = Page(browser, server)
    page.open()
    page.set_input("#system", SYSTEM_PROMPT)
    page.set_input("#temperature", "0")
    page.set_input("#max-tokens", "24")
    page.send(PROMPT_1)
    page.wait_answer(1)

    # The request the page made: streaming with usage, the settings and messages typed in.
    reqs = page.requests()
    assert len(reqs) == 1
    body = _body(reqs[0])
    messages_1 = [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": PROMPT_1}]
    assert body["messages"] == messages_1
    assert body["stream"] is True and body["stream_options"] == {"include_usage": True}
    assert body["temperature"] == 0 and body["max_tokens"] == 24

    # The streamed answer is the non-streaming greedy answer to the same request.
    ref = server.chat(messages_1, temperature=0, max_tokens=24)
    answer_1 = ref["choices"][0]["message"]["content"]
    assert answer_1, "the model answered nothing; pick another prompt"
    assert page.assistant_texts() == [answer_1]
    assert page.count("#messages .msg.user") == 1
    assert page.text("#messages .msg.user .content") == PROMPT_1

    stats = page.text("#stats")
    assert _tokens_per_s(stats) > 0, stats
    assert re.search(r"\b%d tokens\b" % ref["usage"]["completion_tokens"], stats), (stats, ref["usage"])
    assert "first token" in stats, stats
    assert page.text("#error") == ""
    assert page.q("#send").is_enabled() and not page.q("#stop").is_enabled()

    # Second turn: the request carries the first one.
    page.send(PROMPT_2)
    page.wait_answer(2)
    reqs = page.requests()
    assert len(reqs) == 2
    messages_2 = messages_1 + [{"role": "assistant", "content": answer_1}, {"role": "user", "content": PROMPT_2}]
    assert _body(reqs[1])["messages"] == messages_2
    ref_2 = server.chat(messages_2, temperature=0, max_tokens=24)
    assert page.assistant_texts() == [answer_1, ref_2["choices"][0]["message"]["content"]]
    assert _tokens_per_s(page.text("#stats")) > 0

    # "New chat" forgets the conversation; an empty system prompt is not sent.
    page.q("#clear").click()
    assert page.count("#messages .msg") == 0
    page.set_input("#system", "")
    page.set_input("#max-tokens", "8")
    page.send(PROMPT_1)
    page.wait_answer(1)
    assert _body(page.requests()[-1])["messages"] == [{"role": "user", "content": PROMPT_1}]
    ref_3 = server.chat([{"role": "user", "content": PROMPT_1}], temperature=0, max_tokens=8)
    assert page.assistant_texts() == [ref_3["choices"][0]["message"]["content"]]


def test_stop_button(server, browser):
    page = Page(browser, server)
    page.open()
    page.set_input("#temperature", "0")
    page.set_input("#max-tokens", "300")
    page.send(LONG_PROMPT)
    assert not page.q("#send").is_enabled() and page.q("#stop").is_enabled()
    page.wait(lambda: (page.assistant_texts() or [""])[-1] != "", ANSWER_TIMEOUT, "the first text")
    page.q("#stop").click()
    page.wait(lambda: page.state() == "idle", 10, "the page to be idle after Stop")

    text = page.assistant_texts()[-1]
    assert text, "the partial answer disappeared"
    assert "stopped" in page.q("#messages .msg.assistant").get_attribute("class"), (
        "the generation ended on its own before Stop was clicked: " + page.text("#stats"))
    time.sleep(1.5)
    assert page.assistant_texts()[-1] == text, "text kept growing after Stop"
    assert page.q("#send").is_enabled() and not page.q("#stop").is_enabled()
    assert page.text("#error") == "", "Stop is not an error"
    assert "stopped" in page.text("#stats")

    # The server notices the client went away and frees the sequence (docs/server.md: cancelled at the
    # next step); checked where /metrics has the gauge.
    if server.running_sequences() is not None:
        deadline = time.time() + 10
        while server.running_sequences() != 0:
            assert time.time() < deadline, "the stopped request still runs on the server 10 s after Stop"
            time.sleep(0.2)

    # Ready again: the next turn goes out with the partial answer in the conversation, and completes.
    page.set_input("#max-tokens", "8")
    page.send("Thanks.")
    page.wait_answer(2)
    msgs = _body(page.requests()[-1])["messages"]
    assert msgs == [{"role": "user", "content": LONG_PROMPT}, {"role": "assistant", "content": text},
                    {"role": "user", "content": "Thanks."}]


def test_error_is_shown(server, browser):
    page = Page(browser, server)
    page.open()
    page.set_input("#temperature", "0")
    page.set_input("#max-tokens", "10000000")
    page.send("Hello")
    page.wait(lambda: page.state() == "idle" and page.text("#error") != "", ANSWER_TIMEOUT, "an error")
    body = _body(page.requests()[-1])
    status, j, _ = http("POST", server.base + "/v1/chat/completions", body)
    assert status == 400, (status, j)
    assert page.text("#error") == j["error"]["message"]
    # The failed turn is taken back and its text returned to the prompt box.
    assert page.count("#messages .msg") == 0
    assert page.q("#prompt").get_attribute("value") == "Hello"
    assert page.q("#send").is_enabled()


def test_api_key(prereqs, browser):
    key = "test-key-123"
    srv = Server(prereqs, ["--api-key", key])
    try:
        page = Page(browser, srv)
        # Without the key the model list is refused and the page says so.
        browser.get(srv.base + "/")
        browser.execute_script("localStorage.clear()")
        browser.get(srv.base + "/")
        page.wait(lambda: page.text("#error") != "", 30, "the 401 to be shown")
        status, j, _ = http("GET", srv.base + "/v1/models")
        assert status == 401, (status, j)
        assert j["error"]["message"] in page.text("#error")

        # With the key: models load, the error goes, the key is remembered and sent as a bearer token.
        from selenium.webdriver.common.keys import Keys
        page.q("#api-key").send_keys(key, Keys.TAB)
        _, models, _ = http("GET", srv.base + "/v1/models", headers={"Authorization": "Bearer " + key})
        page.wait(lambda: page.text("#model") == models["data"][0]["id"], 30, "the model name")
        assert page.text("#error") == ""
        assert page.js("return localStorage.getItem('ferrite.apiKey')") == key

        browser.get(srv.base + "/")
        assert page.q("#api-key").get_attribute("value") == key
        page.wait(lambda: page.text("#model") == models["data"][0]["id"], 30, "the model name after reload")
        page.js(RECORD_FETCH)
        page.set_input("#temperature", "0")
        page.set_input("#max-tokens", "8")
        page.send(PROMPT_1)
        page.wait_answer(1)
        assert page.requests()[-1]["headers"].get("Authorization") == "Bearer " + key
        assert page.assistant_texts()[0] != ""
    finally:
        rc = srv.stop()
    assert rc == 0, f"SIGTERM: the server exited with {rc}, not 0\n{srv.log_tail()}"


if __name__ == "__main__":
    import sys

    sys.exit(pytest.main([__file__, "-v", "-rs"]))
