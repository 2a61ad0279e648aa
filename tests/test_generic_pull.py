"""A generic helpdesk whose webhooks only announce messages (``helpdesks.generic.<name>.pull``).

The stand-in is a helpdesk of the Udesk / 美洽 kind: its webhook says "session 81 has new
messages" and nothing else, and its API lists a session's messages
(``GET /api/sessions/<id>/messages``, Bearer token) and, for sync, every message after a
cursor (``GET /api/sync?cursor=<c>``, an ``X-Api-Key`` header, two messages a page with
``next_cursor`` and ``has_more``), or those in a time range, page by page
(``GET /api/messages?since=..&until=..&page=n``).
"""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import pytest
import redis
import requests
from flask import Flask, jsonify, request
from pydantic import ValidationError
from sqlalchemy import select

from churnsignal.config import Settings
from churnsignal.store import Delivery, Event
from churnsignal.webhook.app import create_app
from churnsignal.webhook.helpdesks import DeliveryError
from churnsignal.worker import pulling, tasks
from churnsignal.worker.app import PULL_GENERIC, QUEUE

TOKEN = "Vq3r7wQy0LkP2xZs9bNcT4mHd8Fj1aUe6GiRoYpX"
BEARER, API_KEY = "bearer-7781", "key-5521"
MAPPING = {"event_id": "id", "ticket_id": "session_id", "text": "content", "created_at": "sent_at",
           "author_role": "sender", "requester_phone": "customer.phone"}


def message(number: int, session: int = 81, sender: str = "customer") -> dict[str, Any]:
    return {"id": f"m{number}", "session_id": session, "content": f"第{number}条：快递丢了，电话13812345678",
            "sent_at": f"2026-11-20T08:{number:02d}:00Z", "sender": sender, "customer": {"phone": "13812345678"}}


class SessionDesk:
    """The stand-in helpdesk's API; ``fail_next`` scripts the status of the next requests."""

    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []
        self.fail_next: list[int | None] = []  # None: answer as usual
        self.requests: list[tuple[str, dict[str, str]]] = []
        self.raw_paths: list[str] = []
        app = Flask(__name__)
        app.add_url_rule("/api/sessions/<int:session>/messages", view_func=self._session)
        app.add_url_rule("/api/sync", view_func=self._sync)
        app.add_url_rule("/api/messages", view_func=self._range)
        app.add_url_rule("/api/notes", view_func=self._note, methods=["POST"])
        app.before_request(self._scripted)
        self.notes: list[dict[str, Any]] = []
        self.app = app
        self.base = ""  # where the fixture serves it

    def _scripted(self) -> Any:
        self.requests.append((request.path, request.args.to_dict()))
        self.raw_paths.append(request.environ["RAW_URI"])
        status = self.fail_next.pop(0) if self.fail_next else None
        return None if status is None else (jsonify(error="scripted"), status)

    def _session(self, session: int) -> Any:
        if request.headers.get("Authorization") != f"Bearer {BEARER}":
            return jsonify(error="unauthorised"), 401
        return jsonify(code=0, data={"messages": [m for m in self.messages if m["session_id"] == session]})

    def _sync(self) -> Any:
        if request.headers.get("X-Api-Key") != API_KEY:
            return jsonify(error="bad key"), 403
        start = int(request.args.get("cursor") or 0)
        page = self.messages[start:start + 2]
        end = start + len(page)
        return jsonify(msg_list=page, next_cursor=str(end), has_more=int(end < len(self.messages)))

    def _range(self) -> Any:
        since, until = (datetime.fromisoformat(request.args[key]) for key in ("since", "until"))
        found = [m for m in self.messages if since <= datetime.fromisoformat(m["sent_at"]) < until]
        number = int(request.args.get("page") or 1)
        return jsonify(items=found[(number - 1) * 2:number * 2], next_page=number + 1 if number * 2 < len(found) else None)

    def _note(self) -> Any:
        if request.headers.get("Authorization") != f"Bearer {BEARER}":
            return jsonify(error="unauthorised"), 401
        self.notes.append(request.get_json())
        return jsonify(id=len(self.notes)), 201


@pytest.fixture
def desk(serve) -> SessionDesk:
    server = SessionDesk()
    server.base = serve(server.app)
    return server


@pytest.fixture(autouse=True)
def credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DESK_BEARER", BEARER)
    monkeypatch.setenv("DESK_KEY", API_KEY)


def by_session(base: str) -> dict[str, Any]:
    """One request per notice: the session the webhook names."""
    return {"url": base + "/api/sessions/{{ session }}/messages", "auth": {"bearer_env": "DESK_BEARER"},
            "values": {"session": "session.id"}, "when": "event == 'session.updated'", "messages": "data.messages"}


