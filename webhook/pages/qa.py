"""The QA workspace (``/qa``): complaint trends, spikes and the messages behind them.

Each figure has one endpoint that answers JSON (what the page's chart draws) or CSV (the
same rows, for a spreadsheet): ``/qa/data/<figure>.json`` and ``.csv``, under the filters
in the query string. The pages only read the store, but for one form: marking an alert handled.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import date
from typing import Any

from flask import Blueprint, Response, jsonify, redirect, render_template, request, url_for
from sqlalchemy import select
from werkzeug.exceptions import NotFound

from churnsignal.webhook.app import service
from churnsignal.store import Alert, AlertHandling, utcnow
from churnsignal.webhook.pages import csrf, secure_headers, spikes, trends
from churnsignal.webhook.pages.filters import Filters, parse
from churnsignal.webhook.pages.login import current_user, login_required, safe_next
from churnsignal.webhook.pages.trends import TOPIC_NAMES, Table

blueprint = Blueprint("qa", __name__, url_prefix="/qa")
blueprint.after_request(secure_headers)


@blueprint.before_request
def _checked_forms() -> None:
    if request.method == "POST":
        csrf.protect()

# Newest first, at most this many on a page (the page says so) and in an export of messages or alerts.
MESSAGES_SHOWN = 200
EXPORTED = 10_000


@blueprint.get("/")
@login_required()
def index():
    return _page("qa/index.html", _filters())


@blueprint.get("/messages")
@login_required()
def drill_down():
    filters = _filters()
    with service().store.session() as session:
        found = trends.messages(session, filters, service().settings, limit=MESSAGES_SHOWN)
    return _page("qa/messages.html", filters, messages=found, capped=len(found) == MESSAGES_SHOWN)


@blueprint.get("/alerts")
@login_required()
def alert_list():
    filters = _filters()
    with service().store.session() as session:
        found = trends.alerts(session, filters, service().settings, limit=MESSAGES_SHOWN)
    return _page("qa/alerts.html", filters, alerts=found, capped=len(found) == MESSAGES_SHOWN)


@blueprint.post("/alerts/<int:alert_id>/handled")
@login_required()
def mark_handled(alert_id: int):
    """Record that the logged-in person handled an alert (the audit row outcomes count); once per alert."""
    with service().store.session() as session:
        if session.get(Alert, alert_id) is None:
            raise NotFound(f"unknown alert {alert_id}")
        done = session.scalar(select(AlertHandling.id).where(AlertHandling.alert_id == alert_id).limit(1))
        if done is None:
            session.add(AlertHandling(alert_id=alert_id, handled_by=current_user().name, handled_at=utcnow(),
                                      via="qa"))
    return redirect(safe_next(request.form.get("next"), url_for("qa.alert_list")))


@blueprint.get("/spikes")
@login_required()
def spike_list():
    filters = _filters()
    return _page("qa/spikes.html", filters, rows=_spike_rows(filters), rule=spikes)


@blueprint.get("/data/<figure>.<fmt>")
@login_required(page=False)
def data(figure: str, fmt: str):
    if figure not in FIGURES or fmt not in ("json", "csv"):
        raise NotFound(f"no figure {figure}.{fmt} (figures: {', '.join(FIGURES)}; formats: json, csv)")
    filters = _filters()
    table = FIGURES[figure](filters)
    if fmt == "json":
        return jsonify({"filters": filters.query(), **table.as_json()})
    name = f"churnsignal-{figure}-{filters.since}-{filters.until}.csv"
    return Response(table.csv(), mimetype="text/csv",
                    headers={"Content-Disposition": f'attachment; filename="{name}"'})


def _page(template: str, filters: Filters, **values: Any) -> str:
    """A page with the filter form's menus filled in."""
    with service().store.session() as session:
        menus = trends.choices(session)
    return render_template(template, filters=filters, menus=menus, topics=TOPIC_NAMES,
                           tiers=[t.name for t in service().settings.fusion.tiers], **values)


def _filters() -> Filters:
    return parse(request.args, service().settings)


def _figure(compute: Callable[..., Table], **options: Any) -> Callable[[Filters], Table]:
    def run(filters: Filters) -> Table:
        with service().store.session() as session:
            table = compute(session, filters, service().settings, **options)
        if "buckets" in table.chart:
            table.chart["drill"] = _bucket_links(filters, table)
        return table

    return run


def _bucket_links(filters: Filters, table: Table) -> dict[str, list[str]]:
    """Per series, per bucket: the drill-down page of the messages behind that bar or point.

    A topic's series narrows to that topic, a tier's to that tier; a single line keeps the filters.
    """
    buckets = [date.fromisoformat(b) for b in table.chart["buckets"]]
    if "series" in table.chart:
        narrowing = {s["name"]: {"topic": s["name"]} for s in table.chart["series"]}
    elif "tiers" in table.chart:
        narrowing = {tier: {"tier": tier} for tier in table.chart["tiers"]}
    else:
        narrowing = {"": {}}
    return {name: [_drill(filters.cell(b, **narrower)) for b in buckets] for name, narrower in narrowing.items()}


def _drill(filters: Filters) -> str:
    return url_for("qa.drill_down") + "?" + filters.query()


def _heatmap(across: trends.Across) -> Callable[[Filters], Table]:
    def run(filters: Filters) -> Table:
        table = _figure(trends.heatmap, across=across)(filters)
        table.chart["drill"] = [[_drill(replace(filters, topic=topic, **{across: column}))
                                 for column in table.chart["columns"]] for topic in table.chart["topics"]]
        return table

    return run


def _messages(filters: Filters) -> Table:
    with service().store.session() as session:
        found = trends.messages(session, filters, service().settings, limit=EXPORTED)
    columns = ["created_at", "source", "channel", "ticket_id", "ticket_url", "customer", "negative_prob", "topics",
               "text"]
    rows = [[m[c] if c != "topics" else " ".join(m[c]) for c in columns] for m in found]
    return Table(columns, rows, {})


def _spike_rows(filters: Filters) -> list[dict[str, Any]]:
    with service().store.session() as session:
        rows = trends.spike_rows(session, filters, service().settings)
    for row in rows:
        day = date.fromisoformat(row["day"])
        row["drill"] = _drill(replace(filters, since=day, until=day, topic=row["topic"]))
    return rows


def _alerts(filters: Filters) -> Table:
    with service().store.session() as session:
        found = trends.alerts(session, filters, service().settings, limit=EXPORTED)
    return Table(list(trends.ALERT_COLUMNS), [[row[c] for c in trends.ALERT_COLUMNS] for row in found], {})


def _spikes(filters: Filters) -> Table:
    return trends.spike_table(_spike_rows(filters))


FIGURES: dict[str, Callable[[Filters], Table]] = {
    "volume": _figure(trends.volume),
    "negative-share": _figure(trends.negative_share),
    "heatmap-source": _heatmap("source"),
    "heatmap-channel": _heatmap("channel"),
    "heatmap-category": _heatmap("category"),
    "tiers": _figure(trends.tiers),
    "outcomes": _figure(trends.outcomes),
    "alerts": _alerts,
    "spikes": _spikes,
    "messages": _messages,
}

