"""The badge in a real browser: headless Chromium (Debian's package) driven by Playwright.

A host page on another origin plays Chatwoot: it frames the dashboard app and answers its
``chatwoot-dashboard-app:fetch-info`` with the ``appContext`` JSON string, as Chatwoot's
DashboardApp/Frame.vue does. The service runs for real (werkzeug, a thread) on SQLite.
The browser and its pages are the shared ones (tests/conftest.py); ``make screenshots`` keeps
the screenshot for docs/agents.md in docs/images, as it does the QA workspace's.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from pydantic import SecretStr
from sqlalchemy import select
from werkzeug.serving import make_server

from churnsignal.config import Settings
from churnsignal.store import Alert, AlertHandling, Customer, Delivery, Event, RiskScore, Store, utcnow
from churnsignal.webhook.app import create_app
from churnsignal.webhook.badge_links import sign_app_key, sign_link

SECRET = SecretStr("browser-badge-secret-" + "z" * 32)
CONVERSATION = "77"
AGENT = "李雷"
# What Chatwoot's dashboard posts to its apps (DashboardApp/Frame.vue): a JSON *string*.
HOST_PAGE = """<!doctype html><meta charset="utf-8"><title>Chatwoot stand-in</title>
<style>body{margin:0;display:flex;font:13px sans-serif} main{flex:1;padding:16px}
iframe{width:340px;height:720px;border:0;border-left:1px solid #ddd}</style>
<main><h3>Conversation #77</h3><p>客户：耳机坏了，打电话也没人接</p></main>
<iframe id="dashboard-app--frame-0-0" src="%(app_url)s"></iframe>
<script>
var context = %(context)s;
var frame = document.getElementById("dashboard-app--frame-0-0");
function send() { frame.contentWindow.postMessage(JSON.stringify(context), "*"); }
frame.addEventListener("load", send);
window.onmessage = function (e) { if (e.data === "chatwoot-dashboard-app:fetch-info") { send(); } };
</script>"""


def _serve(app) -> Iterator[str]:
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join()


class _Host:
    """A helpdesk stand-in on its own origin (``localhost``, not ``127.0.0.1``) serving one page."""

    def __init__(self) -> None:
        self.page = ""
        host = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body = host.page.encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.origin = f"http://localhost:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def hosts() -> Iterator[tuple[_Host, _Host]]:
    """Two helpdesk stand-ins: the Chatwoot the badge trusts, and an origin it does not."""
    trusted, stranger = _Host(), _Host()
    yield trusted, stranger
    trusted.close()
    stranger.close()


@pytest.fixture
def badge_store(tmp_path) -> Iterator[Store]:
    store = Store(f"sqlite:///{tmp_path / 'badge.db'}")
    store.upgrade()
    yield store
    store.dispose()


@pytest.fixture
def service_url(tmp_path, redis_url, badge_store, hosts) -> Iterator[str]:
    trusted, stranger = hosts
    # The stranger may frame the app (frame_ancestors) but is not Chatwoot (chatwoot_origins).
    settings = Settings(service={"broker_url": redis_url, "data_dir": tmp_path},
                        identity={"pepper": "test-pepper"},
                        badge={"enabled": True, "secret": SECRET.get_secret_value(), "refresh_seconds": 5,
                               "frame_ancestors": [trusted.origin, stranger.origin], "chatwoot_origins": [trusted.origin]})
    yield from _serve(create_app(settings, store=badge_store))


def seed(store: Store) -> None:
    now = utcnow()
    with store.session() as session:
        delivery = Delivery(source="chatwoot", received_at=now, body="{}")
        session.add(delivery)
        session.flush()
        text = "耳机坏了，打[PHONE]也没人接，质量太差"
        event = Event(delivery_id=delivery.id, source="chatwoot", external_id="m1", ticket_id=CONVERSATION,
                      customer_id="c-42", author="customer", channel="chat",
                      text=text, created_at=now - timedelta(hours=1),
                      received_at=now, status="analysed", negative_prob=0.96, negative_word_share=0.3,
                      # No word names delivery: the turns before it did (nlp/dialogue_topics.py).
                      entities={"QUALITY": 1, "SERVICE": 1, "LOGISTICS": 1},
                      entity_spans=[{"start": text.index(word), "end": text.index(word) + len(word), "label": label}
                                    for word, label in (("没人接", "SERVICE"), ("质量", "QUALITY"))])
        session.add(event)
        session.flush()
        score = score_row(event.id, "red", 0.83)
        session.add(score)
        session.flush()
        session.add(Customer(customer_id="c-42", churn_prob=0.83, tier="red", scored_at=now))
        session.add(Alert(idempotency_key="k1", customer_id="c-42", score_id=score.id, source="chatwoot",
                          ticket_id=CONVERSATION, tier="red", churn_prob=0.83, reasons=score.reasons, driver="service",
                          action=score.action, created_at=now, due_at=now + timedelta(hours=4), status="delivered"))


def score_row(event_id: int | None, tier: str, churn_prob: float) -> RiskScore:
    now = utcnow()
    return RiskScore(customer_id="c-42", event_id=event_id, scored_at=now, as_of=now, churn_prob=churn_prob,
                     tier=tier, driver="service", service_signal=True,
                     reasons=[{"kind": "complaints_quality", "zh": "质量投诉1次：“耳机坏了，打[PHONE]也没人接…”",
                               "en": '1 complaint about product quality: "耳机坏了，打[PHONE]也没人接…"'},
                              {"kind": "awaiting_reply", "zh": "1条投诉尚未获得回复", "en": "1 complaint still awaiting a reply"}],
                     action={"zh": "安排专属客服回访", "en": "arrange a dedicated agent callback"})


def host_page(app_url: str) -> str:
    context = {"event": "appContext", "data": {
        "conversation": {"id": int(CONVERSATION), "inbox_id": 1, "status": "open",
                         "meta": {"sender": {"id": 5, "name": "客户"}}},
        "contact": {"id": 5, "name": "客户"},
        "currentAgent": {"id": 1, "name": AGENT, "email": "agent@example.com"}}}
    return HOST_PAGE % {"app_url": app_url, "context": json.dumps(context, ensure_ascii=False)}


def test_the_chatwoot_app_shows_the_badge_and_records_handled(page, hosts, service_url, badge_store, shots):
    from playwright.sync_api import expect

    trusted, _ = hosts
    seed(badge_store)
    trusted.page = host_page(f"{service_url}/badge/chatwoot?key={sign_app_key(SECRET, 'chatwoot', 600)}")
    page.set_viewport_size({"width": 900, "height": 740})
    page.goto(trusted.origin)
    badge = page.frame_locator("#dashboard-app--frame-0-0").frame_locator("#badge-frame")
    expect(badge.locator(".tier")).to_have_text("red", timeout=15_000)
    expect(badge.locator(".prob")).to_have_text("83%")
    expect(badge.locator(".reasons")).to_contain_text("1 complaint still awaiting a reply")
    expect(badge.locator("mark.pii").first).to_have_text("[PHONE]")
    expect(badge.locator("mark.entity-QUALITY")).to_have_text("质量")
    expect(badge.locator("mark.entity-SERVICE")).to_have_text("没人接")
    inferred = badge.locator(".complaint + .meta .topic-tag.from-dialogue")
    expect(inferred).to_have_text("物流 / delivery · 上文 turns before")
    assert inferred.evaluate("t => getComputedStyle(t).borderTopStyle") == "dashed"
    expect(badge.locator(".complaint + .meta .topic-tag:not(.from-dialogue)")).to_have_count(2)
    expect(badge.locator(".who")).to_contain_text(AGENT)
    page.screenshot(path=shots / "badge-chatwoot.png")

    badge.locator("#handled").click()
    expect(badge.locator(".handled")).to_contain_text(AGENT, timeout=10_000)
    with badge_store.session() as session:
        [row] = session.scalars(select(AlertHandling)).all()
        assert (row.handled_by, row.via) == (AGENT, "badge")

    # Live: a new score lands while the badge is open; it refreshes itself (refresh_seconds=5).
    with badge_store.session() as session:
        session.add(score_row(None, "yellow", 0.41))
        session.merge(Customer(customer_id="c-42", churn_prob=0.41, tier="yellow", scored_at=utcnow()))
    expect(badge.locator(".tier")).to_have_text("yellow", timeout=15_000)
    expect(badge.locator(".prob")).to_have_text("41%")


def test_a_context_from_another_origin_is_ignored(page, hosts, service_url, badge_store):
    from playwright.sync_api import expect

    _, stranger = hosts
    seed(badge_store)
    stranger.page = host_page(f"{service_url}/badge/chatwoot?key={sign_app_key(SECRET, 'chatwoot', 600)}")
    page.goto(stranger.origin)
    app = page.frame_locator("#dashboard-app--frame-0-0")
    expect(app.locator("#waiting")).to_be_visible(timeout=10_000)
    # The stranger has posted its appContext by now (on load, and on the app's fetch-info).
    page.wait_for_timeout(2_000)
    expect(app.locator("#waiting")).to_contain_text("Waiting for the conversation")
    expect(app.locator("#badge-frame")).to_be_hidden()


def test_an_expired_or_forged_link_is_refused_in_the_browser(page, service_url, badge_store):
    seed(badge_store)
    expired = sign_link(SECRET, "chatwoot", CONVERSATION, 60, by=AGENT, now=time.time() - 120)
    answer = page.goto(service_url + expired.path())
    assert answer.status == 403
    assert "expired" in page.locator(".reason").inner_text()
    assert page.locator(".tier").count() == 0
    forged = sign_link(SECRET, "chatwoot", "78", 600, by=AGENT).path().replace("ticket=78", f"ticket={CONVERSATION}")
    answer = page.goto(service_url + forged)
    assert answer.status == 403
    assert "forged" in page.locator(".reason").inner_text()
    valid = sign_link(SECRET, "chatwoot", CONVERSATION, 600, by=AGENT)
    assert page.goto(service_url + valid.path()).status == 200
    assert page.locator(".tier").inner_text() == "red"
