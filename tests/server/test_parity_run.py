"""Greedy output through the server equals what `ferrite run` prints for the same prompt and limit."""

from __future__ import annotations

import subprocess

import pytest

N = 32
CHAT_PROMPTS = [
    "Give me three tips for staying focused while studying.",
    "What is the capital of France?",
    "Explain photosynthesis to a ten-year-old.",
]
RAW_PROMPTS = [
    "The quick brown fox",
    "def fibonacci(n):\n",
    "In 1492, Christopher Columbus",
]
SYSTEM = "You are a pirate. Answer every question like a pirate would."


def ferrite_run(binary, model, prompt: str, chat: bool, system: str | None = None) -> str:
    argv = [str(binary), "run", "--model", str(model)]
    if chat:
        argv.append("--chat")
    if system is not None:
        argv += ["--system", system]
    argv += ["--prompt", prompt, "--temperature", "0", "--max-tokens", str(N)]
    p = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
                       timeout=120)
    assert p.returncode == 0, f"{argv} -> {p.returncode}: {p.stderr.decode(errors='replace')[-2000:]}"
    out = p.stdout.decode("utf-8")
    assert out.endswith("\n"), f"`ferrite run` output does not end with a newline: {out!r}"
    return out[:-1]


@pytest.mark.parametrize("prompt", CHAT_PROMPTS)
def test_chat_greedy_equals_run(client, model_id, ferrite_bin, model_path, prompt):
    expected = ferrite_run(ferrite_bin, model_path, prompt, chat=True)
    r = client.chat.completions.create(model=model_id, messages=[{"role": "user", "content": prompt}],
                                       temperature=0, max_tokens=N)
    assert r.choices[0].message.content == expected


def test_chat_with_system_greedy_equals_run(client, model_id, ferrite_bin, model_path):
    prompt = "Where is the treasure buried?"
    expected = ferrite_run(ferrite_bin, model_path, prompt, chat=True, system=SYSTEM)
    r = client.chat.completions.create(
        model=model_id, temperature=0, max_tokens=N,
        messages=[{"role": "system", "content": SYSTEM}, {"role": "user", "content": prompt}])
    assert r.choices[0].message.content == expected


@pytest.mark.parametrize("prompt", RAW_PROMPTS)
def test_completion_greedy_equals_run(client, model_id, ferrite_bin, model_path, prompt):
    expected = ferrite_run(ferrite_bin, model_path, prompt, chat=False)
    r = client.completions.create(model=model_id, prompt=prompt, temperature=0, max_tokens=N)
    assert r.choices[0].text == expected
