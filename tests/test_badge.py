"""The agent's risk badge: signed links, the page, the handled button, the helpdesk app keys.

Runs on SQLite and on the real PostgreSQL (the ``store`` fixture).
"""

from __future__ import annotations

import re
import time
from datetime import datetime, timedelta
from urllib.parse import parse_qs, urlsplit

import pytest
from click.testing import CliRunner
from pydantic import SecretStr, ValidationError
from sqlalchemy import select

from churnsignal.cli import main
from churnsignal.config import Settings, get_settings
from churnsignal.store import Alert, AlertHandling, Customer, Delivery, Event, RiskScore, utcnow
from churnsignal.webhook.app import create_app
from churnsignal.webhook.badge_links import (
    LinkRefused,
    csrf_token,
    sign_app_key,
    sign_link,
    verify_app_key,
    verify_link,
)

SECRET = SecretStr("badge-secret-" + "x" * 32)
API_TOKEN = "the-read-api-token-never-in-a-page"
HELPDESK = "https://support.example.com"
PHONE = "13812345678"


def badge_settings(tmp_path, redis_url, **badge) -> Settings:
    return Settings(service={"broker_url": redis_url, "data_dir": tmp_path, "api_token": API_TOKEN},
                    identity={"pepper": "test-pepper"},
                    badge={"enabled": True, "secret": SECRET.get_secret_value(), "frame_ancestors": [HELPDESK],
                           "chatwoot_origins": [HELPDESK]} | badge)


@pytest.fixture
def client(tmp_path, redis_url, store):
    return create_app(badge_settings(tmp_path, redis_url), store=store).test_client()


def seed(store, source="zendesk", ticket="T1", customer="c-42", text=f"耳机坏了，打{PHONE}也没人接", tier="red",
         churn_prob=0.83, alert=True, spans: list[dict] | None = None) -> None:
    """A customer's complaint on a ticket, analysed and scored, and the alert it raised."""
    now = utcnow()
    with store.session() as session:
        delivery = Delivery(source=source, received_at=now, body="{}")
        session.add(delivery)
        session.flush()
        event = Event(delivery_id=delivery.id, source=source, external_id=f"{ticket}-1", ticket_id=ticket,
                      customer_id=customer, author="customer", channel="chat", text=text,
                      created_at=now - timedelta(hours=1), received_at=now, status="analysed",
                      negative_prob=0.97, negative_word_share=0.3, entities={"QUALITY": 1, "SERVICE": 1},
                      entity_spans=spans)
        session.add(event)
        session.flush()
        add_score(session, customer, event.id, tier, churn_prob)
        if alert:
            score_id = session.scalar(select(RiskScore.id).order_by(RiskScore.id.desc()).limit(1))
            session.add(Alert(idempotency_key=f"k-{ticket}", customer_id=customer, score_id=score_id, source=source,
                              ticket_id=ticket, tier=tier, churn_prob=churn_prob, reasons=[], driver="service",
                              action={}, created_at=now, due_at=datetime(2030, 1, 2, 3, 4), status="delivered"))


def add_score(session, customer, event_id, tier, churn_prob) -> None:
    now = utcnow()
    session.add(RiskScore(customer_id=customer, event_id=event_id, scored_at=now, as_of=now, churn_prob=churn_prob,
                          tier=tier, driver="service", service_signal=True,
                          reasons=[{"kind": "complaints_quality", "zh": "质量投诉1次", "en": "1 complaint about product quality"}],
                          action={"zh": "安排专属客服回访", "en": "arrange a dedicated agent callback"}))
    session.merge(Customer(customer_id=customer, churn_prob=churn_prob, tier=tier, scored_at=now))


def flipped(signature: str) -> str:
    """``signature`` with its last hex digit changed."""
    return signature[:-1] + ("1" if signature[-1] == "0" else "0")


def form_of(link, **extra) -> dict[str, str]:
    return link.query() | extra


def handlings(store) -> list[AlertHandling]:
    with store.session() as session:
        return list(session.scalars(select(AlertHandling)))


# ---------------------------------------------------------------- links


def test_a_signed_link_verifies_and_any_change_is_forgery():
    link = sign_link(SECRET, "zendesk", "T1", 60, by="王芳")
    assert verify_link(SECRET, "zendesk", "T1", str(link.expires), link.signature, by="王芳") == link
    tampered = [("chatwoot", "T1", str(link.expires), link.signature, "王芳"),
                ("zendesk", "T2", str(link.expires), link.signature, "王芳"),
                ("zendesk", "T1", str(link.expires + 3600), link.signature, "王芳"),
                ("zendesk", "T1", str(link.expires), link.signature, "李雷"),
                ("zendesk", "T1", str(link.expires), link.signature, None),
                ("zendesk", "T1", str(link.expires), flipped(link.signature), "王芳")]
    for source, ticket, exp, sig, by in tampered:
        with pytest.raises(LinkRefused, match="forged"):
            verify_link(SECRET, source, ticket, exp, sig, by=by)
    with pytest.raises(LinkRefused, match="forged"):
        verify_link(SecretStr("another-secret-" + "y" * 32), "zendesk", "T1", str(link.expires), link.signature,
                    by="王芳")