def by_cursor(base: str) -> dict[str, Any]:
    """A sync API: every message after the stored cursor, page by page."""
    return {"url": base + "/api/sync?cursor={{ cursor }}", "auth": {"header": "X-Api-Key", "value_env": "DESK_KEY"},
            "messages": "msg_list", "cursor": {"next": "next_cursor", "has_more": "has_more == `1`"}}


def settings_with(tmp_path, redis_url: str, pull: dict[str, Any], **desk: Any) -> Settings:
    generic = {"secret": "s", "mapping": MAPPING, "pull": pull,
               "auth": {"scheme": "url_token", "token": TOKEN}} | desk
    return Settings(service={"broker_url": redis_url, "data_dir": tmp_path, "api_token": "t"},
                    helpdesks={"generic": {"desk": generic}, "timeout_seconds": 2, "backoff_seconds": 1},
                    identity={"pepper": "p"})


def stored(store) -> list[Event]:
    with store.session() as session:
        return list(session.scalars(select(Event).order_by(Event.id)))


def queued_tasks(redis_url: str) -> list[tuple[str, list[Any]]]:
    """The tasks waiting in the broker's queue, as (name, args), oldest first."""
    client = redis.Redis.from_url(redis_url)
    found = []
    for raw in reversed(client.lrange(QUEUE, 0, -1)):
        message = json.loads(raw)
        args, _kwargs, _embed = json.loads(base64.b64decode(message["body"]))
        found.append((message["headers"]["task"], args))
    return found


@pytest.fixture
def worker(monkeypatch: pytest.MonkeyPatch, store, http) -> Iterator[list[dict[str, Any]]]:
    """The pull task run here against ``store``; what it queues is recorded, not sent."""
    sent: list[dict[str, Any]] = []
    monkeypatch.setattr(tasks, "_store", lambda: store)
    monkeypatch.setattr(tasks, "_http", lambda: http)
    monkeypatch.setattr(tasks.process_events, "apply_async", lambda **kwargs: sent.append({"analyse": kwargs}))
    monkeypatch.setattr(tasks.pull_generic, "apply_async", lambda **kwargs: sent.append({"pull": kwargs}))
    yield sent


def test_a_notice_is_stored_its_pull_queued_and_the_pulled_messages_stored(tmp_path, redis_url, store, desk,
                                                                          worker, monkeypatch):
    desk.messages = [message(1), message(2, sender="agent"), message(3, session=99)]
    settings = settings_with(tmp_path, redis_url, by_session(desk.base))
    client = create_app(settings, store=store).test_client()
    notice = {"event": "session.updated", "session": {"id": 81, "customer_phone": "13812345678"}}
    answer = client.post(f"/webhooks/generic/desk/{TOKEN}", json=notice)
    assert answer.status_code == 202 and answer.get_json()["status"] == "pulling"
    assert stored(store) == [] and desk.requests == []  # nothing is pulled while the helpdesk waits
    with store.session() as session:
        [delivery] = session.scalars(select(Delivery)).all()
    assert json.loads(delivery.body) == {"notice": {"session": 81}}  # only the configured values are kept
    [(name, args)] = queued_tasks(redis_url)
    assert name == PULL_GENERIC and args == ["generic:desk", delivery.id, {"session": 81}]

    monkeypatch.setattr(tasks, "get_settings", lambda: settings)
    assert tasks.pull_generic(*args) == {"fetched": 2, "new": 2, "skipped": 0}
    events = stored(store)
    assert [(e.external_id, e.ticket_id, e.author, e.status) for e in events] == [
        ("m1", "81", "customer", "queued"), ("m2", "81", "agent", "queued")]
    assert "13812345678" not in events[0].text
    with store.session() as session:
        bodies = session.scalars(select(Delivery.body).order_by(Delivery.id)).all()
    assert len(bodies) == 2 and "13812345678" not in bodies[1] and '"requester_phone": "[PHONE]"' in bodies[1]
    assert [sent["analyse"]["args"] for sent in worker] == [[[e.id for e in events]]]

    # A message, not a notice (pull.when does not hold): read with the mapping as before.
    direct = client.post(f"/webhooks/generic/desk/{TOKEN}", json=message(4))
    assert direct.status_code == 202 and direct.get_json()["status"] == "accepted"


