"""``churnsignal demo``: the whole product on its embedded defaults, fed realistic traffic.

What it does, in the order a deployment would:

1. simulates history for real CDNOW customers with real corpus sentences as their
   support messages (``fusion/simulation.py``) and trains a fusion model on most of them;
2. starts a local helpdesk stand-in, the web app (gunicorn) and a worker, all on
   SQLite and the SQLite broker, configured by one YAML file it writes;
3. sends the held-out customers' orders to ``POST /api/orders`` and replays their
   messages through the real webhook endpoints of Zendesk, Chatwoot, Freshdesk and a
   generic helpdesk, each signed as that helpdesk signs;
4. shows each alert as it lands on a ticket in the stand-in, then a summary;
5. prints the QA workspace's address with a login made for this run, and a signed link to
   the agent's risk badge of its riskiest alerted ticket, and, unless told not to
   (``--no-serve``), keeps everything serving until interrupted.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import click
import pandas as pd
import requests
import yaml
from sqlalchemy import func, select

from churnsignal.config import Settings
from churnsignal.store import Alert, Event, RiskScore, Store, utcnow
from churnsignal.webhook.badge_links import BadgeLink, sign_link

# Helpdesks the replayed customers are spread over, round robin.
SOURCES = ("zendesk", "chatwoot", "freshdesk", "zammad", "generic:shopline")
# Messages replayed per customer: their last ones before the as-of date.
HISTORY_DAYS = 120
# How long the printed badge link works: a day, since the demo may be left serving.
BADGE_LINK_SECONDS = 24 * 3600
GENERIC_MAPPING = {
    "event_id": "message.id", "ticket_id": "conversation.id", "text": "message.body",
    "created_at": "message.sent_at", "author_role": "message.from.role",
    "requester_external_id": "conversation.customer.shop_user_id", "requester_email": "conversation.customer.email",
}


@dataclass(frozen=True)
class DemoOptions:
    workdir: Path
    train_customers: int = 800
    replay_customers: int = 24
    corpus_dir: Path | None = None
    seed: int = 0
    timeout: float = 600.0
    # Keep the web app, the worker and the stand-in running, for the pages, until Ctrl-C.
    keep_serving: bool = False


def run(options: DemoOptions, echo: Callable[[str], None] = click.echo) -> dict:
    """Run the demo end to end; returns the summary it prints last."""
    from churnsignal.fusion import simulation
    from churnsignal.webhook.standin import StandIn

    _start_afresh(options.workdir)
    echo(click.style("1/4 simulating history and training the fusion model", bold=True))
    sim = simulation.simulate(simulation.cdnow_transactions(), simulation.sentence_pool(options.corpus_dir),
                              simulation.SimulationParams(customers=options.train_customers + options.replay_customers),
                              options.seed)
    replay = _pick_replay_customers(sim, options.replay_customers, options.seed)
    model_path = _train(sim, replay, options, echo)

    # The stand-in's own request log would drown the alerts it is there to show.
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    with StandIn() as standin:
        login = DemoLogin.make()
        config, token = _write_config(options.workdir, standin, model_path, qa=login.settings())
        env = os.environ | {"CHURNSIGNAL_CONFIG": str(config)}
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        echo(click.style("2/4 starting the web app and a worker (SQLite store, SQLite broker)", bold=True))
        echo(f"    config: {config}\n    logs:   {options.workdir / 'web.log'}, {options.workdir / 'worker.log'}")
        with running(["serve", "--bind", f"127.0.0.1:{port}", "--workers", "2"], env,
                      options.workdir / "web.log"), \
             running(["worker"], env, options.workdir / "worker.log"):
            wait_for_web(base, timeout=120)
            echo(click.style("3/4 replaying helpdesk traffic through the signed webhooks", bold=True))
            sent = _replay(_as_if_now(sim), replay, base, token, config, echo)
            echo(click.style("4/4 alerts arriving at the helpdesk stand-in", bold=True))
            # The store the web app and the worker use: SQLite in the work folder, unless
            # CHURNSIGNAL_SERVICE__DATABASE_URL points the whole demo at PostgreSQL.
            settings = _settings_from(config)
            store = Store(settings.service.database())
            summary = _watch(store, standin, sent, options.timeout, echo)
            badge = riskiest_badge_link(store, settings)
            store.dispose()
            summary["api_example"] = _api_example(base, token, summary.get("example_customer"))
            _print_summary(summary, echo)
            print_pages(base, login, badge, echo)
            if options.keep_serving:
                _serve_until_interrupted(echo)
    return summary


def _start_afresh(workdir: Path) -> None:
    """Empty the work folder of an earlier run, keeping its trained models and analysis cache."""
    workdir.mkdir(parents=True, exist_ok=True)
    for path in workdir.iterdir():
        if path.is_file() and not (path.name.startswith("fusion-") and path.suffix == ".zip"):
            path.unlink()


def _pick_replay_customers(sim, count: int, seed: int) -> list[str]:
    """Customers with at least two messages in their last ``HISTORY_DAYS`` before as-of."""
    window = sim.events[(sim.events["created_at"] < sim.as_of)
                        & (sim.events["created_at"] >= sim.as_of - timedelta(days=HISTORY_DAYS))
                        & (sim.events["author"] == "customer")]
    busy = window.groupby("customer_id").size()
    candidates = busy[busy >= 2].index.to_series()
    return sorted(candidates.sample(min(count, len(candidates)), random_state=seed))


def _train(sim, replay: list[str], options: DemoOptions, echo) -> Path:
    from churnsignal.config import get_settings
    from churnsignal.fusion import artifact, training

    path = options.workdir / f"fusion-{options.train_customers}-{options.seed}.zip"
    try:
        artifact.describe(path)
        echo(f"    reusing {path}")
        return path
    except artifact.ArtifactError:
        pass
    labels = sim.labels.set_index("customer_id").drop(index=replay)
    orders = sim.orders[sim.orders["ordered_at"] < sim.as_of]
    started = time.monotonic()
    model = training.train(orders, sim.events, labels, sim.as_of, get_settings(), seed=options.seed)
    artifact.save(model, path)
    figures = model.info["training"]
    echo(f"    trained on {len(labels)} customers in {time.monotonic() - started:.0f} s "
         f"(out-of-fold AUC {figures.get('oof_auc', float('nan')):.3f})")
    return path


def _as_if_now(sim):
    """The simulation moved in time so that its as-of moment is now: the traffic reads as live.

    Freshdesk's webhook carries no message time (it is the time it arrives), and alerts are
    due hours after they are raised, so replayed history must line up with the clock.
    """
    from dataclasses import replace

    shift = pd.Timestamp.utcnow().tz_localize(None).floor("s") - sim.as_of
    return replace(sim, orders=sim.orders.assign(ordered_at=sim.orders["ordered_at"] + shift),
                   events=sim.events.assign(created_at=sim.events["created_at"] + shift), as_of=sim.as_of + shift)


@dataclass(frozen=True)
class DemoLogin:
    """A QA workspace login made for one demo run: a fresh password, printed at the end."""

    name: str
    password: str

    @classmethod
    def make(cls) -> DemoLogin:
        return cls("demo", secrets.token_urlsafe(12))

    def settings(self) -> dict:
        from churnsignal.webhook.pages.login import hash_password

        # Plain HTTP on 127.0.0.1: the session cookie cannot be Secure-only here.
        return {"users": [{"name": self.name, "role": "admin", "password_hash": hash_password(self.password)}],
                "secret_key": secrets.token_hex(32), "secure_cookies": False}


def riskiest_badge_link(store: Store, settings: Settings) -> BadgeLink | None:
    """A signed link to the badge of the ticket with the riskiest alert (the latest of equals);
    None when the run raised no alert."""
    with store.session() as session:
        alert = session.scalar(select(Alert).order_by(Alert.churn_prob.desc(), Alert.created_at.desc(),
                                                      Alert.id.desc()).limit(1))
    if alert is None:
        return None
    return sign_link(settings.badge.secret, alert.source, alert.ticket_id, BADGE_LINK_SECONDS)


def print_pages(base: str, login: DemoLogin, badge: BadgeLink | None, echo) -> None:
    """Where to look once the replay is over: the QA workspace with its login, and an agent's badge."""
    echo(click.style("the pages", bold=True))
    echo(f"    QA workspace 质检工作台: {base}/qa/    login: {login.name} / {login.password}")
    if badge is None:
        echo("    risk badge 风险徽章: no alert was raised, so no ticket has a badge to show")
    else:
        echo(f"    risk badge 风险徽章:     {base}{badge.path()}")
        echo(f"        ({badge.source} ticket {badge.ticket}; a signed link, valid for "
             f"{BADGE_LINK_SECONDS // 3600} h, as a helpdesk would put it in its sidebar)")


