"""The whole service on its embedded defaults, measured: ``churnsignal demo`` with the clock on.

    python bench/service.py [--customers 24] [--train-customers 800] [--corpus-dir DIR] [--seed 0]

Runs the demo (simulated history for real CDNOW customers, a fusion model trained on most
of them, the web app under gunicorn and one worker on SQLite and the SQLite broker,
signed webhooks from four helpdesks replayed for the held-out customers) and prints one
JSON object: webhook answer times, webhooks per second, the time from the first webhook
to the last message analysed, the time from the message that raised an alert to its note
on the ticket (SPEC's target: 15 minutes), and the alerts by tier and status.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from churnsignal.demo import DemoOptions, run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=24)
    parser.add_argument("--train-customers", type=int, default=800)
    parser.add_argument("--corpus-dir", type=Path)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workdir", type=Path, help="Keep the run here (default: a temporary folder).")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        options = DemoOptions(workdir=args.workdir or Path(scratch), train_customers=args.train_customers,
                              replay_customers=args.customers, corpus_dir=args.corpus_dir, seed=args.seed)
        started = time.perf_counter()
        summary = run(options, echo=lambda _line: None)
    summary.pop("example_customer", None)
    summary.pop("api_example", None)
    print(json.dumps({"bench": "service", **vars(args) | {"corpus_dir": args.corpus_dir and str(args.corpus_dir),
                                                          "workdir": args.workdir and str(args.workdir)},
                      "seconds_total": round(time.perf_counter() - started, 1), **summary}, ensure_ascii=False))


if __name__ == "__main__":
    main()