def test_a_link_expires():
    link = sign_link(SECRET, "zendesk", "T1", 60, now=1_000_000)
    assert verify_link(SECRET, "zendesk", "T1", str(link.expires), link.signature, now=1_000_059)
    with pytest.raises(LinkRefused, match="expired"):
        verify_link(SECRET, "zendesk", "T1", str(link.expires), link.signature, now=1_000_060)


@pytest.mark.parametrize("values", [(None, "T1", "1", "ab"), ("zendesk", "", "1", "ab"), ("zendesk", "T1", "soon", "ab"),
                                    ("zendesk", "T1", "1", None), ("zendesk", "T\n1", "1", "ab")])
def test_a_malformed_link_says_what_is_wrong(values):
    with pytest.raises(LinkRefused, match="missing|must"):
        verify_link(SECRET, *values)


def test_an_app_key_is_for_its_source_only_and_never_a_link():
    key = sign_app_key(SECRET, "chatwoot", 60)
    verify_app_key(SECRET, "chatwoot", key)
    with pytest.raises(LinkRefused, match="another source"):
        verify_app_key(SECRET, "zendesk", key)
    exp, sig = key.split(".")
    # The same secret signs both; the purpose line keeps one from passing for the other.
    with pytest.raises(LinkRefused, match="forged"):
        verify_link(SECRET, "chatwoot", "-", exp, sig)
    with pytest.raises(LinkRefused, match="expired"):
        verify_app_key(SECRET, "chatwoot", sign_app_key(SECRET, "chatwoot", 60, now=time.time() - 61))
    for bad in (None, "", "nodot", "12.", f"{exp}.{flipped(sig)}"):
        with pytest.raises(LinkRefused):
            verify_app_key(SECRET, "chatwoot", bad)


def test_the_badge_cannot_be_enabled_without_its_secret():
    with pytest.raises(ValidationError, match="badge.secret"):
        Settings(badge={"enabled": True})
    with pytest.raises(ValidationError, match="badge.secret"):
        Settings(badge={"enabled": True, "secret": "short"})
    with pytest.raises(ValidationError, match="frame_ancestors"):
        Settings(badge={"frame_ancestors": ["https://helpdesk.example.com/app"]})
    with pytest.raises(ValidationError, match="chatwoot_origins"):
        Settings(badge={"chatwoot_origins": ["https://*.example.com"]})


# ---------------------------------------------------------------- the page


def test_the_page_shows_the_risk_masked_and_framed_only_by_the_helpdesk(client, store):
    seed(store)
    response = client.get(sign_link(SECRET, "zendesk", "T1", 60, by="王芳").path())
    assert response.status_code == 200
    page = response.get_data(as_text=True)
    assert 'data-tier="red"' in page and "83%" in page
    assert "质量投诉1次" in page and "1 complaint about product quality" in page
    assert "安排专属客服回访" in page and "arrange a dedicated agent callback" in page
    assert "2030-01-02 03:04 UTC" in page  # the alert's due time
    assert 'data-topic="QUALITY"' in page and 'data-topic="SERVICE"' in page
    assert '<mark class="pii">[PHONE]</mark>' in page and PHONE not in page
    assert "王芳" in page and 'id="handled"' in page
    assert API_TOKEN not in page
    policy = response.headers["Content-Security-Policy"]
    assert f"frame-ancestors 'self' {HELPDESK}" in policy and "script-src 'self'" in policy
    assert response.headers["Referrer-Policy"] == "no-referrer"


def test_a_topic_the_latest_complaint_does_not_name_is_marked_as_read_from_its_dialogue(client, store):
    # 坏了 names the quality complaint; nothing in the words names the service one.
    seed(store, spans=[{"start": 2, "end": 4, "label": "QUALITY"}])
    page = client.get(sign_link(SECRET, "zendesk", "T1", 60).path()).get_data(as_text=True)
    assert '<mark class="entity entity-QUALITY"' in page
    tags = re.findall(r'<span class="topic topic-tag( from-dialogue)?"[^>]*>([^<]*)</span>', page)
    assert tags == [("", "质量 / quality"), (" from-dialogue", "服务 / service · 上文 turns before")]