def _serve_until_interrupted(echo) -> None:
    echo("    serving until interrupted (Ctrl-C)")
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        echo("    stopping")


def _write_config(workdir: Path, standin, model_path: Path, qa: dict | None = None) -> tuple[Path, str]:
    """The one YAML file the web app and the worker read: fresh secrets, the stand-in's address,
    the risk badge on and, given ``qa``, the QA workspace's settings."""
    token = secrets.token_urlsafe(24)
    config = {
        "service": {"data_dir": str(workdir), "api_token": token, "requeue_after_seconds": 30},
        "alerts": {"model_path": str(model_path), "cooldown_hours": 24},
        "identity": {"pepper": secrets.token_hex(32)},
        "badge": {"enabled": True, "secret": secrets.token_hex(32)},
        "fusion": {"cache_dir": str(workdir / "cache")},
        "helpdesks": {
            "zendesk": {"signing_secret": secrets.token_hex(16), "base_url": standin.url("zendesk"),
                        "email": "bot@example.com", "api_token": secrets.token_hex(8)},
            "chatwoot": {"webhook_secret": secrets.token_hex(16), "base_url": standin.url("chatwoot"),
                         "account_id": 1, "api_token": secrets.token_hex(8)},
            "freshdesk": {"webhook_secret": secrets.token_hex(16), "base_url": standin.url("freshdesk"),
                          "api_key": secrets.token_hex(8)},
            "zammad": {"webhook_secret": secrets.token_hex(16), "base_url": standin.url("zammad"),
                       "api_token": secrets.token_hex(8)},
            "generic": {"shopline": {"mapping": GENERIC_MAPPING, "secret": secrets.token_hex(16),
                                     "alert_url": standin.url("generic:shopline")}},
            "max_attempts": 5, "backoff_seconds": 1.0,
        },
    }
    if qa is not None:
        config["qa"] = qa
    path = workdir / "churnsignal.yaml"
    path.write_text(yaml.safe_dump(config, allow_unicode=True, sort_keys=False))
    return path, token


