"""Requests signed in their query string, afresh for each call (``auth.query_signature``).

Some helpdesk APIs take no header credentials: every call carries a timestamp, a nonce used
once and a hash over them and the account's secret (Udesk's open API). A ``requests`` auth
object is the place for it: it sees each prepared request, retries and pages included, so
no caller can send one unsigned or reuse a nonce.
"""

from __future__ import annotations

import hashlib
import time
import uuid

from requests import PreparedRequest
from requests.auth import AuthBase

from churnsignal.config import PLACEHOLDER, QuerySignature


class SignedQuery(AuthBase):
    """Adds ``params``, the timestamp, the nonce and the signature to each request's URL."""

    def __init__(self, settings: QuerySignature, clock=time.time):
        self.settings = settings
        self.clock = clock

    def __call__(self, request: PreparedRequest) -> PreparedRequest:
        request.prepare_url(request.url, self.params(str(int(self.clock())), str(uuid.uuid4())))
        return request

    def params(self, timestamp: str, nonce: str) -> dict[str, str]:
        """The query parameters one request carries with this timestamp and nonce."""
        settings = self.settings
        values = settings.params | {"timestamp": timestamp, "nonce": nonce, "secret": settings.secret()}
        signed = PLACEHOLDER.sub(lambda match: values[match.group(1)], settings.signed)
        signature = hashlib.new(settings.algorithm, signed.encode()).hexdigest()
        return settings.params | {settings.timestamp_param: timestamp, settings.nonce_param: nonce,
                                  settings.signature_param: signature}
