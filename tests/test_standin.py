"""The helpdesk stand-in behaves like the real APIs where the adapters depend on it."""

from __future__ import annotations

import threading
import time

import pytest
import requests
from churnsignal.webhook.standin import StandIn

ZENDESK_AUTH = ("bot@example.com/token", "t")
CHATWOOT_TOKEN = {"api_access_token": "t"}


@pytest.fixture
def standin():
    with StandIn() as server:
        yield server


def chatwoot_message(standin: StandIn, content: str, key: str | None = None, timeout: float = 5) -> requests.Response:
    headers = {**CHATWOOT_TOKEN, **({"Idempotency-Key": key} if key else {})}
    return requests.post(f"{standin.url('chatwoot')}/api/v1/accounts/1/conversations/9/messages",
                         json={"content": content, "message_type": "outgoing", "private": True},
                         headers=headers, timeout=timeout)


def test_scripted_failures_count_down_and_can_target_a_method(standin):
    standin.fail_next(503, times=2, method="POST")
    conversation = f"{standin.url('chatwoot')}/api/v1/accounts/1/conversations/9"
    assert requests.get(conversation, headers=CHATWOOT_TOKEN, timeout=5).status_code == 200
    assert [chatwoot_message(standin, "a").status_code for _ in range(3)] == [503, 503, 200]
    assert [n["body"] for n in standin.notes()] == ["a"]


def test_a_failure_can_say_when_to_retry(standin):
    standin.fail_next(429, retry_after=30)
    answer = chatwoot_message(standin, "a")
    assert (answer.status_code, answer.headers["Retry-After"]) == (429, "30")
    assert standin.received == []


def test_a_delayed_request_is_applied_after_the_client_gave_up(standin):
    standin.delay_next(0.5)
    with pytest.raises(requests.Timeout):
        chatwoot_message(standin, "slow", timeout=0.1)
    standin.wait_idle()
    assert [n["body"] for n in standin.notes("9")] == ["slow"]


def test_a_repeated_idempotency_key_is_answered_as_before(standin):
    first = chatwoot_message(standin, "once", key="k1")
    again = chatwoot_message(standin, "once", key="k1")
    assert again.json() == first.json()
    assert len(standin.notes()) == 1 and len(standin.received) == 1
    chatwoot_message(standin, "another", key="k2")
    assert len(standin.notes()) == 2


def test_a_concurrent_repeat_of_a_key_is_a_conflict(standin):
    standin.delay_next(0.4)
    slow = threading.Thread(target=chatwoot_message, args=(standin, "held", "k1"))
    slow.start()
    while not standin._pending:  # until the first request holds the key
        time.sleep(0.01)
    assert chatwoot_message(standin, "held", key="k1").status_code == 409
    slow.join()
    assert len(standin.notes()) == 1


def test_keys_can_be_ignored_as_chatwoot_and_freshdesk_do():
    with StandIn(idempotency_keys=False) as standin:
        chatwoot_message(standin, "twice", key="k1")
        chatwoot_message(standin, "twice", key="k1")
        assert len(standin.notes()) == 2


def test_credentials_are_required(standin):
    assert requests.get(f"{standin.url('zendesk')}/api/v2/tickets/1.json", timeout=5).status_code == 401
    assert requests.get(f"{standin.url('zendesk')}/api/v2/tickets/1.json", auth=ZENDESK_AUTH,
                        timeout=5).status_code == 200
    assert requests.post(f"{standin.url('chatwoot')}/api/v1/accounts/1/conversations/9/labels",
                         json={"labels": []}, timeout=5).status_code == 401
    assert requests.get(f"{standin.url('freshdesk')}/api/v2/tickets/1", timeout=5).status_code == 401
    assert requests.get(f"{standin.url('zammad')}/api/v1/ticket_articles/by_ticket/1", timeout=5).status_code == 401
    assert requests.post(f"{standin.url('zammad')}/api/v1/tags/add", json={"item": "x", "object": "Ticket", "o_id": 1},
                         headers={"Authorization": "Bearer t"}, timeout=5).status_code == 401


def test_freshdesk_replaces_tags_and_merges_fields_chatwoot_replaces_attributes(standin):
    standin.seed("freshdesk", "5", tags=["a", "b"], fields={"cf_x": 1})
    requests.put(f"{standin.url('freshdesk')}/api/v2/tickets/5", auth=("k", "X"),
                 json={"tags": ["b", "c"], "custom_fields": {"cf_y": 2}}, timeout=5).raise_for_status()
    assert standin.ticket("freshdesk", "5") == {"tags": ["b", "c"], "fields": {"cf_x": 1, "cf_y": 2}}
    standin.seed("chatwoot", "9", fields={"plan": "gold"})
    requests.post(f"{standin.url('chatwoot')}/api/v1/accounts/1/conversations/9/custom_attributes",
                  headers=CHATWOOT_TOKEN, json={"custom_attributes": {"risk": "red"}}, timeout=5).raise_for_status()
    assert standin.ticket("chatwoot", "9")["fields"] == {"risk": "red"}


def test_zendesk_update_adds_and_removes_tags_and_keeps_comments(standin):
    standin.seed("zendesk", "1", tags=["vip", "old"])
    ticket = f"{standin.url('zendesk')}/api/v2/tickets/1"
    update = {"ticket": {"comment": {"body": "note", "public": False}, "additional_tags": ["new"],
                         "remove_tags": ["old"], "custom_fields": [{"id": 7, "value": "red"}]}}
    requests.put(f"{ticket}.json", json=update, auth=ZENDESK_AUTH, timeout=5).raise_for_status()
    assert standin.ticket("zendesk", "1") == {"tags": ["vip", "new"], "fields": {"7": "red"}}
    comments = requests.get(f"{ticket}/comments.json", auth=ZENDESK_AUTH, timeout=5).json()["comments"]
    assert [(c["body"], c["public"]) for c in comments] == [("note", False)]
    assert standin.received[0]["kind"] == "ticket_update"