@contextmanager
def running(args: list[str], env: dict[str, str], log: Path) -> Iterator[subprocess.Popen]:
    """``churnsignal ARGS`` in its own process group, stopped (and its children) on exit."""
    with open(log, "ab") as out:
        process = subprocess.Popen([sys.executable, "-m", "churnsignal.cli", *args], env=env, stdout=out,
                                   stderr=subprocess.STDOUT, start_new_session=True)
    try:
        yield process
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_web(base: str, timeout: float, healthy: bool = True) -> None:
    """Until the web app answers ``/healthz`` (with 200, if ``healthy``)."""
    deadline = time.monotonic() + timeout
    last = "no answer"
    while time.monotonic() < deadline:
        try:
            answer = requests.get(f"{base}/healthz", timeout=10)
            if answer.status_code == 200 or not healthy:
                return
            last = answer.text
        except requests.RequestException as exc:
            last = str(exc)
        time.sleep(0.5)
    raise click.ClickException(f"the web app did not become healthy in {timeout:.0f} s: {last}")


def _replay(sim, replay: list[str], base: str, token: str, config: Path, echo) -> dict:
    """Orders, identities, then every message in time order, each through its customer's helpdesk."""
    from churnsignal.webhook import helpdesks
    from churnsignal.webhook.helpdesks.base import Requester, SupportEvent

    settings = _settings_from(config)
    auth = {"Authorization": f"Bearer {token}"}
    orders = sim.orders[sim.orders["customer_id"].isin(replay) & (sim.orders["ordered_at"] < sim.as_of)]
    rows = [{"customer_id": r.customer_id, "order_id": str(r.order_id), "ordered_at": r.ordered_at.isoformat(),
             "amount": float(r.amount), "status": r.status, **({"category": r.category} if _given(r.category) else {})}
            for r in orders.itertuples()]
    answer = requests.post(f"{base}/api/orders", json={"orders": rows}, headers=auth, timeout=60)
    answer.raise_for_status()
    source_of = {c: SOURCES[i % len(SOURCES)] for i, c in enumerate(replay)}
    email_of = {c: f"customer{c}@example.com" for c in replay}
    identities = [{"customer_id": c, "email": email_of[c]} for c in replay]
    answer = requests.post(f"{base}/api/identities", json={"identities": identities}, headers=auth, timeout=30)
    answer.raise_for_status()
    echo(f"    {len(rows)} orders and {len(identities)} customer identities loaded through the API")

    window = sim.events[sim.events["customer_id"].isin(replay) & (sim.events["created_at"] < sim.as_of)
                        & (sim.events["created_at"] >= sim.as_of - timedelta(days=HISTORY_DAYS))]
    window = window.sort_values("created_at", kind="stable")
    tickets: dict[str, str] = {}
    answers: Counter[int] = Counter()
    latencies: list[float] = []
    started = time.monotonic()
    for number, row in enumerate(window.itertuples(), start=1):
        source = source_of[row.customer_id]
        ticket = tickets.setdefault(f"{row.customer_id}/{row.ticket_id}", str(1000 + len(tickets)))
        # Zendesk and the generic helpdesk know the shop's user id; Chatwoot, Freshdesk and Zammad only an email.
        requester = (Requester(id=f"u{row.customer_id}", email=email_of[row.customer_id])
                     if source in ("chatwoot", "freshdesk", "zammad")
                     else Requester(id=f"u{row.customer_id}", external_id=str(row.customer_id)))
        event = SupportEvent(source=source, event_id=f"m{number}", ticket_id=ticket, author=row.author,
                             text=row.text, created_at=row.created_at.to_pydatetime(), requester=requester,
                             channel="chat" if row.channel == "chat" else "ticket")
        adapter = helpdesks.get(source, settings.helpdesks)
        webhook = adapter.signed_webhook(event, utcnow())
        sent_at = time.perf_counter()
        answers[requests.post(f"{base}{webhook.path}", data=webhook.body, headers=webhook.headers,
                              timeout=10).status_code] += 1
        latencies.append(time.perf_counter() - sent_at)
        if number == 1:
            # A helpdesk retrying a delivery it thinks failed: answered 200, stored once.
            answers[requests.post(f"{base}{webhook.path}", data=webhook.body, headers=webhook.headers,
                                  timeout=10).status_code] += 1
            echo("    first message sent twice, as a retrying helpdesk would")
    elapsed = time.monotonic() - started
    echo(f"    {len(window)} messages on {len(tickets)} tickets in {elapsed:.1f} s "
         f"({len(window) / max(elapsed, 1e-9):.0f} webhooks/s); answers: "
         + ", ".join(f"{code} × {n}" for code, n in sorted(answers.items())))
    bad = requests.post(f"{base}/webhooks/zendesk", data=b'{"forged": true}',
                        headers={"Content-Type": "application/json", "X-Zendesk-Webhook-Signature": "forged",
                                 "X-Zendesk-Webhook-Signature-Timestamp": "0"}, timeout=10)
    echo(f"    a forged request: {bad.status_code} {bad.json().get('error', '')}")
    latencies.sort()
    return {"messages": len(window), "tickets": len(tickets), "customers": len(replay), "answers": dict(answers),
            "webhooks_per_second": round(len(window) / max(elapsed, 1e-9), 1),
            "webhook_answer_ms": {"median": round(1000 * latencies[len(latencies) // 2], 1),
                                  "p99": round(1000 * latencies[int(0.99 * (len(latencies) - 1))], 1)}}


def _settings_from(config: Path) -> Settings:
    previous = os.environ.get("CHURNSIGNAL_CONFIG")
    os.environ["CHURNSIGNAL_CONFIG"] = str(config)
    try:
        return Settings()
    finally:
        if previous is None:
            del os.environ["CHURNSIGNAL_CONFIG"]
        else:
            os.environ["CHURNSIGNAL_CONFIG"] = previous


def _given(value) -> bool:
    return isinstance(value, str) and bool(value)


_COLOURS = {"red": "red", "yellow": "yellow", "blue": "blue"}


def _watch(store: Store, standin, sent: dict, timeout: float, echo) -> dict:
    """Print alerts as they are delivered, until every message is processed and every alert settled."""
    shown: set[int] = set()
    deadline = time.monotonic() + timeout
    while True:
        with store.session() as session:
            pending = session.scalar(select(func.count()).where(Event.status.in_(("received", "queued"))))
            alerts = session.scalars(select(Alert).order_by(Alert.id)).all()
        for alert in alerts:
            if alert.id in shown or alert.status == "open":
                continue
            shown.add(alert.id)
            tier = click.style(f"{alert.tier.upper():<6}", fg=_COLOURS.get(alert.tier), bold=True)
            reasons = "；".join(r["zh"] for r in alert.reasons) or "—"
            echo(f"    {alert.status:<10} {alert.source:<17} ticket {alert.ticket_id:<6} {tier} "
                 f"{alert.churn_prob:.2f}  {reasons}  → {alert.action['zh']}")
        settled = all(a.status != "open" for a in alerts)
        if pending == 0 and settled:
            break
        if time.monotonic() > deadline:
            echo(click.style(f"    stopped waiting after {timeout:.0f} s: {pending} message(s) still queued", fg="red"))
            break
        time.sleep(1)
    with store.session() as session:
        analysed = session.scalar(select(func.count()).where(Event.status == "analysed"))
        alerts = session.scalars(select(Alert).order_by(Alert.id)).all()
        scored = session.scalar(select(func.count(Event.customer_id.distinct())).where(Event.status == "analysed"))
        first_in, last_done = session.execute(select(func.min(Event.received_at), func.max(Event.analysed_at))).one()
        # From the webhook that triggered an alert to its note on the ticket.
        waits = sorted((a.delivered_at - e.received_at).total_seconds() for a, e in session.execute(
            select(Alert, Event).join(RiskScore, RiskScore.id == Alert.score_id)
            .join(Event, Event.id == RiskScore.event_id).where(Alert.delivered_at.is_not(None))))
    notes = standin.notes()
    top = max(alerts, key=lambda a: a.churn_prob, default=None)
    span = (last_done - first_in).total_seconds() if first_in and last_done else None
    return {**sent, "analysed_messages": analysed, "customers_with_messages": scored,
            "seconds_first_webhook_to_last_analysed": round(span, 1) if span else None,
            "alerts": dict(Counter(f"{a.tier}/{a.status}" for a in alerts)),
            "notes_at_helpdesks": len(notes),
            "seconds_message_to_note": {"median": round(waits[len(waits) // 2], 1), "max": round(waits[-1], 1)}
            if waits else None,
            "example_customer": top.customer_id if top else None}


def _api_example(base: str, token: str, customer_id: str | None) -> dict | None:
    if customer_id is None:
        return None
    answer = requests.get(f"{base}/api/customers/{customer_id}/risk", headers={"Authorization": f"Bearer {token}"},
                          timeout=10)
    return answer.json()


def _print_summary(summary: dict, echo) -> None:
    echo(click.style("summary", bold=True))
    example = summary.pop("api_example", None)
    summary.pop("example_customer", None)
    echo(json.dumps(summary, ensure_ascii=False, indent=2))
    if example:
        echo(click.style("GET /api/customers/<id>/risk for the riskiest customer:", bold=True))
        brief = {k: example.get(k) for k in ("customer_id", "tier", "churn_prob", "driver", "action", "reasons")}
        echo(json.dumps(brief, ensure_ascii=False, indent=2))
