"""32 concurrent streaming requests give exactly the text each gives alone."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

from ferrite_util import collect_chat_stream, get_metrics, user, wait_metrics

TOPICS = ["volcanoes", "honeybees", "the moon", "chess", "bicycles", "coffee", "glaciers", "octopuses",
          "the printing press", "rainbows", "jazz", "penguins", "the Roman roads", "tea ceremonies",
          "lighthouses", "origami", "thunderstorms", "the Silk Road", "tulips", "submarines", "maple syrup",
          "the Great Wall", "owls", "sourdough bread", "comets", "windmills", "coral reefs", "violins",
          "deserts", "hot air balloons", "the Nile", "fireflies"]
PROMPTS = [f"Write two sentences about {t}." for t in TOPICS]
MAX = 24


def run_one(client, model_id, prompt):
    s = collect_chat_stream(client, model=model_id, messages=user(prompt), temperature=0, max_tokens=MAX,
                            stream_options={"include_usage": True})
    return s.text, s.finish_reason, s.usage.completion_tokens


def test_32_concurrent_streams_equal_alone(client, model_id, base_url):
    assert len(set(PROMPTS)) == 32
    alone = [run_one(client, model_id, p) for p in PROMPTS]

    before = get_metrics(base_url)
    barrier = threading.Barrier(len(PROMPTS))

    def task(prompt):
        barrier.wait(timeout=60)
        return run_one(client, model_id, prompt)

    with ThreadPoolExecutor(max_workers=len(PROMPTS)) as pool:
        together = list(pool.map(task, PROMPTS))
    generated = sum(n for _, _, n in together)
    counted, after = wait_metrics(  # the counters may be updated just after the last byte is sent
        base_url, lambda m: m.value("ferrite_generated_tokens_total")
        - before.value("ferrite_generated_tokens_total") >= generated, timeout=3)

    mismatches = [(p, a, t) for p, a, t in zip(PROMPTS, alone, together) if a != t]
    assert not mismatches, (f"{len(mismatches)} of 32 differ when batched; first: prompt {mismatches[0][0]!r}: "
                            f"alone {mismatches[0][1]!r}, concurrent {mismatches[0][2]!r}")
    for text, finish, n in together:
        assert text and finish in ("stop", "length") and 1 <= n <= MAX

    # the 32 requests really ran batched: many sequences per engine step on average
    steps = after.value("ferrite_batch_sequences_count") - before.value("ferrite_batch_sequences_count")
    seqs = after.value("ferrite_batch_sequences_sum") - before.value("ferrite_batch_sequences_sum")
    assert steps > 0
    assert seqs / steps >= 4, f"average {seqs / steps:.2f} sequences per step over {steps:.0f} steps"
    # and the generated-token counter counted every token
    gen = after.value("ferrite_generated_tokens_total") - before.value("ferrite_generated_tokens_total")
    assert counted, f"ferrite_generated_tokens_total grew by {gen:.0f}, the responses have {generated} tokens"
