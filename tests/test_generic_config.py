"""A generic helpdesk's bad configuration stops the service at start, naming the setting.

Each case is one mistake in an otherwise working YAML file, loaded the way the service loads it
(``CHURNSIGNAL_CONFIG`` and :class:`Settings`); none may wait for the first webhook or alert.
"""

from __future__ import annotations

from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from churnsignal.config import MissingSetting, Settings
from churnsignal.webhook.app import create_app

TOKEN = "Vq3r7wQy0LkP2xZs9bNcT4mHd8Fj1aUe6GiRoYpX"
WORKING: dict[str, Any] = {
    "secret": "desk-secret",
    "auth": {"scheme": "hmac", "algorithm": "sha1", "signature": {"header": "X-Hub-Signature", "prefix": "sha1="}},
    "mapping": {"select": {"item": {"list": "ticket.items", "where": "id", "equals": "item_id"}},
                "event_id": "item.id", "ticket_id": "ticket.id", "text": "item.body", "created_at": "item.at",
                "author_role": "item.role", "requester_email": "ticket.email", "message_when": "item_id != null"},
    "outbound": [{"url": "https://desk.example.com/api/tickets/{ticket_id}/notes",
                  "auth": {"header": "Authorization", "prefix": "Token token=", "value_env": "DESK_TOKEN"},
                  "body": '{"ticket": {{ ticket_number }}, "note": {{ note | tojson }}}',
                  "read_back": {"url": "https://desk.example.com/api/tickets/{ticket_id}/notes", "find": "[].note"}}],
}


def load(tmp_path, monkeypatch, desk: dict[str, Any]) -> Settings:
    path = tmp_path / "churnsignal.yaml"
    path.write_text(yaml.safe_dump({"service": {"data_dir": str(tmp_path)}, "identity": {"pepper": "p"},
                                    "helpdesks": {"generic": {"desk": desk}}}, allow_unicode=True))
    monkeypatch.setenv("CHURNSIGNAL_CONFIG", str(path))
    monkeypatch.setenv("DESK_TOKEN", "desk-api-token")
    return Settings()


def changed(path: str, value: Any) -> dict[str, Any]:
    """WORKING with the value at a dotted path (list items by index) replaced, or removed for None."""
    desk = yaml.safe_load(yaml.safe_dump(WORKING))
    *parents, last = [int(key) if key.isdigit() else key for key in path.split(".")]
    target = desk
    for key in parents:
        target = target[key]
    if value is None:
        del target[last]
    else:
        target[last] = value
    return desk


def test_the_working_configuration_loads(tmp_path, monkeypatch):
    assert load(tmp_path, monkeypatch, WORKING).helpdesks.generic["desk"].outbound[0].read_back.find == "[].note"


@pytest.mark.parametrize(("path", "value", "setting", "reason"), [
    ("secret", "", "secret", "secret: empty"),
    ("signature_header", "X Sig", "signature_header", "not an HTTP header name"),
    ("alert_url", "desk.example.com/hook", "alert_url", "not an http:// or https:// address"),
    ("auth.algorithm", "md4", "auth.hmac.algorithm", "'sha1', 'sha256' or 'sha512'"),
    ("auth.signature", {"header": "X-Sig", "query": "sig"}, "auth.hmac.signature", "exactly one of header or query"),
    ("auth.signature", {"header": "X:Sig"}, "auth.hmac.signature", "not an HTTP header name"),
    ("auth.signed", "{ts}.{body}", "auth.hmac", "unknown placeholder {ts}"),
    ("auth", {"scheme": "url_token", "token": "short"}, "auth.url_token.token", "at least 32 characters"),
    ("auth", {"scheme": "url_token"}, "auth.url_token.token", "Field required"),
    ("mapping.event_id", "item.[id", "mapping.event_id", "not a JMESPath expression"),
    ("mapping.message_when", "item_id ==", "mapping.message_when", "not a JMESPath expression"),
    ("mapping.select.item.equals", "item_id)", "mapping.select.item.equals", "not a JMESPath expression"),
    ("mapping.select.item.where", None, "mapping.select.item.where", "Field required"),
    ("mapping.text", None, "mapping", "text needs an expression or a mapping.defaults entry"),
    ("outbound.0.url", "desk.example.com/api/{ticket_id}", "outbound.0.url", "not an http:// or https:// address"),
    ("outbound.0.url", "https://desk.example.com/{ticket}", "outbound.0.url", "unknown placeholder {ticket}"),
    ("outbound.0.body", '{"t": {{ ticket_number }', "outbound.0.body", "not a Jinja2 template"),
    ("outbound.0.body", '{"t": {{ tikcet_id }}}', "outbound.0.body", "unknown variable tikcet_id"),
    ("outbound.0.auth.value_env", "DESK_NOPE", "outbound.0.auth", "environment variable DESK_NOPE is not set"),
    ("outbound.0.auth.header", "Auth orization", "outbound.0.auth", "not an HTTP header name"),
    ("outbound.0.read_back.find", "[?", "outbound.0.read_back.find", "not a JMESPath expression"),
    ("outbound.0.read_back.url", "/api/notes", "outbound.0.read_back.url", "not an http:// or https:// address"),
    ("outbound.0.expect", [], "outbound.0.expect", "at least 1 item"),
])
def test_a_bad_setting_fails_at_load_naming_it(tmp_path, monkeypatch, path, value, setting, reason):
    with pytest.raises(ValidationError) as error:
        load(tmp_path, monkeypatch, changed(path, value))
    message = str(error.value)
    assert f"helpdesks.generic.desk.{setting}" in message, message
    assert reason in message, message
    assert "desk-api-token" not in message and TOKEN not in message


def test_without_a_pepper_the_app_does_not_start(tmp_path, monkeypatch):
    settings = load(tmp_path, monkeypatch, WORKING).model_copy(update={"identity": Settings().identity.model_copy(
        update={"pepper": None})})
    with pytest.raises(MissingSetting, match="identity.pepper is not set"):
        create_app(settings)
