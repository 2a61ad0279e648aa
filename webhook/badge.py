"""The agent's risk badge: one ticket's churn risk in a helpdesk sidebar, and a "handled" button.

Three ways in, one page (``/badge``, opened with a signed link, see ``badge_links``):

- any helpdesk puts a signed link (``churnsignal badge link``) in an iframe or a ticket field;
- the Chatwoot dashboard app (``/badge/chatwoot?key=<app key>``) learns the conversation from
  Chatwoot's ``postMessage`` and asks ``POST /badge/link`` for the link;
- the Zendesk sidebar app (``apps/zendesk/``) asks the same through Zendesk's proxy.

The page carries no API token and no session: the link is the credential, and what it shows
is masked again before it is rendered. Pages answer with ``Content-Security-Policy:
frame-ancestors`` naming only the configured helpdesk origins.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from datetime import datetime
from typing import Any

from flask import Blueprint, Response, jsonify, redirect, render_template, request
from sqlalchemy import select
from sqlalchemy.orm import Session
from werkzeug.exceptions import NotFound

from churnsignal.config import Settings
from churnsignal.nlp.complaints import is_complaint, read_from_dialogue, topics
from churnsignal.nlp.masking import mask_pii
from churnsignal.store import Alert, AlertHandling, Customer, Event, RiskScore, utcnow
from churnsignal.webhook.api import ticket_customer
from churnsignal.webhook.app import error, service
from churnsignal.webhook.badge_links import (
    BadgeLink,
    LinkRefused,
    csrf_token,
    sign_link,
    valid_csrf,
    verify_app_key,
    verify_link,
)
from churnsignal.webhook.highlight import highlighted

blueprint = Blueprint("badge", __name__, url_prefix="/badge")

APP_KEY_HEADER = "X-Churnsignal-Badge-Key"
ALERT_HISTORY = 20
# Complaints read for the topic counts: the customer's latest ones.
COMPLAINTS_READ = 200
# Chinese and English names of the complaint topics (nlp.complaints.TOPICS).
TOPIC_NAMES = {"QUALITY": ("质量", "quality"), "LOGISTICS": ("物流", "delivery"), "REFUND": ("退换货", "refunds"),
               "SERVICE": ("服务", "service"), "PRICE": ("价格", "price"), "COMPETITOR": ("竞品", "competitor")}


class _Refused(Exception):
    """A link, key or form the badge refuses: the reason, as a page or as JSON (403 unless said)."""

    def __init__(self, reason: str, status: int = 403):
        super().__init__(reason)
        self.status = status


@blueprint.before_request
def _enabled() -> None:
    if not service().settings.badge.enabled:
        raise NotFound("the badge is off: set CHURNSIGNAL_BADGE__ENABLED=true and CHURNSIGNAL_BADGE__SECRET")


@blueprint.after_request
def _headers(response: Response) -> Response:
    """Framed only by the configured helpdesks; nothing inline, nothing cached, no Referer (it holds the link)."""
    ancestors = " ".join(["'self'", *service().settings.badge.frame_ancestors])
    response.headers["Content-Security-Policy"] = (
        f"default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
        f"frame-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors {ancestors}")
    response.headers["Referrer-Policy"] = "no-referrer"
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Cache-Control"] = "no-store"
    return response


@blueprint.errorhandler(_Refused)
@blueprint.errorhandler(LinkRefused)
def _refused(exc: Exception):
    status = getattr(exc, "status", 403)
    if request.endpoint in ("badge.page", "badge.handled", "badge.chatwoot"):
        return render_template("badge/refused.html", reason=str(exc)), status
    return error(status, str(exc))


@blueprint.get("")
def page():
    link = _link(request.args)
    settings = service().settings
    with service().store.session() as session:
        document = badge_document(session, settings, link.source, link.ticket)
    return render_template("badge/page.html", link=link, badge=document, csrf=csrf_token(settings.badge.secret, link),
                           refresh_seconds=settings.badge.refresh_seconds)


@blueprint.get("/state")
def state():
    """What the open page polls: a version that changes when a score, an alert or a handling lands."""
    link = _link(request.args)
    with service().store.session() as session:
        document = badge_document(session, service().settings, link.source, link.ticket)
    return jsonify({"version": document["version"], "tier": document["tier"], "churn_prob": document["churn_prob"]})


@blueprint.post("/handled")
def handled():
    """Record who handled the ticket's latest alert and when (via ``badge``), then show the badge again."""
    link = _link(request.form)
    secret = service().settings.badge.secret
    if not valid_csrf(secret, link, request.form.get("csrf")):
        raise _Refused("missing or wrong form token: reload the badge and press the button again")
    who = link.by or " ".join(request.form.get("handled_by", "").split())
    if not who or len(who) > 200:
        raise _Refused("say who handled it: a name of 1 to 200 characters")
    with service().store.session() as session:
        alert = session.scalar(select(Alert).where(Alert.source == link.source, Alert.ticket_id == link.ticket)
                               .order_by(Alert.created_at.desc(), Alert.id.desc()).limit(1))
        if alert is None:
            raise _Refused(f"no alert on ticket {link.ticket!r} to mark handled", status=409)
        already = session.scalar(select(AlertHandling.id).where(AlertHandling.alert_id == alert.id).limit(1))
        # The first agent to handle an alert is the one QA sees; a second press records nothing.
        if already is None:
            session.add(AlertHandling(alert_id=alert.id, handled_by=who, handled_at=utcnow(), via="badge"))
    return redirect(link.path(), code=303)


