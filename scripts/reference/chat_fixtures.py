#!/usr/bin/env python3
"""Render chat templates with Python jinja2 exactly as Hugging Face's apply_chat_template does, as golden
fixtures for Ferrite's minijinja renderer (crates/ferrite-engine/tests/chat_templates.rs).

    python3 scripts/reference/chat_fixtures.py     # needs jinja2, gguf==0.19.0, the models and the sdist

Templates: the two real models that carry one (SmolLM2, Qwen2.5-Coder, read from their GGUF metadata) and a
selection from llama.cpp's models/templates/ (llama-cpp-python 0.3.36 sdist). The template texts are
embedded in the fixture, so the Rust test needs neither the sdist nor the models.
"""
import json
import os
import sys
from datetime import datetime

import jinja2
from jinja2.ext import loopcontrols
from jinja2.sandbox import ImmutableSandboxedEnvironment

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CACHE = os.environ.get("FERRITE_CACHE", os.path.join(ROOT, ".cache"))
MODELS = os.environ.get("FERRITE_MODELS", os.path.join(ROOT, "models"))
TEMPLATES = os.path.join(CACHE, "llama_cpp_python-0.3.36/vendor/llama.cpp/models/templates")
OUT = os.path.join(ROOT, "crates/ferrite-engine/tests/fixtures/chat_templates.json")


def hf_env():
    # transformers' _compile_jinja_template: sandboxed, trim/lstrip blocks, loop controls, these helpers.
    def raise_exception(message):
        raise jinja2.exceptions.TemplateError(message)

    def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
        return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)

    def strftime_now(fmt):
        return datetime(2026, 11, 28).strftime(fmt)  # fixed: fixtures must not depend on the day

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[loopcontrols])
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = strftime_now
    return env


def gguf_template(file):
    import gguf

    r = gguf.GGUFReader(os.path.join(MODELS, file))
    f = r.fields["tokenizer.chat_template"]
    return bytes(f.parts[f.data[0]]).decode("utf-8")


TOOLS = [{"type": "function", "function": {"name": "get_weather", "description": "Weather <now> & 'soon'",
          "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}]

CONVERSATIONS = {
    "user": [{"role": "user", "content": "Hello! What's 2+2?"}],
    "system_user": [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "Name a prime."}],
    "multi_turn": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello, how can I help?"},
                   {"role": "user", "content": "Tell me a joke about café ☕ and 日本."}],
}


def main():
    env = hf_env()
    sources = {
        "smollm2": (gguf_template("smollm2-135m-instruct-q4_1.gguf"), "<|im_start|>", "<|im_end|>"),
        "qwen25_coder": (gguf_template("qwen2.5-coder-0.5b-instruct-q4_k_m.gguf"), "<|endoftext|>", "<|im_end|>"),
    }
    for name, bos, eos in [
        ("meta-llama-Llama-3.1-8B-Instruct", "<|begin_of_text|>", "<|eot_id|>"),
        ("google-gemma-2-2b-it", "<bos>", "<eos>"),
        ("microsoft-Phi-3.5-mini-instruct", "<s>", "<|endoftext|>"),
        ("mistralai-Mistral-Nemo-Instruct-2407", "<s>", "</s>"),
        ("deepseek-ai-DeepSeek-R1-Distill-Qwen-32B", "<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>"),
        ("Qwen-Qwen3-0.6B", "", "<|im_end|>"),
        ("ibm-granite-granite-3.3-2B-Instruct", "", "<|end_of_text|>"),
    ]:
        with open(os.path.join(TEMPLATES, name + ".jinja"), encoding="utf-8") as f:
            sources[name] = (f.read(), bos, eos)

    cases = []
    for tname, (src, bos, eos) in sources.items():
        tmpl = env.from_string(src)
        for cname, messages in CONVERSATIONS.items():
            for gen in (True, False):
                for tools in ((None, TOOLS) if tname in ("qwen25_coder", "Qwen-Qwen3-0.6B", "meta-llama-Llama-3.1-8B-Instruct") else (None,)):
                    ctx = dict(messages=messages, add_generation_prompt=gen, bos_token=bos, eos_token=eos)
                    if tools is not None:
                        ctx["tools"] = tools
                    try:
                        out = {"expected": tmpl.render(**ctx)}
                    except jinja2.exceptions.TemplateError as e:
                        out = {"error": str(e)}
                    cases.append(dict(template=tname, conversation=cname, add_generation_prompt=gen,
                                      tools=tools, messages=messages, **out))
    fixture = {"format": "ferrite-chat-templates/1", "jinja2": jinja2.__version__, "strftime_date": "2026-11-28",
               "templates": {k: {"source": v[0], "bos_token": v[1], "eos_token": v[2]} for k, v in sources.items()},
               "cases": cases}
    with open(OUT, "w", encoding="utf-8") as f:
        json.dump(fixture, f, ensure_ascii=False, indent=1)
    print(f"{len(cases)} cases from {len(sources)} templates -> {OUT}", file=sys.stderr)


if __name__ == "__main__":
    main()
