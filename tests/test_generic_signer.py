"""The demo's request signer speaks every generic ``auth`` scheme, URL-borne ones included.

``signed_webhook`` builds the whole request a helpdesk would send (path, query string, headers,
body); each one is posted through the real web app and must be accepted, and the same request
with its body changed (or, for a token, another token) refused.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import select

from churnsignal.config import Settings
from churnsignal.store import Event
from churnsignal.webhook import helpdesks
from churnsignal.webhook.app import create_app
from churnsignal.webhook.helpdesks import Requester, SupportEvent

TOKEN = "Vq3r7wQy0LkP2xZs9bNcT4mHd8Fj1aUe6GiRoYpX"
MAPPING = {"event_id": "article.id", "ticket_id": "ticket.id", "text": "article.body",
           "created_at": "article.created_at", "author_role": "article.sender", "requester_email": "ticket.email"}
SCHEMES = {
    "default": {},
    "zammad": {"scheme": "hmac", "algorithm": "sha1", "signature": {"header": "X-Hub-Signature", "prefix": "sha1="}},
    "qiyu": {"scheme": "digest", "signed": "{secret}{md5(body)}{timestamp}", "signature": {"query": "checksum"},
             "timestamp": {"query": "time"}},
    "query-signature": {"scheme": "hmac", "encoding": "base64url", "signed": "{timestamp}:{nonce}:{body}",
                        "signature": {"query": "sig", "prefix": "v1="}, "timestamp": {"header": "X-Ts"},
                        "nonce": {"query": "nonce", "prefix": "n-"}},
    "url_token": {"scheme": "url_token", "token": TOKEN},
}
EVENT = SupportEvent(source="generic:desk", event_id="101", ticket_id="31", author="customer",
                     text="快递一个星期都没到", created_at=datetime(2026, 11, 24, 8, 5, 17),
                     requester=Requester(email="wang.fang@example.com"))


def client_for(tmp_path, redis_url, store, auth):
    desk = {"secret": "desk-secret", "mapping": MAPPING} | ({"auth": auth} if auth else {})
    settings = Settings(service={"broker_url": redis_url, "data_dir": tmp_path},
                        helpdesks={"generic": {"desk": desk}}, identity={"pepper": "p"})
    return settings, create_app(settings, store=store).test_client()


@pytest.mark.parametrize("scheme", list(SCHEMES))
def test_signed_webhook_is_accepted_and_a_changed_one_refused(tmp_path, redis_url, store, scheme):
    settings, client = client_for(tmp_path, redis_url, store, SCHEMES[scheme])
    webhook = helpdesks.get("generic:desk", settings.helpdesks).signed_webhook(EVENT, datetime.now(UTC))
    answer = client.post(webhook.path, data=webhook.body, headers=webhook.headers)
    assert answer.status_code == 202, answer.json
    if scheme == "url_token":
        forged = client.post(webhook.path.replace(TOKEN, TOKEN[::-1]), data=webhook.body, headers=webhook.headers)
    else:
        forged = client.post(webhook.path, data=webhook.body.replace(b"101", b"102"), headers=webhook.headers)
    assert forged.status_code == 401, forged.json
    with store.session() as session:
        assert list(session.scalars(select(Event.external_id))) == ["101"]


@pytest.mark.parametrize("scheme", ["qiyu", "query-signature", "url_token"])
def test_signed_request_says_a_url_borne_scheme_needs_signed_webhook(tmp_path, redis_url, store, scheme):
    settings, _ = client_for(tmp_path, redis_url, store, SCHEMES[scheme])
    with pytest.raises(ValueError, match="signed_webhook builds it with its path"):
        helpdesks.get("generic:desk", settings.helpdesks).signed_request(EVENT, datetime.now(UTC))


@pytest.mark.parametrize("source", ["zendesk", "chatwoot", "freshdesk"])
def test_built_in_helpdesks_post_to_their_own_path(source):
    settings = Settings(helpdesks={"zendesk": {"signing_secret": "z"}, "chatwoot": {"webhook_secret": "c"},
                                   "freshdesk": {"webhook_secret": "f"}})
    adapter = helpdesks.get(source, settings.helpdesks)
    event = SupportEvent(**{**EVENT.__dict__, "source": source})
    now = datetime.now(UTC)
    webhook = adapter.signed_webhook(event, now)
    assert webhook.path == f"/webhooks/{source}"
    adapter.verify(webhook.headers, webhook.body, now)