@blueprint.post("/link")
def mint_link():
    """A badge link for a helpdesk app that knows the ticket only in the browser.

    ``{"source", "ticket", "by"?}`` with the source's app key in ``X-Churnsignal-Badge-Key``
    (a custom header: a cross-site form cannot send one, and no CORS is offered).
    """
    body = request.get_json(silent=True)
    if not isinstance(body, dict) or not all(isinstance(body.get(k), (str, int)) for k in ("source", "ticket")):
        return error(422, 'expected {"source": "...", "ticket": "...", "by": "..."}')
    source, ticket = str(body["source"]), str(body["ticket"])
    by = body.get("by") if isinstance(body.get("by"), str) else None
    settings = service().settings.badge
    verify_app_key(settings.secret, source, request.headers.get(APP_KEY_HEADER))
    link = sign_link(settings.secret, source, ticket, settings.link_ttl_seconds, by=by)
    return jsonify({"url": link.path(), "expires": link.expires})


@blueprint.get("/chatwoot")
def chatwoot():
    """The Chatwoot dashboard app: waits for Chatwoot's ``appContext`` message, then shows that conversation's badge."""
    key = request.args.get("key")
    settings = service().settings.badge
    verify_app_key(settings.secret, "chatwoot", key)
    if not settings.chatwoot_origins:
        raise _Refused("no Chatwoot origin configured: set badge.chatwoot_origins")
    return render_template("badge/chatwoot.html", key=key, origins=settings.chatwoot_origins)


def _link(values) -> BadgeLink:
    return verify_link(service().settings.badge.secret, values.get("source"), values.get("ticket"),
                       values.get("exp"), values.get("sig"), by=values.get("by") or None)


def badge_document(session: Session, settings: Settings, source: str, ticket: str) -> dict[str, Any]:
    """Everything the badge shows for one ticket, every text masked; ``found`` is False for an unknown ticket."""
    customer_id = ticket_customer(session, source, ticket)
    if customer_id is None:
        return {"found": False, "tier": None, "churn_prob": None, "version": "unknown"}
    customer = session.get(Customer, customer_id)
    score = session.scalar(select(RiskScore).where(RiskScore.customer_id == customer_id)
                           .order_by(RiskScore.scored_at.desc(), RiskScore.id.desc()).limit(1))
    alerts = session.scalars(select(Alert).where(Alert.customer_id == customer_id)
                             .order_by(Alert.created_at.desc(), Alert.id.desc()).limit(ALERT_HISTORY)).all()
    handlings = {h.alert_id: h for h in session.scalars(
        select(AlertHandling).where(AlertHandling.alert_id.in_([a.id for a in alerts]))
        .order_by(AlertHandling.handled_at.desc()))}
    current = next((a for a in alerts if a.source == source and a.ticket_id == ticket), None)
    tier, churn_prob = (customer.tier, customer.churn_prob) if customer and customer.scored_at else (
        (score.tier, score.churn_prob) if score else (None, None))
    complaint_counts, latest_complaint = _complaints(session, settings, customer_id)
    handling = handlings.get(current.id) if current else None
    return {
        "found": True,
        "customer": mask_pii(customer_id).text,
        "tier": tier,
        "tier_rank": _tier_rank(settings, tier),
        "churn_prob": churn_prob,
        "scored_at": customer.scored_at if customer and customer.scored_at else (score.scored_at if score else None),
        "due_at": current.due_at if current else None,
        "overdue": bool(current and handling is None and current.due_at < utcnow()),
        "reasons": [{"zh": mask_pii(r.get("zh", "")).text, "en": mask_pii(r.get("en", "")).text}
                    for r in (score.reasons if score else []) if isinstance(r, dict)],
        "action": score.action if score else None,
        "topics": [{"topic": t, "zh": TOPIC_NAMES[t][0], "en": TOPIC_NAMES[t][1], "count": n}
                   for t, n in complaint_counts.most_common()],
        "latest_complaint": latest_complaint,
        "alert": current,
        "handling": handling,
        "history": [{"alert": a, "handling": handlings.get(a.id)} for a in alerts],
        "version": _version(score, alerts, handlings),
    }


def _complaints(session: Session, settings: Settings, customer_id: str) -> tuple[Counter, dict[str, Any] | None]:
    """Topic counts over the customer's recent complaints, and the latest complaint (masked, marked up)."""
    events = session.scalars(select(Event).where(Event.customer_id == customer_id, Event.author == "customer",
                                                 Event.status == "analysed")
                             .order_by(Event.created_at.desc(), Event.id.desc()).limit(COMPLAINTS_READ)).all()
    complaints = [e for e in events if is_complaint(e.author, e.negative_prob, settings)]
    counts: Counter = Counter()
    for complaint in complaints:
        counts.update(topics((complaint.entities or {}).keys()))
    if not complaints:
        return counts, None
    latest = complaints[0]
    named = topics((latest.entities or {}).keys())
    unnamed = read_from_dialogue(named, latest.entity_spans)
    return counts, {"html": highlighted(latest.text, latest.entity_spans), "created_at": latest.created_at,
                    "topics": [(*TOPIC_NAMES[t], t in unnamed) for t in named],
                    "negative_prob": latest.negative_prob}


def _tier_rank(settings: Settings, tier: str | None) -> int | None:
    """0 for the highest tier, 1 for the next...: the badge's colour follows the rank, whatever the names."""
    names = [t.name for t in settings.fusion.tiers]
    return names.index(tier) if tier in names else None


def _version(score: RiskScore | None, alerts: list[Alert], handlings: dict[int, AlertHandling]) -> str:
    seen = [score.id if score else None, [(a.id, a.status) for a in alerts], sorted(handlings)]
    return hashlib.sha256(repr(seen).encode()).hexdigest()[:16]


def iso(moment: datetime | None) -> str:
    """Stored naive UTC as shown on the page."""
    return "" if moment is None else moment.strftime("%Y-%m-%d %H:%M UTC")


blueprint.add_app_template_filter(iso, "badge_time")