def test_the_badge_pages_use_the_shared_layout_compact_and_both_stylesheets(client, store):
    seed(store)
    refused = client.get(sign_link(SECRET, "zendesk", "T1", 60, now=time.time() - 120).path())
    for answer in (client.get(sign_link(SECRET, "zendesk", "T1", 60).path()), refused,
                   client.get(f"/badge/chatwoot?key={sign_app_key(SECRET, 'chatwoot', 60)}")):
        page = answer.get_data(as_text=True)
        assert '<body class="compact">' in page
        assert page.index("/static/css/pages.css") < page.index("/static/badge/badge.css")
        # No QA menu, login or footer inside a helpdesk's sidebar.
        assert "site-header" not in page and "/qa/" not in page and "site-footer" not in page
        assert f"frame-ancestors 'self' {HELPDESK}" in answer.headers["Content-Security-Policy"]


def test_text_stored_unmasked_is_still_shown_masked(client, store):
    seed(store, text="我的邮箱 someone@example.com，手机 13912345678，退款呢？")
    page = client.get(sign_link(SECRET, "zendesk", "T1", 60).path()).get_data(as_text=True)
    assert "someone@example.com" not in page and "13912345678" not in page
    assert '<mark class="pii">[EMAIL]</mark>' in page


def test_markup_in_a_message_is_text(client, store):
    seed(store, text="<script>alert(1)</script>质量太差")
    page = client.get(sign_link(SECRET, "zendesk", "T1", 60).path()).get_data(as_text=True)
    assert "<script>alert(1)" not in page and "&lt;script&gt;alert(1)" in page


def test_a_forged_or_expired_link_is_refused_with_its_reason(client, store):
    seed(store)
    link = sign_link(SECRET, "zendesk", "T1", 60)
    forged = client.get(link.path().replace("ticket=T1", "ticket=T2"))
    assert forged.status_code == 403 and "forged" in forged.get_data(as_text=True)
    assert "质量投诉" not in forged.get_data(as_text=True)
    expired = sign_link(SECRET, "zendesk", "T1", 60, now=time.time() - 120)
    answer = client.get(expired.path())
    assert answer.status_code == 403 and "expired" in answer.get_data(as_text=True)
    state = client.get(expired.path().replace("/badge?", "/badge/state?"))
    assert state.status_code == 403 and "expired" in state.json["error"]


def test_an_unknown_ticket_shows_no_risk(client, store):
    page = client.get(sign_link(SECRET, "zendesk", "nothing-yet", 60).path()).get_data(as_text=True)
    assert "No messages stored for this ticket yet" in page and "data-tier" not in page


def test_the_state_changes_when_a_new_score_lands(client, store):
    seed(store)
    url = sign_link(SECRET, "zendesk", "T1", 60).path().replace("/badge?", "/badge/state?")
    before = client.get(url).json
    assert before["tier"] == "red" and before["churn_prob"] == pytest.approx(0.83)
    assert client.get(url).json == before
    with store.session() as session:
        add_score(session, "c-42", None, "yellow", 0.41)
    after = client.get(url).json
    assert after["tier"] == "yellow" and after["version"] != before["version"]


def test_the_badge_is_off_unless_enabled(tmp_path, redis_url, store):
    app = create_app(badge_settings(tmp_path, redis_url, enabled=False, secret=None), store=store)
    answer = app.test_client().get("/badge?source=zendesk&ticket=T1&exp=1&sig=ab")
    assert answer.status_code == 404 and "CHURNSIGNAL_BADGE__ENABLED" in answer.json["error"]


# ---------------------------------------------------------------- handled


def test_handled_records_the_agent_named_in_the_link(client, store):
    seed(store)
    link = sign_link(SECRET, "zendesk", "T1", 60, by="王芳")
    answer = client.post("/badge/handled", data=form_of(link, csrf=csrf_token(SECRET, link), handled_by="冒名"))
    assert answer.status_code == 303 and answer.headers["Location"].endswith(link.path())
    [row] = handlings(store)
    assert (row.handled_by, row.via) == ("王芳", "badge")
    assert abs((utcnow() - row.handled_at).total_seconds()) < 60
    page = client.get(link.path()).get_data(as_text=True)
    assert "handled by <b>王芳</b>" in page and 'id="handled"' not in page
    # A second press does not make the first agent's record someone else's.
    client.post("/badge/handled", data=form_of(link, csrf=csrf_token(SECRET, link)))
    assert len(handlings(store)) == 1


def test_handled_takes_a_typed_name_when_the_link_names_no_one(client, store):
    seed(store)
    link = sign_link(SECRET, "zendesk", "T1", 60)
    token = csrf_token(SECRET, link)
    refused = client.post("/badge/handled", data=form_of(link, csrf=token, handled_by="  "))
    assert refused.status_code == 403 and "who handled it" in refused.get_data(as_text=True)
    assert client.post("/badge/handled", data=form_of(link, csrf=token, handled_by=" 李 雷 ")).status_code == 303
    assert [h.handled_by for h in handlings(store)] == ["李 雷"]


