"""``churnsignal backfill`` and ``churnsignal helpdesk check``, run as an operator would, against
the stand-in helpdesk API of :mod:`test_generic_pull` and a YAML configuration."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner, Result
from sqlalchemy import select
from test_generic_pull import BEARER, MAPPING, TOKEN, SessionDesk, message, queued_tasks

from churnsignal.cli import main
from churnsignal.config import get_settings
from churnsignal.store import Event
from churnsignal.worker.app import PROCESS_EVENTS

SECRET = "zammad-shared-secret"


@pytest.fixture
def desk(serve) -> SessionDesk:
    server = SessionDesk()
    server.base = serve(server.app)
    return server


@pytest.fixture
def configure(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, redis_url: str):
    """``configure(helpdesks)``: a YAML file with these generic helpdesks, named by CHURNSIGNAL_CONFIG."""

    def write(generic: dict[str, Any], database_url: str | None = None) -> None:
        path = tmp_path / "churnsignal.yaml"
        path.write_text(yaml.safe_dump({"helpdesks": {"generic": generic, "timeout_seconds": 2}}))
        monkeypatch.setenv("CHURNSIGNAL_CONFIG", str(path))
        monkeypatch.setenv("CHURNSIGNAL_SERVICE__DATA_DIR", str(tmp_path))
        monkeypatch.setenv("CHURNSIGNAL_SERVICE__BROKER_URL", redis_url)
        monkeypatch.setenv("CHURNSIGNAL_IDENTITY__PEPPER", "test-pepper")
        if database_url:
            monkeypatch.setenv("CHURNSIGNAL_SERVICE__DATABASE_URL", database_url)
        monkeypatch.setenv("DESK_BEARER", BEARER)
        get_settings.cache_clear()

    yield write
    get_settings.cache_clear()


def run(*args: str) -> Result:
    return CliRunner().invoke(main, list(args))


def ranged(base: str) -> dict[str, Any]:
    return {"secret": "s", "mapping": MAPPING,
            "pull": {"url": base + "/api/messages?since={{ since }}&until={{ until }}&page={{ cursor or 1 }}",
                     "messages": "items", "cursor": {"next": "next_page"}}}


def test_backfill_stores_a_range_once_and_queues_it(configure, store, desk, redis_url):
    configure({"desk": ranged(desk.base)}, store.url)
    desk.messages = [message(n) for n in range(1, 6)]
    first = run("backfill", "--helpdesk", "desk", "--since", "2026-11-20", "--until", "2026-11-21T00:00:00+08:00")
    assert first.exit_code == 0, first.output
    assert "fetched 5, new 5, skipped 0 (already stored)" in first.output
    assert desk.requests[0][1]["until"] == "2026-11-20T16:00:00Z"  # the offset, in UTC
    with store.session() as session:
        events = list(session.scalars(select(Event).order_by(Event.id)))
    assert [(e.external_id, e.status) for e in events] == [(f"m{n}", "queued") for n in range(1, 6)]
    assert queued_tasks(redis_url) == [(PROCESS_EVENTS, [[e.id for e in events]])]

    desk.messages.append(message(6))
    again = run("backfill", "--helpdesk", "desk", "--since", "2026-11-20", "--until", "2026-11-21")
    assert again.exit_code == 0, again.output
    assert "fetched 6, new 1, skipped 5 (already stored)" in again.output


@pytest.mark.parametrize(("args", "code", "said"), [
    (["--helpdesk", "nope", "--since", "7d"], 1, "unknown helpdesk source 'generic:nope'; known: zendesk"),
    (["--helpdesk", "plain", "--since", "7d"], 1, "helpdesks.generic.plain.pull is not set"),
    (["--helpdesk", "desk", "--since", "last tuesday"], 2, "neither an ISO 8601 date or time nor a span"),
    (["--helpdesk", "desk", "--since", "2026-11-21", "--until", "2026-11-20"], 2, "must be before --until"),
])
def test_backfill_errors_are_clear(configure, desk, args, code, said):
    configure({"desk": ranged(desk.base), "plain": {"secret": "s", "mapping": MAPPING}})
    result = run("backfill", *args)
    assert result.exit_code == code and said in result.output
    assert "Traceback" not in result.output and desk.requests == []


def test_backfill_reports_a_failing_pull(configure, store, desk):
    configure({"desk": ranged(desk.base)}, store.url)
    desk.fail_next = [500]
    result = run("backfill", "--helpdesk", "desk", "--since", "2026-11-20", "--until", "2026-11-21")
    assert result.exit_code == 1 and "the pull failed: GET http://127.0.0.1:" in result.output
    assert "HTTP 500" in result.output


ZAMMAD = {"secret": SECRET, "mapping": MAPPING | {"customer_roles": ["customer"]},
          "auth": {"scheme": "hmac", "algorithm": "sha1", "signature": {"header": "X-Hub-Signature", "prefix": "sha1="}}}


def sample(tmp_path: Path, payload: Any) -> tuple[str, bytes]:
    body = json.dumps(payload, ensure_ascii=False).encode()
    path = tmp_path / "payload.json"
    path.write_bytes(body)
    return str(path), body


def signed(body: bytes, secret: str = SECRET) -> str:
    return "X-Hub-Signature: sha1=" + hmac.new(secret.encode(), body, hashlib.sha1).hexdigest()


def test_check_passes_a_good_sample_and_shows_it_masked(configure, tmp_path):
    configure({"zammad": ZAMMAD})
    path, body = sample(tmp_path, message(1))
    result = run("helpdesk", "check", "zammad", "--sample", path, "--header", signed(body))
    assert result.exit_code == 0, result.output
    assert "ok: signature matches: the hex HMAC-SHA1 of {body} in header X-Hub-Signature" in result.output
    for line in ("message m1 on ticket 81", "author:   customer", "created:  2026-11-20T08:01:00Z",
                 "customer: phone [PHONE]", "text:     第1条：快递丢了，电话[PHONE]"):
        assert line in result.output
    assert "13812345678" not in result.output


def test_check_reports_a_bad_signature(configure, tmp_path):
    configure({"zammad": ZAMMAD})
    path, body = sample(tmp_path, message(1))
    result = run("helpdesk", "check", "zammad", "--sample", path, "--header", signed(body, "another secret"))
    assert result.exit_code == 1
    assert ("FAILED: signature refused: header X-Hub-Signature does not match: expected the hex HMAC-SHA1 of {body}"
            in result.output)
    assert SECRET not in result.output


def test_check_says_what_a_sample_without_its_signature_needs(configure, tmp_path):
    configure({"zammad": ZAMMAD})
    path, _ = sample(tmp_path, message(1))
    result = run("helpdesk", "check", "zammad", "--sample", path)
    assert result.exit_code == 0, result.output
    assert ("note: cannot check the signature: the sample has no header X-Hub-Signature; give it with "
            "--header 'X-Hub-Signature: <value>'. The scheme expects the hex HMAC-SHA1 of {body}") in result.output


def test_check_lists_every_mapping_error_with_its_path(configure, tmp_path):
    configure({"zammad": ZAMMAD})
    broken = message(1) | {"sent_at": "yesterday"}
    del broken["content"]
    path, body = sample(tmp_path, broken)
    result = run("helpdesk", "check", "zammad", "--sample", path, "--header", signed(body))
    assert result.exit_code == 1
    assert "FAILED: mapping: text (content): missing" in result.output
    assert "FAILED: mapping: created_at (sent_at): not an ISO 8601 time or Unix seconds: 'yesterday'" in result.output


def test_check_verifies_an_old_timestamped_sample_at_its_own_time(configure, tmp_path):
    stamped = ZAMMAD | {"auth": {"scheme": "digest", "signed": "{secret}{md5(body)}{timestamp}",
                                 "signature": {"query": "checksum"}, "timestamp": {"query": "time"}}}
    configure({"qiyu": stamped})
    path, body = sample(tmp_path, message(1))
    sent_at = str(int(time.time()) - 86400)
    checksum = hashlib.sha1((SECRET + hashlib.md5(body).hexdigest() + sent_at).encode()).hexdigest()
    result = run("helpdesk", "check", "qiyu", "--sample", path, "--query", f"checksum={checksum}",
                 "--query", f"time={sent_at}")
    assert result.exit_code == 0, result.output
    assert "ok: signature matches" in result.output and "a live webhook this far off is refused" in result.output
    wrong = run("helpdesk", "check", "qiyu", "--sample", path, "--query", f"checksum={checksum}",
                "--query", f"time={int(sent_at) + 1}")
    assert wrong.exit_code == 1 and "query parameter checksum does not match" in wrong.output


def test_check_shows_the_request_a_notice_would_pull(configure, tmp_path, desk):
    pulled = {"secret": "s", "mapping": MAPPING, "auth": {"scheme": "url_token", "token": TOKEN},
              "pull": {"url": desk.base + "/api/sessions/{{ session }}/messages", "values": {"session": "session.id"},
                       "messages": "data.messages"}}
    configure({"desk": pulled})
    path, _ = sample(tmp_path, {"event": "session.updated", "session": {"id": 81}})
    result = run("helpdesk", "check", "desk", "--sample", path)
    assert result.exit_code == 0, result.output
    assert "note: auth.scheme url_token: the token travels in the webhook URL" in result.output
    assert f"ok: a notice (pull.when holds): the pull asks GET {desk.base}/api/sessions/81/messages" in result.output
    assert desk.requests == []  # a check pulls nothing


def noted(base: str) -> dict[str, Any]:
    return ZAMMAD | {"outbound": [{"url": base + "/api/notes", "auth": {"bearer_env": "DESK_BEARER"},
                                   "body": '{"ticket": {{ ticket_id | tojson }}, "note": {{ note | tojson }}}',
                                   "expect": [201]}]}


def test_check_sends_a_test_alert_and_shows_each_answer(configure, desk, monkeypatch):
    configure({"zammad": noted(desk.base)})
    result = run("helpdesk", "check", "zammad", "--send-test-alert", "1001")
    assert result.exit_code == 0, result.output
    assert f"POST {desk.base}/api/notes: HTTP 201" in result.output
    assert "ok: test alert posted on ticket 1001" in result.output
    [note] = desk.notes
    assert note["ticket"] == "1001" and "测试提醒，请忽略" in note["note"] and "(churnsignal alert 0)" in note["note"]

    monkeypatch.setenv("DESK_BEARER", "revoked-token")
    get_settings.cache_clear()
    refused = run("helpdesk", "check", "zammad", "--send-test-alert", "1001")
    assert refused.exit_code == 1
    assert f"POST {desk.base}/api/notes: HTTP 401" in refused.output and "FAILED: test alert on ticket 1001" in refused.output
    assert "revoked-token" not in refused.output


def test_check_needs_a_known_helpdesk_and_something_to_check(configure, tmp_path):
    configure({"zammad": ZAMMAD})
    unknown = run("helpdesk", "check", "zendsk", "--send-test-alert", "1")
    assert unknown.exit_code == 1 and "no generic helpdesk named 'zendsk' (configured: zammad)" in unknown.output
    nothing = run("helpdesk", "check", "zammad")
    assert nothing.exit_code == 2 and "give --sample" in nothing.output
