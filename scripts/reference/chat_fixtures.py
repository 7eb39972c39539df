#!/usr/bin/env python3
"""Render chat templates with Hugging Face transformers' own apply_chat_template machinery (Python jinja2), as
golden fixtures for Ferrite's minijinja renderer (crates/ferrite-engine/tests/chat_templates.rs).

    pip install jinja2 transformers gguf       # transformers without torch is enough
    python3 scripts/reference/chat_fixtures.py            # the committed selection (needs the models and the sdist)
    python3 scripts/reference/chat_fixtures.py --all OUT  # every template of llama.cpp's models/templates/ into OUT
    FERRITE_CHAT_FIXTURES=OUT cargo test -p ferrite-engine --test chat_templates   # check OUT instead

Each case goes through what PreTrainedTokenizerBase.apply_chat_template does to render: the messages are
normalised (_normalize_chat_messages), bos_token and eos_token stand in for the tokenizer's special tokens,
and render_jinja_template renders (tools and documents None when not given, reasoning fields aliased, the
sandboxed environment with trim_blocks, lstrip_blocks, loop controls, {% generation %}, raise_exception,
tojson, strftime_now). Only the clock is fixed, so the fixture does not depend on the day it was made.

Templates: the real models that carry one (SmolLM2, Qwen2.5-Coder, read from their GGUF metadata) and a
selection from llama.cpp's models/templates/ (llama-cpp-python 0.3.36 sdist). The template texts are
embedded in the fixture, so the Rust test needs neither the sdist nor the models nor Python.

A case records `expected` (the rendered text) or, when rendering fails, `error` and `raised`: true when the
template itself called raise_exception (Ferrite must fail with the same message), false for any other error
(a TypeError, an undefined attribute: Ferrite must fail too).
"""
import argparse
import json
import os
import sys
from datetime import datetime

import jinja2
import transformers
import transformers.utils.chat_template_utils as chat_template_utils
from transformers.tokenization_utils_base import _normalize_chat_messages

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CACHE = os.environ.get("FERRITE_CACHE", os.path.join(ROOT, ".cache"))
MODELS = os.environ.get("FERRITE_MODELS", os.path.join(ROOT, "models"))
TEMPLATES = os.path.join(CACHE, "llama_cpp_python-0.3.36/vendor/llama.cpp/models/templates")
OUT = os.path.join(ROOT, "crates/ferrite-engine/tests/fixtures/chat_templates.json")
FIXED_NOW = datetime(2026, 11, 28, 9, 5, 7)  # strftime_now's time; the Rust test fixes the same one


class FixedClock(datetime):
    @classmethod
    def now(cls, tz=None):
        return FIXED_NOW


chat_template_utils.datetime = FixedClock  # what transformers' strftime_now calls


def gguf_template(file):
    import gguf

    r = gguf.GGUFReader(os.path.join(MODELS, file))
    f = r.fields["tokenizer.chat_template"]
    return bytes(f.parts[f.data[0]]).decode("utf-8")


TOOLS = [
    {"type": "function", "function": {
        "name": "get_weather", "description": "Weather <now> & 'soon'",
        "parameters": {"type": "object", "properties": {
            "city": {"type": "string", "description": "City name, e.g. Zürich"},
            "days": {"type": "integer", "default": 1}}, "required": ["city"]}}},
    {"type": "function", "function": {"name": "now", "description": "The time.",
                                      "parameters": {"type": "object", "properties": {}}}},
]

CALL = {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": {"city": "Paris", "days": 2}}}

CONVERSATIONS = {
    "user": [{"role": "user", "content": "Hello! What's 2+2?"}],
    "system_user": [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "Name a prime."}],
    "multi_turn": [
        {"role": "system", "content": "  Be kind.\n"},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello, how can I help?"},
        {"role": "user", "content": "Tell me a joke about café ☕ and 日本.\n\n"},
    ],
    # transformers' documented tool use: the assistant turn has tool_calls and no content at all.
    "tool_round_trip": [
        {"role": "user", "content": "Weather in Paris for 2 days?"},
        {"role": "assistant", "tool_calls": [CALL]},
        {"role": "tool", "tool_call_id": "call_1", "name": "get_weather", "content": "{\"temp\": 21, \"sky\": \"clear\"}"},
    ],
    # OpenAI's wire format: content null, arguments as a JSON string.
    "tool_openai": [
        {"role": "system", "content": "Use tools."},
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\": \"Paris\"}"}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "21 C"},
        {"role": "assistant", "content": "It is 21 °C in Paris."},
    ],
    # Strict templates refuse this with raise_exception.
    "non_alternating": [{"role": "user", "content": "One."}, {"role": "user", "content": "Two."}],
}
TOOL_CONVERSATIONS = ("tool_round_trip", "tool_openai")