def test_a_notice_the_broker_cannot_take_is_answered_503_for_the_helpdesk_to_send_again(tmp_path, store, desk):
    settings = settings_with(tmp_path, "redis://127.0.0.1:1/0", by_session(desk.base))
    client = create_app(settings, store=store).test_client()
    notice = {"event": "session.updated", "session": {"id": 81}}
    for _ in range(2):  # the second finds the broker paused and does not wait for it
        answer = client.post(f"/webhooks/generic/desk/{TOKEN}", json=notice)
        assert answer.status_code == 503 and answer.headers["Retry-After"] == "30"
        assert "send it again later" in answer.get_json()["error"]
    with store.session() as session:
        assert len(session.scalars(select(Delivery)).all()) == 2  # each notice kept all the same


def test_the_cursor_is_kept_and_the_next_pull_continues_from_it(tmp_path, redis_url, store, desk, http):
    settings = settings_with(tmp_path, redis_url, by_cursor(desk.base))
    desk.messages = [message(n) for n in range(1, 6)]
    first = pulling.pull_notice(store, settings, "generic:desk", {}, http)
    assert (first.fetched, len(first.new), first.skipped) == (5, 5, 0)
    assert store.cursor("generic:desk", "default") == "5"
    desk.messages += [message(6), message(7)]
    second = pulling.pull_notice(store, settings, "generic:desk", {}, http)
    assert (second.fetched, len(second.new)) == (2, 2)
    assert [args.get("cursor") for _path, args in desk.requests] == ["", "2", "4", "5"]
    assert store.cursor("generic:desk", "default") == "7"
    assert [e.external_id for e in stored(store)] == [f"m{n}" for n in range(1, 8)]


def test_each_stream_keeps_its_own_cursor(tmp_path, redis_url, store, desk, http):
    per_account = by_cursor(desk.base) | {"values": {"account": "account_id"},
                                          "cursor": {"next": "next_cursor", "stream": "kf-{{ account }}"}}
    settings = settings_with(tmp_path, redis_url, per_account)
    desk.messages = [message(1), message(2), message(3)]
    pulling.pull_notice(store, settings, "generic:desk", {"account": "wk01"}, http)
    assert store.cursor("generic:desk", "kf-wk01") == "3" and store.cursor("generic:desk", "kf-wk02") is None


def test_a_pull_that_fails_part_way_keeps_what_it_stored_and_resumes_there(tmp_path, redis_url, store, desk, http):
    settings = settings_with(tmp_path, redis_url, by_cursor(desk.base))
    desk.messages = [message(n) for n in range(1, 6)]
    desk.fail_next = [None, 503]
    with pytest.raises(DeliveryError, match="HTTP 503") as error:
        pulling.pull_notice(store, settings, "generic:desk", {}, http)
    assert not error.value.permanent
    assert store.cursor("generic:desk", "default") == "2"  # saved with page one's messages, not before
    assert len(stored(store)) == 2
    again = pulling.pull_notice(store, settings, "generic:desk", {}, http)
    assert (again.fetched, len(again.new), again.skipped) == (3, 3, 0)
    assert [e.external_id for e in stored(store)] == [f"m{n}" for n in range(1, 6)]


def test_a_failing_pull_is_retried_and_a_refused_one_logged(tmp_path, redis_url, store, desk, worker, monkeypatch,
                                                           caplog):
    desk.messages = [message(1)]
    settings = settings_with(tmp_path, redis_url, by_session(desk.base))
    monkeypatch.setattr(tasks, "get_settings", lambda: settings)
    desk.fail_next = [503]
    with caplog.at_level(logging.WARNING, logger="churnsignal.worker"):
        assert tasks.pull_generic("generic:desk", 7, {"session": 81}) is None
    [retry] = worker
    assert retry["pull"]["args"] == ["generic:desk", 7, {"session": 81}, 2] and retry["pull"]["countdown"] == 1
    assert "pull for notice 7 from generic:desk attempt 1 failed; retrying in 1 s" in caplog.text
    assert "HTTP 503" in caplog.text and stored(store) == []

    assert tasks.pull_generic(*retry["pull"]["args"]) == {"fetched": 1, "new": 1, "skipped": 0}
    assert [e.external_id for e in stored(store)] == ["m1"]

    monkeypatch.setenv("DESK_BEARER", "revoked")
    revoked = settings_with(tmp_path, redis_url, by_session(desk.base))
    monkeypatch.setattr(tasks, "get_settings", lambda: revoked)
    worker.clear()
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="churnsignal.worker"):
        tasks.pull_generic("generic:desk", 8, {"session": 81})
    assert worker == []  # a 401 is not retried: the credentials are wrong
    [failure] = caplog.records
    assert failure.levelno == logging.ERROR and "HTTP 401" in failure.getMessage()
    assert "churnsignal backfill --helpdesk desk" in failure.getMessage() and "revoked" not in caplog.text