def test_handled_needs_the_form_token_of_its_own_link(client, store):
    seed(store)
    seed(store, ticket="T2", customer="c-43")
    link = sign_link(SECRET, "zendesk", "T1", 60, by="王芳")
    other = sign_link(SECRET, "zendesk", "T2", 60, by="王芳")
    for data in (form_of(link), form_of(link, csrf="0" * 64), form_of(link, csrf=csrf_token(SECRET, other))):
        answer = client.post("/badge/handled", data=data)
        assert answer.status_code == 403 and "form token" in answer.get_data(as_text=True)
    forged = form_of(link, csrf=csrf_token(SECRET, link)) | {"ticket": "T2"}
    answer = client.post("/badge/handled", data=forged)
    assert answer.status_code == 403 and "forged" in answer.get_data(as_text=True)
    assert handlings(store) == []


def test_handled_without_an_alert_is_a_conflict(client, store):
    seed(store, alert=False)
    link = sign_link(SECRET, "zendesk", "T1", 60, by="王芳")
    answer = client.post("/badge/handled", data=form_of(link, csrf=csrf_token(SECRET, link)))
    assert answer.status_code == 409 and "no alert" in answer.get_data(as_text=True)


# ---------------------------------------------------------------- helpdesk apps


def test_an_app_key_mints_links_for_its_own_source(client, store):
    seed(store, source="chatwoot", ticket="77")
    key = sign_app_key(SECRET, "chatwoot", 60)
    answer = client.post("/badge/link", json={"source": "chatwoot", "ticket": 77, "by": "李雷"},
                         headers={"X-Churnsignal-Badge-Key": key})
    assert answer.status_code == 200, answer.json
    query = parse_qs(urlsplit(answer.json["url"]).query)
    assert query["by"] == ["李雷"] and query["ticket"] == ["77"]
    assert 'data-tier="red"' in client.get(answer.json["url"]).get_data(as_text=True)
    for headers in ({}, {"X-Churnsignal-Badge-Key": sign_app_key(SECRET, "zendesk", 60)}):
        refused = client.post("/badge/link", json={"source": "chatwoot", "ticket": "77"}, headers=headers)
        assert refused.status_code == 403 and refused.is_json
    assert client.post("/badge/link", json={"ticket": "77"}, headers={"X-Churnsignal-Badge-Key": key}).status_code == 422


def test_the_chatwoot_app_page_needs_its_key_and_names_the_origins_it_believes(client):
    key = sign_app_key(SECRET, "chatwoot", 60)
    page = client.get(f"/badge/chatwoot?key={key}")
    assert page.status_code == 200
    assert f'data-origins="{HELPDESK}"' in page.get_data(as_text=True)
    assert f"frame-ancestors 'self' {HELPDESK}" in page.headers["Content-Security-Policy"]
    assert client.get("/badge/chatwoot?key=1.ab").status_code == 403
    assert client.get(f"/badge/chatwoot?key={sign_app_key(SECRET, 'zendesk', 60)}").status_code == 403


# ---------------------------------------------------------------- CLI


def test_the_cli_prints_a_link_the_service_accepts(monkeypatch):
    monkeypatch.setenv("CHURNSIGNAL_BADGE__SECRET", SECRET.get_secret_value())
    get_settings.cache_clear()
    try:
        result = CliRunner().invoke(main, ["badge", "link", "--source", "zendesk", "--ticket", "T1", "--by", "王芳",
                                           "--ttl", "120", "--base-url", "https://risk.example.com/"])
        assert result.exit_code == 0, result.output
        url = urlsplit(result.output.strip())
        assert url.netloc == "risk.example.com" and url.path == "/badge"
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        link = verify_link(SECRET, query["source"], query["ticket"], query["exp"], query["sig"], by=query["by"])
        assert link.by == "王芳" and 100 < link.expires - time.time() <= 120
        key = CliRunner().invoke(main, ["badge", "app-key", "--source", "chatwoot"]).output.strip()
        assert re.fullmatch(r"/badge/chatwoot\?key=\d+\.[0-9a-f]{64}", key)
    finally:
        get_settings.cache_clear()
    monkeypatch.delenv("CHURNSIGNAL_BADGE__SECRET")
    result = CliRunner().invoke(main, ["badge", "link", "--source", "zendesk", "--ticket", "T1"])
    get_settings.cache_clear()
    assert result.exit_code == 1 and "CHURNSIGNAL_BADGE__SECRET" in result.output