# (template, bos, eos, options): the committed selection.
#   tools: also render the plain conversations with tools offered, and the tool conversations at all.
#   kwargs: extra template variables, as apply_chat_template's **kwargs, for one more multi_turn case.
SELECTION = [
    ("meta-llama-Llama-3.1-8B-Instruct", "<|begin_of_text|>", "<|eot_id|>", {"tools": True}),
    ("meta-llama-Llama-3.2-3B-Instruct", "<|begin_of_text|>", "<|eot_id|>", {"tools": True}),
    ("google-gemma-2-2b-it", "<bos>", "<eos>", {}),
    ("google-gemma-4-31B-it", "<bos>", "<eos>", {"tools": True}),
    ("microsoft-Phi-3.5-mini-instruct", "<s>", "<|endoftext|>", {}),
    ("mistralai-Mistral-Nemo-Instruct-2407", "<s>", "</s>", {"tools": True}),
    ("Mistral-Small-3.2-24B-Instruct-2506", "<s>", "</s>", {}),
    ("deepseek-ai-DeepSeek-R1-Distill-Qwen-32B", "<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>", {}),
    ("deepseek-ai-DeepSeek-V3.1", "<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>", {"kwargs": {"thinking": True}}),
    ("Qwen-Qwen3-0.6B", "", "<|im_end|>", {"tools": True, "kwargs": {"enable_thinking": False}}),
    ("ibm-granite-granite-3.3-2B-Instruct", "", "<|end_of_text|>", {"tools": True}),
    ("HuggingFaceTB-SmolLM3-3B", "", "<|im_end|>", {"kwargs": {"enable_thinking": False}}),
    ("openai-gpt-oss-120b", "<|startoftext|>", "<|return|>", {"tools": True, "kwargs": {"reasoning_effort": "high"}}),
]


def render(src, bos, eos, messages, gen, tools, kwargs):
    """apply_chat_template(messages, tools=tools, add_generation_prompt=gen, tokenize=False, **kwargs)."""
    try:
        rendered, _ = chat_template_utils.render_jinja_template(
            conversations=[_normalize_chat_messages(messages)], tools=tools, chat_template=src,
            add_generation_prompt=gen, **{"bos_token": bos, "eos_token": eos, **kwargs})
        return {"expected": rendered[0]}
    except jinja2.exceptions.TemplateError as e:
        # raise_exception raises exactly TemplateError; jinja2's own errors are subclasses of it.
        raised = type(e) is jinja2.exceptions.TemplateError
        return {"error": str(e) if raised else f"{type(e).__name__}: {e}", "raised": raised}
    except Exception as e:  # noqa: BLE001 - a TypeError etc.: Ferrite must fail as well
        return {"error": f"{type(e).__name__}: {e}", "raised": False}


def cases_for(name, src, bos, eos, opts):
    cases = []
    for cname, messages in CONVERSATIONS.items():
        is_tool = cname in TOOL_CONVERSATIONS
        if is_tool and not opts.get("tools"):
            continue
        tool_choices = (TOOLS,) if is_tool else ((None, TOOLS) if opts.get("tools") else (None,))
        for tools in tool_choices:
            for gen in (True, False):
                if cname == "non_alternating" and (gen is False or tools is not None):
                    continue
                cases.append(dict(template=name, conversation=cname, add_generation_prompt=gen, tools=tools is not None,
                                  kwargs={}, **render(src, bos, eos, messages, gen, tools, {})))
    if "kwargs" in opts:
        cases.append(dict(template=name, conversation="multi_turn", add_generation_prompt=True, tools=False,
                          kwargs=opts["kwargs"],
                          **render(src, bos, eos, CONVERSATIONS["multi_turn"], True, None, opts["kwargs"])))
    return cases


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--all", metavar="OUT", help="render every template in llama.cpp's models/templates/ into OUT")
    args = ap.parse_args()

    templates = {}  # name -> (source, bos, eos, options)
    if args.all:
        known = {name: (bos, eos) for name, bos, eos, _ in SELECTION}
        for f in sorted(os.listdir(TEMPLATES)):
            if f.endswith(".jinja"):
                name = f[: -len(".jinja")]
                bos, eos = known.get(name, ("<s>", "</s>"))
                with open(os.path.join(TEMPLATES, f), encoding="utf-8") as fh:
                    templates[name] = (fh.read(), bos, eos, {"tools": True})
        out = args.all
    else:
        templates["smollm2"] = (gguf_template("smollm2-135m-instruct-q4_1.gguf"), "<|im_start|>", "<|im_end|>", {})
        # Byte for byte Qwen-Qwen2.5-7B-Instruct.jinja.
        templates["qwen2.5-coder"] = (gguf_template("qwen2.5-coder-0.5b-instruct-q4_k_m.gguf"), "<|endoftext|>",
                                      "<|im_end|>", {"tools": True})
        for name, bos, eos, opts in SELECTION:
            with open(os.path.join(TEMPLATES, name + ".jinja"), encoding="utf-8") as fh:
                templates[name] = (fh.read(), bos, eos, opts)
        out = OUT

    cases = []
    for name, (src, bos, eos, opts) in templates.items():
        cases += cases_for(name, src, bos, eos, opts)
    fixture = {
        "format": "ferrite-chat-templates/2",
        "transformers": transformers.__version__,
        "jinja2": jinja2.__version__,
        "strftime_now": FIXED_NOW.isoformat(),
        "tools": TOOLS,
        "conversations": CONVERSATIONS,
        "templates": {k: {"source": v[0], "bos_token": v[1], "eos_token": v[2]} for k, v in templates.items()},
        "cases": cases,
    }
    with open(out, "w", encoding="utf-8") as f:
        json.dump(fixture, f, ensure_ascii=False, indent=1)
        f.write("\n")
    n_err = sum("error" in c for c in cases)
    print(f"{len(cases)} cases ({n_err} errors) from {len(templates)} templates -> {out}", file=sys.stderr)


if __name__ == "__main__":
    main()