def test_a_pulled_message_the_mapping_cannot_read_is_reported_and_the_others_kept(tmp_path, redis_url, store,
                                                                                 desk, http, caplog):
    broken = message(2) | {"sent_at": "yesterday 13812345678"}
    desk.messages = [message(1), broken, message(3)]
    settings = settings_with(tmp_path, redis_url, by_session(desk.base))
    with caplog.at_level(logging.ERROR, logger="churnsignal.worker"):
        pulled = pulling.pull_notice(store, settings, "generic:desk", {"session": 81}, http)
    assert [e.external_id for e in stored(store)] == ["m1", "m3"]
    [reason] = pulled.errors
    assert reason.startswith("message 1: created_at (sent_at): not an ISO 8601 time")
    assert "13812345678" not in caplog.text and "created_at (sent_at)" in caplog.text


def test_an_answer_without_the_messages_is_a_clear_retried_error(tmp_path, redis_url, store, desk, http):
    settings = settings_with(tmp_path, redis_url, by_session(desk.base) | {"messages": "data.items"})
    with pytest.raises(DeliveryError, match=r"helpdesks\.generic\.desk\.pull\.messages: data\.items finds no list "
                                            r"in the answer of GET http://127\.0\.0\.1:\d+/api/sessions/81/messages: "
                                            r"'\{\"code\": 0") as error:
        pulling.pull_notice(store, settings, "generic:desk", {"session": 81}, http)
    assert not error.value.permanent


def test_url_values_are_quoted_so_a_webhook_cannot_change_the_path(tmp_path, redis_url, store, desk, http):
    settings = settings_with(tmp_path, redis_url, by_session(desk.base))
    with pytest.raises(DeliveryError, match="HTTP 404"):
        pulling.pull_notice(store, settings, "generic:desk", {"session": "81/../../sync?cursor=0"}, http)
    assert desk.raw_paths == ["/api/sessions/81%2F..%2F..%2Fsync%3Fcursor%3D0/messages"]


def test_backfill_pages_through_the_range_and_skips_what_is_stored(tmp_path, redis_url, store, desk, http):
    pull = {"url": desk.base + "/api/messages?since={{ since }}&until={{ until }}&page={{ cursor or 1 }}",
            "messages": "items", "cursor": {"next": "next_page"}}
    settings = settings_with(tmp_path, redis_url, pull)
    desk.messages = [message(n) for n in range(1, 6)]
    pulling.backfill(store, settings, "generic:desk", datetime(2026, 11, 20), datetime(2026, 11, 21), http)
    desk.messages += [message(n) for n in range(6, 10)]
    pages: list[int] = []
    done = pulling.backfill(store, settings, "generic:desk", datetime(2026, 11, 20, 8, 3), datetime(2026, 11, 20, 8, 9),
                            http, on_page=lambda page: pages.append(page.fetched))
    assert pages == [2, 2, 2]
    assert (done.fetched, len(done.new), done.skipped) == (6, 3, 3)
    assert [e.external_id for e in stored(store)] == [f"m{n}" for n in range(1, 9)]
    assert desk.requests[-1][1] == {"since": "2026-11-20T08:03:00Z", "until": "2026-11-20T08:09:00Z", "page": "3"}
    assert store.cursor("generic:desk", "default") is None  # a backfill leaves the live pull's cursor alone


@pytest.mark.parametrize(("change", "message_part"), [
    ({"url": "https://x/{{ sesion }}"}, "pull.url\n.*url: unknown variable sesion"),
    ({"url": "https://x/{{ session }"}, "url: not a Jinja2 template"),
    ({"messages": "data.[?"}, "messages: not a JMESPath expression"),
    ({"values": {"cursor": "a"}}, "pull.values\n.*cursor is set by the pull itself"),
    ({"when": "event =="}, "when: not a JMESPath expression"),
    ({"auth": {"bearer_env": "NO_SUCH_VARIABLE"}}, "bearer_env: environment variable NO_SUCH_VARIABLE is not set"),
    ({"body": '{"s": {{ sesion | tojson }}}'}, "body: unknown variable sesion"),
    ({"cursor": {"next": "next_cursor", "stream": "{{ kf }}"}}, "pull.cursor\n.*stream: unknown variable kf"),
])
def test_bad_pull_settings_fail_at_start_naming_the_setting(tmp_path, redis_url, change, message_part):
    with pytest.raises(ValidationError, match=message_part) as error:
        settings_with(tmp_path, redis_url, by_session("https://helpdesk.example.com") | change)
    assert "helpdesks.generic.desk.pull" in str(error.value)
