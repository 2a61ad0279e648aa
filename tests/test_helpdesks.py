"""The helpdesk adapters: signatures, payload shapes, the signed round trip, and alerts posted
to the local stand-in, including its bad days (429, 5xx, 404, timeouts, a retry after a
timeout whose first request landed).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest
import requests
from churnsignal.webhook import helpdesks
from churnsignal.webhook.helpdesks import (
    AlertMessage,
    DeliveryError,
    InvalidPayload,
    NotConfigured,
    Requester,
    SignatureError,
    SupportEvent,
)
from churnsignal.webhook.helpdesks.http import retry_after, without_credentials
from churnsignal.webhook.standin import StandIn
from pydantic import SecretStr, ValidationError

from churnsignal.config import (
    ChatwootSettings,
    FreshdeskSettings,
    GenericHelpdeskSettings,
    GenericMapping,
    HelpdeskSettings,
    Settings,
    ZammadSettings,
    ZendeskSettings,
)

NOW = datetime(2026, 5, 1, 12, 0, 0)
SOURCES = ["zendesk", "chatwoot", "freshdesk", "zammad", "generic:shop"]
SHOP_MAPPING = GenericMapping(
    event_id="message.id", ticket_id="message.thread", text="message.body", created_at="message.sent_at",
    author_role="message.sender.role", requester_id="message.sender.id",
    requester_email="message.sender.email", requester_phone="message.sender.phone",
    requester_external_id="message.sender.ref", channel="message.channel",
)


def make_settings(standin: StandIn | None = None, **overrides: object) -> HelpdeskSettings:
    def url(name: str) -> str | None:
        return standin.url(name) if standin else None

    settings = HelpdeskSettings(
        zendesk=ZendeskSettings(signing_secret=SecretStr("z-secret"), base_url=url("zendesk"),
                                email="bot@example.com", api_token=SecretStr("z-token"), risk_field_id=360001),
        chatwoot=ChatwootSettings(webhook_secret=SecretStr("c-secret"), base_url=url("chatwoot"), account_id=3,
                                  api_token=SecretStr("c-token"), risk_attribute="churn_risk"),
        freshdesk=FreshdeskSettings(webhook_secret=SecretStr("f-secret"), base_url=url("freshdesk"),
                                    api_key=SecretStr("f-key"), risk_field="cf_churn_risk"),
        zammad=ZammadSettings(webhook_secret=SecretStr("m-secret"), base_url=url("zammad"),
                              api_token=SecretStr("m-token")),
        generic={"shop": GenericHelpdeskSettings(mapping=SHOP_MAPPING, secret=SecretStr("g-secret"),
                                                 signature_header="X-Shop-Signature",
                                                 alert_url=url("generic:shop"))},
        timeout_seconds=0.3,
    )
    return settings.model_copy(update=overrides)


def adapter(source: str, standin: StandIn | None = None, **overrides: object) -> helpdesks.Helpdesk:
    return helpdesks.get(source, make_settings(standin, **overrides))


def customer_event(source: str, **changes: object) -> SupportEvent:
    event = SupportEvent(
        source=source, event_id="501", ticket_id="1001", author="customer",
        text="快递三天都没到，客服也不回消息，我要退款", created_at=NOW - timedelta(minutes=2),
        requester=Requester(id="77", email="li.lei@example.com", phone="+8613800138000", external_id="C-9"),
        channel={"chatwoot": "chat"}.get(source, "ticket"),
    )
    return replace(event, **changes)


ALERT = AlertMessage(
    alert_id=42, idempotency_key="alert-42-v1", ticket_id="1001", tier="red", churn_prob=0.85,
    reasons=[{"zh": "近期多次投诉物流", "en": "repeated delivery complaints"},
             {"zh": "下单频率下降", "en": "ordering less often"}],
    driver="service", action={"zh": "安排专属客服回访", "en": "arrange a dedicated agent callback"},
    due_at=datetime(2026, 5, 1, 16, 0),
)


@pytest.fixture
def standin():
    with StandIn() as server:
        yield server


# ====================================================================== registry

def test_registry_gives_each_adapter_its_source_name():
    for source in SOURCES:
        assert adapter(source).name == source


def test_registry_names_the_known_sources_for_an_unknown_one():
    with pytest.raises(KeyError, match="generic:shop"):
        helpdesks.get("generic:nope", make_settings())
    with pytest.raises(KeyError, match="unknown helpdesk source 'intercom'"):
        helpdesks.get("intercom", make_settings())


def test_configured_sources_are_those_with_an_inbound_secret():
    settings = make_settings(chatwoot=ChatwootSettings())
    assert helpdesks.configured_sources(settings) == ["zendesk", "freshdesk", "zammad", "generic:shop"]


# ====================================================================== signatures

def test_zendesk_signature_is_the_documented_formula():
    body = b'{"type": "zen:event-type:ticket.comment_added"}'
    timestamp = "2026-05-01T11:59:30Z"
    signature = base64.b64encode(hmac.new(b"z-secret", timestamp.encode() + body, hashlib.sha256).digest())
    adapter("zendesk").verify({"X-Zendesk-Webhook-Signature": signature.decode(),
                               "X-Zendesk-Webhook-Signature-Timestamp": timestamp}, body, NOW)


def test_chatwoot_signature_is_the_documented_formula():
    body = b'{"event": "message_created"}'
    timestamp = str(int((NOW - timedelta(seconds=30)).timestamp() - datetime(1970, 1, 1).timestamp()))
    digest = hmac.new(b"c-secret", f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    adapter("chatwoot").verify({"x-chatwoot-signature": f"sha256={digest}", "x-chatwoot-timestamp": timestamp},
                               body, NOW)


@pytest.mark.parametrize("prefix", ["", "sha256=", "SHA256="])
def test_generic_signature_is_hex_hmac_of_the_body_with_or_without_prefix(prefix):
    body = b'{"message": {}}'
    digest = hmac.new(b"g-secret", body, hashlib.sha256).hexdigest()
    adapter("generic:shop").verify({"X-Shop-Signature": prefix + digest}, body, NOW)


def test_freshdesk_checks_the_shared_secret_header():
    adapter("freshdesk").verify({"X-Churnsignal-Secret": "f-secret"}, b"{}", NOW)
    with pytest.raises(SignatureError):
        adapter("freshdesk").verify({"X-Churnsignal-Secret": "f-secret-not"}, b"{}", NOW)


@pytest.mark.parametrize("source", ["zendesk", "chatwoot", "zammad", "generic:shop"])  # Freshdesk cannot sign a body
def test_a_changed_body_is_refused(source):
    headers, body = adapter(source).signed_request(customer_event(source), NOW)
    with pytest.raises(SignatureError):
        adapter(source).verify(headers, body.replace("退款".encode(), "好评".encode()), NOW)


@pytest.mark.parametrize("source", SOURCES)
def test_a_wrong_secret_is_refused(source):
    headers, body = adapter(source).signed_request(customer_event(source), NOW)
    other = {"zendesk": {"zendesk": ZendeskSettings(signing_secret=SecretStr("other"))},
             "chatwoot": {"chatwoot": ChatwootSettings(webhook_secret=SecretStr("other"))},
             "freshdesk": {"freshdesk": FreshdeskSettings(webhook_secret=SecretStr("other"))},
             "zammad": {"zammad": ZammadSettings(webhook_secret=SecretStr("other"))},
             "generic:shop": {"generic": {"shop": GenericHelpdeskSettings(mapping=SHOP_MAPPING,
                                                                         secret=SecretStr("other"),
                                                                         signature_header="X-Shop-Signature")}}}
    with pytest.raises(SignatureError):
        adapter(source, **other[source]).verify(headers, body, NOW)


@pytest.mark.parametrize("source", SOURCES)
def test_missing_signature_headers_are_refused(source):
    headers, body = adapter(source).signed_request(customer_event(source), NOW)
    with pytest.raises(SignatureError):
        adapter(source).verify({"Content-Type": headers["Content-Type"]}, body, NOW)


@pytest.mark.parametrize("source", ["zendesk", "chatwoot"])
def test_a_signature_outside_the_replay_window_is_refused(source):
    helpdesk = adapter(source)
    headers, body = helpdesk.signed_request(customer_event(source), NOW - timedelta(seconds=301))
    with pytest.raises(SignatureError, match="replay window"):
        helpdesk.verify(headers, body, NOW)
    headers, body = helpdesk.signed_request(customer_event(source), NOW + timedelta(seconds=301))
    with pytest.raises(SignatureError, match="replay window"):
        helpdesk.verify(headers, body, NOW)
    headers, body = helpdesk.signed_request(customer_event(source), NOW - timedelta(seconds=299))
    helpdesk.verify(headers, body, NOW)


@pytest.mark.parametrize("source", ["zendesk", "chatwoot", "freshdesk", "zammad"])
def test_without_a_secret_unsigned_traffic_is_refused(source):
    unconfigured = {"zendesk": ZendeskSettings(), "chatwoot": ChatwootSettings(), "freshdesk": FreshdeskSettings(),
                    "zammad": ZammadSettings()}
    with pytest.raises(NotConfigured):
        adapter(source, **{source: unconfigured[source]}).verify({}, b"{}", NOW)


def test_generic_with_an_empty_secret_is_refused_at_load():
    with pytest.raises(ValidationError, match="secret: empty"):
        GenericHelpdeskSettings(mapping=SHOP_MAPPING, secret=SecretStr(""))


# ====================================================================== the signed round trip

@pytest.mark.parametrize("source", SOURCES)
@pytest.mark.parametrize("author", ["customer", "agent"])
def test_signed_request_verifies_and_parses_back_to_the_event(source, author):
    helpdesk = adapter(source)
    event = customer_event(source, author=author)
    headers, body = helpdesk.signed_request(event, NOW)
    helpdesk.verify(headers, body, NOW)
    if source == "freshdesk":  # no id or time in Freshdesk's payload: derived and clocked here
        helpdesk.clock = lambda: event.created_at
        [parsed] = helpdesk.parse(json.loads(body))
        assert replace(parsed, event_id=event.event_id) == replace(event, requester=replace(event.requester, id=None))
    elif source == "zammad":  # a Zammad user has no external id
        assert helpdesk.parse(json.loads(body)) == [replace(event, requester=replace(event.requester,
                                                                                    external_id=None))]
    else:
        assert helpdesk.parse(json.loads(body)) == [event]


@pytest.mark.parametrize("source", SOURCES)
@pytest.mark.parametrize("status", ["open", "pending", "solved"])
def test_the_ticket_status_survives_the_round_trip(source, status):
    helpdesk = adapter(source, generic={"shop": GenericHelpdeskSettings(
        mapping=SHOP_MAPPING.model_copy(update={"ticket_status": "message.thread_state",
                                                "status_values": {"Waiting": "pending", "Done": "solved"}}),
        secret=SecretStr("g-secret"), signature_header="X-Shop-Signature")})
    headers, body = helpdesk.signed_request(customer_event(source, ticket_status=status), NOW)
    helpdesk.verify(headers, body, NOW)
    [parsed] = helpdesk.parse(json.loads(body))
    assert parsed.ticket_status == status


@pytest.mark.parametrize("channel", ["chat", "ticket"])
def test_zendesk_round_trips_both_its_shapes(channel):
    zendesk = adapter("zendesk")
    full = customer_event("zendesk", channel=channel)
    headers, body = zendesk.signed_request(full, NOW)
    assert "comment" in json.loads(body)  # the trigger body carries the requester's contact
    assert zendesk.parse(json.loads(body)) == [full]
    by_id = replace(full, requester=Requester(id="77"))
    headers, body = zendesk.signed_request(by_id, NOW)
    assert json.loads(body)["type"] == "zen:event-type:ticket.comment_added"
    zendesk.verify(headers, body, NOW)
    assert zendesk.parse(json.loads(body)) == [by_id]


def test_chatwoot_and_generic_round_trip_bot_messages():
    for source in ["chatwoot", "generic:shop"]:
        event = customer_event(source, author="bot")
        headers, body = adapter(source).signed_request(event, NOW)
        assert adapter(source).parse(json.loads(body)) == [event]


# ====================================================================== what is stored of a webhook

@pytest.mark.parametrize("source", ["zendesk", "chatwoot", "freshdesk", "zammad"])
@pytest.mark.parametrize("author", ["customer", "agent"])
def test_what_is_kept_of_a_webhook_parses_to_the_same_message(source, author):
    # A field that parse reads and retained forgets fails here.
    helpdesk = adapter(source)
    if source == "freshdesk":
        helpdesk.clock = lambda: NOW
    _, body = helpdesk.signed_request(customer_event(source, author=author), NOW)
    payload = json.loads(body)
    [first], [again] = helpdesk.parse(payload), helpdesk.parse(helpdesk.retained(payload))
    if source == "freshdesk":  # its event id digests the comment as rendered, author's name included
        first, again = replace(first, event_id=""), replace(again, event_id="")
    assert again == first


def test_zendesk_keeps_neither_the_author_name_nor_the_ticket_details_it_does_not_read():
    zendesk = adapter("zendesk")
    payload = zendesk_comment()
    kept = zendesk.retained(payload)
    assert zendesk.parse(kept) == zendesk.parse(payload)
    assert kept == {"type": payload["type"], "time": payload["time"],
                    "detail": {"id": "5158", "requester_id": "8447388090494", "via": {"channel": "web"},
                               "status": "OPEN"},
                    "event": {"comment": {"id": 9876543210, "body": "三天了还没发货，我要投诉", "is_public": True,
                                          "author": {"is_staff": False}}}}


def test_freshdesk_keeps_the_comment_without_its_author_name():
    payload = {"event": "reply_sent", "author": "customer", "ticket_id": "1001", "source": "Email",
               "text": "李雷 : <div>还没到</div>", "contact": {"email": "li.lei@example.com", "name": "李雷"}}
    assert adapter("freshdesk").retained(payload) == {
        "event": "reply_sent", "author": "customer", "ticket_id": "1001", "source": "Email",
        "text": "<div>还没到</div>", "contact": {"email": "li.lei@example.com"}}


def test_generic_keeps_each_mapped_field_by_its_name():
    shop = adapter("generic:shop")
    _, body = shop.signed_request(customer_event("generic:shop"), NOW)
    payload = json.loads(body)
    payload["message"]["sender"]["name"] = "李雷"
    assert shop.retained(payload) == {
        "event_id": "501", "ticket_id": "1001", "text": "快递三天都没到，客服也不回消息，我要退款",
        "created_at": "2026-05-01T11:58:00.000Z", "author_role": "customer", "requester_id": "77",
        "requester_email": "li.lei@example.com", "requester_phone": "+8613800138000",
        "requester_external_id": "C-9", "channel": "ticket"}


# ====================================================================== Zendesk payloads

def zendesk_comment(*, staff: bool = False, public: bool = True, kind: str = "zen:event-type:ticket.comment_added"):
    # The event-subscription payload as Zendesk documents it for ticket.comment_added.
    return {
        "account_id": 22129848,
        "detail": {"actor_id": "8447388090494", "assignee_id": "8447388090495", "brand_id": "8447346621310",
                   "created_at": "2026-04-28T10:12:07Z", "id": "5158", "is_public": True,
                   "requester_id": "8447388090494", "status": "OPEN", "subject": "物流太慢",
                   "tags": ["vip"], "type": "QUESTION", "updated_at": "2026-05-01T11:58:00Z",
                   "via": {"channel": "web"}},
        "event": {"comment": {"id": 9876543210, "body": "三天了还没发货，我要投诉", "is_public": public,
                              "author": {"id": 8447388090495 if staff else 8447388090494, "is_staff": staff,
                                         "name": "王芳" if staff else "李雷"}}},
        "id": "d4f5c389-8f4a-4c2e-a1b9-8e4f39c71d52",
        "subject": "zen:ticket:5158",
        "time": "2026-05-01T11:58:00.123456789Z",
        "type": kind,
        "zendesk_event_version": "2022-11-06",
    }


def test_zendesk_customer_comment():
    [event] = adapter("zendesk").parse(zendesk_comment())
    assert event == SupportEvent(source="zendesk", event_id="9876543210", ticket_id="5158", author="customer",
                                 text="三天了还没发货，我要投诉", created_at=datetime(2026, 5, 1, 11, 58, 0, 123456),
                                 requester=Requester(id="8447388090494"), channel="ticket", ticket_status="open")


def test_zendesk_staff_comments_and_private_comments_are_agent():
    assert adapter("zendesk").parse(zendesk_comment(staff=True))[0].author == "agent"
    assert adapter("zendesk").parse(zendesk_comment(public=False))[0].author == "agent"


def test_zendesk_messaging_is_chat():
    payload = zendesk_comment()
    payload["detail"]["via"]["channel"] = "native_messaging"
    assert adapter("zendesk").parse(payload)[0].channel == "chat"


def test_zendesk_events_without_a_comment_give_nothing():
    assert adapter("zendesk").parse(zendesk_comment(kind="zen:event-type:ticket.status_changed")) == []


def test_zendesk_trigger_body_carries_the_requester_contact():
    requester = {"id": "77", "email": "li.lei@example.com", "phone": "", "external_id": ""}
    trigger = {"ticket": {"id": "5158", "via": "Chat", "requester": requester},
               "comment": {"id": "9876543210", "body": "还没到", "is_public": "true", "author_id": "77",
                           "created_at": "2026-05-01T11:58Z"}}
    [event] = adapter("zendesk").parse(trigger)
    assert (event.author, event.requester, event.created_at, event.channel) == (
        "customer", Requester(id="77", email="li.lei@example.com"), datetime(2026, 5, 1, 11, 58), "chat")
    trigger["comment"]["author_id"] = "12"
    assert adapter("zendesk").parse(trigger)[0].author == "agent"


@pytest.mark.parametrize(("change", "message"), [
    (lambda p: p["detail"].pop("id"), "detail.id: missing"),
    (lambda p: p["event"]["comment"].update(is_public="yes"), "event.comment.is_public: expected true or false"),
    (lambda p: p["event"]["comment"].update(body=["x"]), "event.comment.body: expected a string"),
    (lambda p: p.update(time="yesterday"), "time: not an ISO 8601 time"),
    (lambda p: p.update(detail="5158"), "detail: expected an object"),
    (lambda p: p.pop("type"), "type: missing"),
])
def test_zendesk_malformed_payloads_name_the_field(change, message):
    payload = zendesk_comment()
    change(payload)
    with pytest.raises(InvalidPayload, match=message):
        adapter("zendesk").parse(payload)


# ====================================================================== Chatwoot payloads

def chatwoot_message(*, message_type: str = "incoming", private: bool = False, sender_type: str = "contact",
                     event: str = "message_created"):
    # Message#webhook_data plus the event name, as Chatwoot posts message_created.
    contact = {"id": 7, "name": "李雷", "email": "li.lei@example.com", "phone_number": "+8613800138000",
               "identifier": "C-9", "type": "contact", "thumbnail": "", "additional_attributes": {},
               "custom_attributes": {}}
    senders = {"contact": {**contact, "account": {"id": 3, "name": "Shop"}},
               "user": {"id": 2, "name": "王芳", "email": "wang.fang@shop.example", "type": "user"},
               "agent_bot": {"id": 5, "name": "小助手", "type": "agent_bot"}}
    return {
        "event": event, "id": 501, "content": "客服也不回消息，太失望了", "created_at": "2026-05-01T11:58:00.000Z",
        "message_type": message_type, "content_type": "text", "content_attributes": {}, "private": private,
        "source_id": None, "sender": senders[sender_type],
        "inbox": {"id": 1, "name": "官网"},
        "conversation": {"id": 101, "channel": "Channel::WebWidget", "inbox_id": 1, "status": "open",
                         "meta": {"sender": contact, "assignee": None}, "labels": [], "custom_attributes": {}},
        "account": {"id": 3, "name": "Shop"},
    }


def test_chatwoot_incoming_message_is_the_customer():
    [event] = adapter("chatwoot").parse(chatwoot_message())
    assert event == SupportEvent(source="chatwoot", event_id="501", ticket_id="101", author="customer",
                                 text="客服也不回消息，太失望了", created_at=datetime(2026, 5, 1, 11, 58),
                                 requester=Requester(id="7", email="li.lei@example.com", phone="+8613800138000",
                                                     external_id="C-9"),
                                 channel="chat", ticket_status="open")


def test_chatwoot_agent_bot_private_and_activity_messages():
    parse = adapter("chatwoot").parse
    agent = parse(chatwoot_message(message_type="outgoing", sender_type="user"))[0]
    assert agent.author == "agent"
    assert agent.requester.email == "li.lei@example.com"  # still the conversation's contact
    assert parse(chatwoot_message(message_type="outgoing", private=True, sender_type="user"))[0].author == "agent"
    assert parse(chatwoot_message(message_type="outgoing", sender_type="agent_bot"))[0].author == "bot"
    assert parse(chatwoot_message(message_type="template", sender_type="agent_bot"))[0].author == "bot"
    assert parse(chatwoot_message(message_type="activity", sender_type="user"))[0].author == "bot"


def test_chatwoot_events_without_a_new_message_give_nothing():
    for event in ["conversation_status_changed", "message_updated", "conversation_created", "contact_updated"]:
        assert adapter("chatwoot").parse(chatwoot_message(event=event)) == []
    attachment_only = chatwoot_message()
    attachment_only["content"] = None
    assert adapter("chatwoot").parse(attachment_only) == []


def test_chatwoot_email_inboxes_are_tickets():
    payload = chatwoot_message()
    payload["conversation"]["channel"] = "Channel::Email"
    assert adapter("chatwoot").parse(payload)[0].channel == "ticket"


def test_chatwoot_accepts_unix_seconds():
    payload = chatwoot_message()
    payload["created_at"] = 1777636680
    assert adapter("chatwoot").parse(payload)[0].created_at == datetime(2026, 5, 1, 11, 58)


@pytest.mark.parametrize(("change", "message"), [
    (lambda p: p["conversation"].pop("id"), "conversation.id: missing"),
    (lambda p: p.update(conversation=101), "conversation: expected an object"),
    (lambda p: p.update(id=None), "id: missing"),
    (lambda p: p.update(id=True), "id: expected an id"),
    (lambda p: p.update(message_type=0), "message_type: expected a string"),
    (lambda p: p.update(message_type="inbound"), "message_type: expected one of"),
    (lambda p: p.update(content=42), "content: expected a string"),
    (lambda p: p.pop("event"), "event: missing"),
    (lambda p: p.pop("created_at"), "created_at: missing"),
])
def test_chatwoot_malformed_payloads_name_the_field(change, message):
    payload = chatwoot_message()
    change(payload)
    with pytest.raises(InvalidPayload, match=message):
        adapter("chatwoot").parse(payload)


# ====================================================================== Freshdesk payloads

def freshdesk_rule(event: str = "reply_sent", author: str = "customer", text: str | None = None):
    # The documented rule body as Freshdesk renders it: the comment placeholder is
    # "<author name> : <HTML body>".
    rendered = text if text is not None else (
        "李雷 : <div dir=\"ltr\">快递三天都没到&amp;没人理<br>我要退款</div>"
        "<div><blockquote>----- Original message -----<br>客服：请耐心等待</blockquote></div>")
    return {"event": event, "author": author, "ticket_id": "6541", "text": rendered, "status": "Open",
            "contact": {"email": "li.lei@example.com", "phone": "", "mobile": "13800138000",
                        "external_id": ""}}


def test_freshdesk_reply_is_plain_text_without_name_or_quoted_history():
    helpdesk = adapter("freshdesk")
    helpdesk.clock = lambda: NOW
    [event] = helpdesk.parse(freshdesk_rule())
    assert (event.ticket_id, event.author, event.text, event.created_at) == (
        "6541", "customer", "快递三天都没到&没人理\n我要退款", NOW)
    assert event.requester == Requester(email="li.lei@example.com", phone="13800138000")
    assert event.channel == "ticket"
    assert helpdesk.parse({**freshdesk_rule(), "source": "Chat"})[0].channel == "chat"


def test_freshdesk_event_id_is_stable_across_redeliveries_and_differs_per_text():
    parse = adapter("freshdesk").parse
    assert parse(freshdesk_rule())[0].event_id == parse(freshdesk_rule())[0].event_id
    assert parse(freshdesk_rule())[0].event_id != parse(freshdesk_rule(text="李雷 : <p>还在吗</p>"))[0].event_id


def test_freshdesk_new_ticket_description_has_no_author_prefix():
    [event] = adapter("freshdesk").parse(freshdesk_rule("ticket_created", text="<div>订单号 : 12345 没收到</div>"))
    assert event.text == "订单号 : 12345 没收到"


def test_freshdesk_notes_are_agent_and_other_events_give_nothing():
    parse = adapter("freshdesk").parse
    assert parse(freshdesk_rule("note_added", author="customer"))[0].author == "agent"
    assert parse(freshdesk_rule("reply_sent", author="agent"))[0].author == "agent"
    assert parse(freshdesk_rule("status_changed")) == []
    assert parse(freshdesk_rule(text="李雷 : <div><img src=\"x.png\"></div>")) == []


@pytest.mark.parametrize(("change", "message"), [
    (lambda p: p.pop("ticket_id"), "ticket_id: missing"),
    (lambda p: p.update(author="requester"), "author: expected one of customer, agent, bot"),
    (lambda p: p.update(text=None), "text: missing"),
    (lambda p: p.update(contact=[]), "contact: expected an object"),
    (lambda p: p.pop("event"), "event: missing"),
])
def test_freshdesk_malformed_payloads_name_the_field(change, message):
    payload = freshdesk_rule()
    change(payload)
    with pytest.raises(InvalidPayload, match=message):
        adapter("freshdesk").parse(payload)


# ====================================================================== generic payloads

def zammad_webhook(*, sender: str = "Customer", internal: bool = False, state: str = "open",
                   article: bool = True):
    # Zammad's default trigger payload, as its admin documentation shows it (trimmed), in Chinese.
    customer = {"active": True, "address": "浙江省杭州市西湖区文三路100号", "email": "li.lei@example.com", "firstname": "雷",
                "id": 8, "lastname": "李", "login": "li.lei@example.com", "mobile": "+8613800138000",
                "note": "老客户", "phone": "", "roles": ["Customer"], "vip": False}
    payload = {
        "ticket": {"article_count": 2, "created_at": "2026-05-01T11:30:00.000Z", "customer": customer,
                   "customer_id": 8, "group": {"id": 3, "name": "售后"}, "id": 81, "number": "10081",
                   "owner": {"id": 5, "email": "wang.fang@shop.example", "login": "wang.fang@shop.example"},
                   "priority": {"id": 2, "name": "2 normal"}, "state": state, "state_id": 2, "title": "物流太慢"},
        "article": {"body": "快递五天了还没到<br>客服也不回<blockquote>您好，请耐心等待</blockquote>",
                    "content_type": "text/html", "created_at": "2026-05-01T11:58:00.318Z",
                    "created_by": {"id": 8, "login": "li.lei@example.com"}, "from": "李雷 <li.lei@example.com>",
                    "id": 104, "internal": internal, "origin_by": "li.lei@example.com", "sender": sender,
                    "sender_id": 2, "ticket_id": 81, "to": "售后", "type": "email", "type_id": 1, "accounted_time": 0},
    }
    if not article:
        payload["article"] = {}
    return payload


def test_zammad_signature_is_the_documented_formula():
    body = json.dumps(zammad_webhook()).encode()
    digest = hmac.new(b"m-secret", body, hashlib.sha1).hexdigest()
    adapter("zammad").verify({"X-Hub-Signature": f"sha1={digest}"}, body, NOW)
    with pytest.raises(SignatureError):
        adapter("zammad").verify({"X-Hub-Signature": f"sha256={digest}"}, body, NOW)


def test_zammad_customer_article():
    [event] = adapter("zammad").parse(zammad_webhook())
    assert event == SupportEvent(source="zammad", event_id="104", ticket_id="81", author="customer",
                                 text="快递五天了还没到\n客服也不回", created_at=datetime(2026, 5, 1, 11, 58, 0, 318000),
                                 requester=Requester(id="8", email="li.lei@example.com", phone="+8613800138000"),
                                 channel="ticket", ticket_status="open")


@pytest.mark.parametrize(("sender", "internal", "author"), [
    ("Customer", False, "customer"), ("Customer", True, "agent"), ("Agent", False, "agent"), ("Agent", True, "agent"),
    ("System", False, "bot"), ("System", True, "bot")])
def test_zammad_authors(sender, internal, author):
    assert adapter("zammad").parse(zammad_webhook(sender=sender, internal=internal))[0].author == author


@pytest.mark.parametrize(("state", "status"), [
    ("new", "open"), ("open", "open"), ("pending reminder", "pending"), ("pending close", "pending"),
    ("closed", "solved"), ("merged", "solved"), ("removed", "solved"), ("waiting for parts", None)])
def test_zammad_state(state, status):
    assert adapter("zammad").parse(zammad_webhook(state=state))[0].ticket_status == status


def test_zammad_chat_articles_and_a_login_for_an_email():
    payload = zammad_webhook()
    payload["article"].update(type="chat", content_type="text/plain", body="在吗？")
    payload["ticket"]["customer"].update(email="", mobile="", phone="010-12345678")
    [event] = adapter("zammad").parse(payload)
    assert (event.channel, event.text) == ("chat", "在吗？")
    assert event.requester == Requester(id="8", email="li.lei@example.com", phone="010-12345678")


def test_zammad_ticket_changes_without_an_article_give_nothing():
    assert adapter("zammad").parse(zammad_webhook(article=False)) == []
    payload = zammad_webhook()
    del payload["article"]
    assert adapter("zammad").parse(payload) == []


@pytest.mark.parametrize(("change", "message"), [
    (lambda p: p["article"].update(sender="Robot"), "article.sender: expected one of Customer, Agent, System"),
    (lambda p: p["article"].update(internal="yes"), "article.internal: expected true or false"),
    (lambda p: p["article"].pop("id"), "article.id: missing"),
    (lambda p: p["ticket"].pop("id"), "ticket.id: missing"),
    (lambda p: p["article"].update(body=5), "article.body: expected a string"),
    (lambda p: p["article"].update(created_at="yesterday"), "article.created_at"),
])
def test_zammad_malformed_payloads_name_the_field(change, message):
    payload = zammad_webhook()
    change(payload)
    with pytest.raises(InvalidPayload, match=re.escape(message)):
        adapter("zammad").parse(payload)


def test_zammad_keeps_only_what_it_reads():
    zammad = adapter("zammad")
    payload = zammad_webhook()
    kept = zammad.retained(payload)
    assert zammad.parse(kept) == zammad.parse(payload)
    flat = json.dumps(kept, ensure_ascii=False)
    for dropped in ("文三路", "老客户", "wang.fang", "李雷 <", "物流太慢", "firstname"):
        assert dropped not in flat


def shop_message(role: str = "customer"):
    return {"message": {"id": 88, "thread": "T-1", "body": "退货流程太麻烦", "sent_at": "2026-05-01T19:58:00+08:00",
                        "sender": {"role": role, "id": 7, "email": "li.lei@example.com"}, "channel": "app"}}


def test_generic_reads_fields_where_the_mapping_says():
    [event] = adapter("generic:shop").parse(shop_message())
    assert event == SupportEvent(source="generic:shop", event_id="88", ticket_id="T-1", author="customer",
                                 text="退货流程太麻烦", created_at=datetime(2026, 5, 1, 11, 58),
                                 requester=Requester(id="7", email="li.lei@example.com"), channel="app")


def test_generic_roles():
    parse = adapter("generic:shop").parse
    assert [parse(shop_message(role))[0].author for role in ["end-user", "admin", "autoreply"]] == [
        "customer", "agent", "bot"]


@pytest.mark.parametrize(("change", "message"), [
    (lambda p: p["message"].pop("body"), r"text \(message.body\): missing"),
    (lambda p: p["message"].update(sent_at="soon"), r"created_at \(message.sent_at\): not an ISO 8601"),
    (lambda p: p["message"].update(thread={"id": 1}), r"ticket_id \(message.thread\): expected an id"),
    (lambda p: p["message"]["sender"].update(role=3), r"author_role \(message.sender.role\): expected a string"),
])
def test_generic_malformed_payloads_name_the_field_and_expression(change, message):
    payload = shop_message()
    change(payload)
    with pytest.raises(InvalidPayload, match=message):
        adapter("generic:shop").parse(payload)


def test_generic_payloads_that_are_not_messages_are_ignored_by_the_condition():
    mapping = SHOP_MAPPING.model_copy(update={"message_when": "kind == 'message'"})
    shop = adapter("generic:shop", generic={"shop": GenericHelpdeskSettings(mapping=mapping, secret=SecretStr("g"))})
    assert shop.parse({"kind": "thread.closed", "thread": "T-1"}) == []
    assert len(shop.parse(shop_message() | {"kind": "message"})) == 1
    # Without a condition, the same status change is a malformed message.
    with pytest.raises(InvalidPayload):
        adapter("generic:shop").parse({"kind": "thread.closed", "thread": "T-1"})


# ====================================================================== ticket status

@pytest.mark.parametrize(("value", "status"), [
    ("NEW", "open"), ("OPEN", "open"), ("PENDING", "pending"), ("HOLD", "pending"), ("SOLVED", "solved"),
    ("CLOSED", "solved"), ("nonsense", None), (None, None)])
def test_zendesk_status(value, status):
    payload = zendesk_comment()
    payload["detail"]["status"] = value
    assert adapter("zendesk").parse(payload)[0].ticket_status == status


def test_zendesk_trigger_status_placeholder():
    trigger = {"ticket": {"id": "5158", "via": "Web Form", "status": "Solved", "requester": {"id": "77"}},
               "comment": {"id": "9", "body": "谢谢", "is_public": "true", "author_id": "77",
                           "created_at": "2026-05-01T11:58Z"}}
    assert adapter("zendesk").parse(trigger)[0].ticket_status == "solved"


@pytest.mark.parametrize(("value", "status"), [
    ("open", "open"), ("pending", "pending"), ("snoozed", "pending"), ("resolved", "solved"), (None, None)])
def test_chatwoot_status(value, status):
    payload = chatwoot_message(message_type="activity", sender_type="user")
    payload["conversation"]["status"] = value
    [event] = adapter("chatwoot").parse(payload)
    assert (event.author, event.ticket_status) == ("bot", status)


@pytest.mark.parametrize(("value", "status"), [
    ("Open", "open"), ("Pending", "pending"), ("Resolved", "solved"), ("Closed", "solved"), (4, "solved"),
    ("5", "solved"), ("Waiting on Customer", "pending"), ("Awaiting warehouse", None), ("", None)])
def test_freshdesk_status(value, status):
    payload = freshdesk_rule()
    payload["status"] = value
    assert adapter("freshdesk").parse(payload)[0].ticket_status == status


def test_freshdesk_without_a_status_placeholder_has_none():
    payload = freshdesk_rule()
    del payload["status"]
    assert adapter("freshdesk").parse(payload)[0].ticket_status is None


@pytest.mark.parametrize(("value", "status"), [
    ("Waiting", "pending"), ("waiting", "pending"), ("DONE", "solved"), ("open", "open"), ("archived", None),
    (None, None), (3, None)])
def test_generic_status_through_its_value_map(value, status):
    mapping = SHOP_MAPPING.model_copy(update={"ticket_status": "message.state",
                                              "status_values": {"Waiting": "pending", "Done": "solved"}})
    shop = GenericHelpdeskSettings(mapping=mapping, secret=SecretStr("g-secret"))
    payload = shop_message()
    payload["message"]["state"] = value
    assert adapter("generic:shop", generic={"shop": shop}).parse(payload)[0].ticket_status == status


def test_generic_without_a_status_mapping_has_none():
    assert adapter("generic:shop").parse(shop_message())[0].ticket_status is None


@pytest.mark.parametrize(("mapping", "message"), [
    ({"status_values": {"done": "solved"}}, "set mapping.ticket_status"),
    ({"ticket_status": "s", "status_values": {"done": "closed"}}, "status_values"),
    ({"ticket_status": "s", "status_values": {"Done": "solved", "done": "open"}}, "listed twice"),
])
def test_generic_status_mapping_is_checked_when_the_settings_load(mapping, message):
    fields = {"event_id": "a", "ticket_id": "b", "text": "c", "created_at": "d", "author_role": "e"}
    with pytest.raises(ValidationError, match=message):
        GenericMapping(**fields, **mapping)


def test_generic_mapping_must_be_jmespath():
    broken = GenericHelpdeskSettings(mapping=SHOP_MAPPING.model_copy(update={"text": "message.[body"}),
                                     secret=SecretStr("g"))
    with pytest.raises(NotConfigured, match="mapping.text"):
        adapter("generic:shop", generic={"shop": broken})


# ====================================================================== alerts on the stand-in

def assert_note_reads_well(text: str):
    for words in ["RED", "85%", "近期多次投诉物流", "下单频率下降", "repeated delivery complaints",
                  "ordering less often", "安排专属客服回访", "arrange a dedicated agent callback",
                  "2026-05-01 16:00 UTC", "(churnsignal alert 42)"]:
        assert words in text, words


def test_zendesk_alert_is_one_private_comment_tags_and_field(standin, http):
    standin.seed("zendesk", "1001", tags=["vip", "churn-risk-yellow"])
    adapter("zendesk", standin).post_alert(ALERT, http)
    [note] = standin.notes("1001")
    assert_note_reads_well(note["body"])
    assert note["private"] is True
    assert standin.ticket("zendesk", "1001") == {"tags": ["vip", "churn-risk-red"], "fields": {"360001": "red"}}
    [write] = standin.received
    assert write["body"]["remove_tags"] == ["churn-risk-yellow"]
    assert write["headers"]["Idempotency-Key"] == "alert-42-v1"
    expected = "Basic " + base64.b64encode(b"bot@example.com/token:z-token").decode()
    assert write["headers"]["Authorization"] == expected


def test_chatwoot_alert_keeps_other_labels_and_attributes(standin, http):
    standin.seed("chatwoot", "1001", tags=["vip", "churn-risk-blue"], fields={"plan": "gold"})
    adapter("chatwoot", standin).post_alert(ALERT, http)
    [note] = standin.notes("1001")
    assert_note_reads_well(note["body"])
    assert note["private"] is True
    assert standin.ticket("chatwoot", "1001") == {"tags": ["vip", "churn-risk-red"],
                                                  "fields": {"plan": "gold", "churn_risk": "red"}}
    message = standin.received[0]
    assert message["body"] == {"content": ALERT.note(), "message_type": "outgoing", "private": True}
    assert {w["headers"]["Idempotency-Key"] for w in standin.received} == {"alert-42-v1"}


def test_freshdesk_alert_is_an_html_note_merged_tags_and_field(standin, http):
    standin.seed("freshdesk", "1001", tags=["vip", "churn-risk-yellow"], fields={"cf_plan": "gold"})
    adapter("freshdesk", standin).post_alert(ALERT, http)
    [note] = standin.notes("1001")
    assert note["private"] is True
    assert "<br>" in note["body"]
    assert_note_reads_well(note["body"])
    assert standin.ticket("freshdesk", "1001") == {"tags": ["vip", "churn-risk-red"],
                                                   "fields": {"cf_plan": "gold", "cf_churn_risk": "red"}}


def test_zammad_alert_is_an_internal_note_and_the_tier_tag(standin, http):
    standin.seed("zammad", "1001", tags=["vip", "churn-risk-yellow"])
    adapter("zammad", standin).post_alert(ALERT, http)
    [note] = standin.notes("1001")
    assert_note_reads_well(note["body"])
    assert note["private"] is True
    assert standin.ticket("zammad", "1001")["tags"] == ["vip", "churn-risk-red"]
    article, removed, added = standin.received
    assert article["body"] == {"ticket_id": 1001, "body": ALERT.note(), "content_type": "text/plain",
                               "type": "note", "internal": True}
    assert removed["body"] == {"item": "churn-risk-yellow", "object": "Ticket", "o_id": 1001}
    assert added["body"] == {"item": "churn-risk-red", "object": "Ticket", "o_id": 1001}
    assert {w["headers"]["Authorization"] for w in standin.received} == {"Token token=m-token"}


def test_zammad_without_tagging_posts_the_note_only(standin, http):
    adapter("zammad", standin, zammad=ZammadSettings(webhook_secret=SecretStr("m-secret"),
                                                     base_url=standin.url("zammad"), api_token=SecretStr("m-token"),
                                                     tag=False)).post_alert(ALERT, http)
    assert [w["kind"] for w in standin.received] == ["article"]


@pytest.mark.parametrize("status", [401, 403, 422])
def test_zammad_refusals_are_permanent(status, standin, http):
    standin.fail_next(status)
    with pytest.raises(DeliveryError) as failure:
        adapter("zammad", standin).post_alert(ALERT, http)
    assert failure.value.permanent and standin.notes() == []


def test_generic_alert_is_signed_json(standin, http):
    adapter("generic:shop", standin).post_alert(ALERT, http)
    [write] = standin.received
    body = write["body"]
    assert (body["tier"], body["tag"], body["churn_prob"], body["ticket_id"]) == ("red", "churn-risk-red", 0.85, "1001")
    assert body["reasons"] == ALERT.reasons and body["action"] == ALERT.action
    assert_note_reads_well(body["note"])
    raw = json.dumps(body, ensure_ascii=False).encode()
    assert write["headers"]["X-Shop-Signature"] == hmac.new(b"g-secret", raw, hashlib.sha256).hexdigest()


@pytest.mark.parametrize("source", SOURCES)
def test_alert_without_api_settings_is_not_configured(source, http):
    with pytest.raises(NotConfigured):
        adapter(source).post_alert(ALERT, http)


# ---------------------------------------------------------------------- failures

@pytest.mark.parametrize("source", SOURCES)
def test_429_says_when_to_retry(source, standin, http):
    standin.fail_next(429, retry_after=7)
    with pytest.raises(DeliveryError) as failure:
        adapter(source, standin).post_alert(ALERT, http)
    assert (failure.value.retry_after, failure.value.permanent) == (7.0, False)


@pytest.mark.parametrize("source", SOURCES)
def test_server_errors_and_timeouts_are_retried(source, standin, http):
    standin.fail_next(503)
    with pytest.raises(DeliveryError) as failure:
        adapter(source, standin).post_alert(ALERT, http)
    assert not failure.value.permanent and failure.value.retry_after is None
    standin.delay_next(0.6)
    with pytest.raises(DeliveryError, match="Timeout") as failure:
        adapter(source, standin).post_alert(ALERT, http)
    assert not failure.value.permanent


@pytest.mark.parametrize("source", SOURCES)
def test_not_found_is_permanent(source, standin, http):
    standin.fail_next(404)
    with pytest.raises(DeliveryError) as failure:
        adapter(source, standin).post_alert(ALERT, http)
    assert failure.value.permanent


def test_retry_after_may_be_an_http_date():
    in_a_minute = datetime.now(UTC) + timedelta(seconds=60)
    assert 55 < retry_after(format_datetime(in_a_minute, usegmt=True)) <= 60
    assert retry_after("120") == 120.0
    assert retry_after("soon") is None


def test_an_unusable_api_address_is_not_configured(http):
    with pytest.raises(NotConfigured, match="not a usable API address"):
        adapter("chatwoot", chatwoot=ChatwootSettings(base_url="chatwoot.local", account_id=1,
                                                      api_token=SecretStr("t"))).post_alert(ALERT, http)


def test_an_unreachable_helpdesk_is_retried(http):
    standin = StandIn()
    settings = make_settings(standin.__enter__())
    standin.stop()
    with pytest.raises(DeliveryError) as failure:
        helpdesks.get("chatwoot", settings).post_alert(ALERT, http)
    assert not failure.value.permanent


# ---------------------------------------------------------------------- a retry after a timeout

WRITES = {"zendesk": "PUT", "chatwoot": "POST", "freshdesk": "POST", "zammad": "POST"}


@pytest.mark.parametrize("source", list(WRITES))
def test_a_retry_after_a_timeout_that_landed_posts_the_note_once(source, http):
    # Keys ignored, as Chatwoot, Freshdesk and Zammad do: only the adapter's own check can prevent a repeat.
    with StandIn(idempotency_keys=False) as standin:
        helpdesk = adapter(source, standin)
        standin.delay_next(0.6, method=WRITES[source])
        with pytest.raises(DeliveryError, match="Timeout"):
            helpdesk.post_alert(ALERT, http)
        standin.wait_idle()
        assert len(standin.notes("1001")) == 1  # the slow request did land
        helpdesk.post_alert(replace(ALERT, attempt=2), http)
        assert len(standin.notes("1001")) == 1
        assert "churn-risk-red" in standin.ticket(source, "1001")["tags"]


def test_without_the_check_a_repeat_would_post_twice(http):
    # The check above is what prevents the duplicate, not the stand-in.
    with StandIn(idempotency_keys=False) as standin:
        helpdesk = adapter("chatwoot", standin)
        helpdesk.post_alert(ALERT, http)
        helpdesk.post_alert(ALERT, http)
        assert len(standin.notes("1001")) == 2


def test_the_stand_in_answers_a_repeated_idempotency_key_as_before(standin, http):
    helpdesk = adapter("chatwoot", standin)
    helpdesk.post_alert(ALERT, http)
    helpdesk.post_alert(ALERT, http)
    assert len(standin.notes("1001")) == 1
    assert [w["kind"] for w in standin.received] == ["message", "labels", "custom_attributes"]


# ---------------------------------------------------------------------- addresses and redirects

def adapter_at(source: str, url: str) -> helpdesks.Helpdesk:
    """The adapter for ``source`` with its API address (the generic one's ``alert_url``) at ``url``."""
    settings = make_settings()
    if source.startswith("generic:"):
        shop = settings.generic["shop"].model_copy(update={"alert_url": url})
        return helpdesks.get(source, settings.model_copy(update={"generic": {"shop": shop}}))
    section = getattr(settings, source).model_copy(update={"base_url": url})
    return helpdesks.get(source, settings.model_copy(update={source: section}))


@pytest.mark.parametrize("path", ["/hooks/churn/", "/hooks/churn", "/hooks/churn/?tenant=7"])
def test_an_alert_url_is_used_exactly_as_written(path, recorder, http):
    # A trailing slash once went missing; the receiver answered 301 and the alert counted as delivered.
    receiver = recorder()
    adapter_at("generic:shop", receiver.url + path).post_alert(ALERT, http)
    assert [(method, sent) for method, sent, _ in receiver.requests] == [("POST", path)]


@pytest.mark.parametrize("base", ["/desk", "/desk/"])
def test_a_base_url_and_an_api_path_meet_at_one_slash(base, recorder, http):
    api = recorder()
    adapter_at("zendesk", api.url + base).post_alert(ALERT, http)
    assert [path for _, path, _ in api.requests] == ["/desk/api/v2/tickets/1001.json"] * 2


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
@pytest.mark.parametrize("source", SOURCES)
def test_a_redirect_is_a_permanent_failure_naming_where_it_points(source, status, recorder, http):
    elsewhere = recorder()
    target = f"http://localhost:{elsewhere.url.rsplit(':', 1)[1]}/moved/?from=churnsignal"
    moved = recorder(status, {"Location": target})
    with pytest.raises(DeliveryError, match=f"HTTP {status} redirect to {re.escape(target)}") as failure:
        adapter_at(source, moved.url).post_alert(ALERT, http)
    assert failure.value.permanent
    assert len(moved.requests) == 1 and elsewhere.requests == []


def test_a_relative_redirect_is_named_in_full(recorder, http):
    moved = recorder(301, {"Location": "/hooks/churn/"})
    with pytest.raises(DeliveryError, match=f"redirect to {moved.url}/hooks/churn/:"):
        adapter_at("generic:shop", f"{moved.url}/hooks/churn").post_alert(ALERT, http)


def test_chatwoot_token_is_never_sent_where_a_redirect_points(recorder, http):
    elsewhere = recorder()
    moved = recorder(307, {"Location": f"http://localhost:{elsewhere.url.rsplit(':', 1)[1]}/steal"})
    with pytest.raises(DeliveryError):
        adapter_at("chatwoot", moved.url).post_alert(ALERT, http)
    [(_, _, headers)] = moved.requests
    assert headers["api_access_token"] == "c-token"
    assert elsewhere.requests == []


@pytest.mark.parametrize("ticket_id", [".", "..", ""])
@pytest.mark.parametrize("source", ["zendesk", "chatwoot", "freshdesk", "zammad"])
def test_a_ticket_id_that_cannot_be_a_path_segment_is_refused(source, ticket_id, recorder, http):
    # quote() leaves "." and ".." as they are; URL normalisation would resolve them to another resource.
    api = recorder()
    with pytest.raises(DeliveryError, match=f"ticket id {re.escape(repr(ticket_id))}") as failure:
        adapter_at(source, api.url).post_alert(replace(ALERT, ticket_id=ticket_id), http)
    assert failure.value.permanent
    assert api.requests == []


TICKETS = {"zendesk": "/api/v2/tickets/", "chatwoot": "/api/v1/accounts/3/conversations/",
           "freshdesk": "/api/v2/tickets/"}


@pytest.mark.parametrize("source", list(TICKETS))
def test_a_ticket_id_with_dots_and_slashes_stays_one_path_segment(source, recorder, http):
    api = recorder()
    adapter_at(source, api.url).post_alert(replace(ALERT, ticket_id="../1 2/..."), http)
    assert api.requests
    assert all(path.startswith(TICKETS[source] + "..%2F1%202%2F...") for _, path, _ in api.requests)


# ---------------------------------------------------------------------- what a failure may say

@pytest.mark.parametrize(("said", "kept"), [
    ("POST https://bot:s3cret@hooks.example.com/churn/?tenant=7&token=abc123: HTTP 500",
     "POST https://***@hooks.example.com/churn/?tenant=7&token=***: HTTP 500"),
    ("GET https://ghp_abc@api.example.com/x", "GET https://***@api.example.com/x"),
    ("https://u:p@ss@host/x", "https://***@host/x"),
    ("https://h/x?api_key=k&sig=s&X-Amz-Signature=zz&access_token=t&password=p&page=2#top",
     "https://h/x?api_key=***&sig=***&X-Amz-Signature=***&access_token=***&password=***&page=2#top"),
    ("HTTP 302 redirect to https://sso.example.com/login?next=%2F&client_secret=abc: set the URL",
     "HTTP 302 redirect to https://sso.example.com/login?next=%2F&client_secret=***: set the URL"),
    ("HTTPConnectionPool(host='h', port=80): Max retries exceeded with url: /hook?Token=abc (Caused by x)",
     "HTTPConnectionPool(host='h', port=80): Max retries exceeded with url: /hook?Token=*** (Caused by x)"),
    ("POST https://h/hook?key=a:b.c&x=1 (timeout)", "POST https://h/hook?key=***&x=1 (timeout)"),
    ("PUT https://x.zendesk.com/api/v2/tickets/7.json: HTTP 422 mail li@example.com",
     "PUT https://x.zendesk.com/api/v2/tickets/7.json: HTTP 422 mail li@example.com"),
])
def test_credentials_are_removed_from_what_a_failure_says(said, kept):
    assert without_credentials(said) == kept


# ---------------------------------------------------------------------- Zammad settings

def test_zammad_settings_fail_at_start_naming_the_setting(monkeypatch):
    with pytest.raises(ValidationError, match="helpdesks.zammad.api_token is not set"):
        Settings(helpdesks={"zammad": {"base_url": "https://desk.example.com"}})
    with pytest.raises(ValidationError, match="helpdesks.zammad.base_url"):
        Settings(helpdesks={"zammad": {"base_url": "desk.example.com", "api_token": "t"}})
    with pytest.raises(ValidationError, match="helpdesks.zammad"):
        Settings(helpdesks={"zammad": {"webhook_secret": "s", "tags": False}})


def test_zammad_from_the_environment_is_a_configured_source(monkeypatch):
    monkeypatch.setenv("CHURNSIGNAL_HELPDESKS__ZAMMAD__WEBHOOK_SECRET", "m-secret")
    monkeypatch.setenv("CHURNSIGNAL_HELPDESKS__ZAMMAD__BASE_URL", "https://desk.example.com")
    monkeypatch.setenv("CHURNSIGNAL_HELPDESKS__ZAMMAD__API_TOKEN", "m-token")
    settings = Settings()
    assert "zammad" in helpdesks.configured_sources(settings.helpdesks)
    assert settings.helpdesks.zammad.api_token.get_secret_value() == "m-token"
    assert "m-token" not in repr(settings)
