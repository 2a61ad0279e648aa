"""A local stand-in for the helpdesks' APIs, for the demo and the end-to-end tests.

It answers exactly the calls the adapters in :mod:`churnsignal.webhook.helpdesks` make, under
one prefix per helpdesk (point an adapter's ``base_url`` at :meth:`StandIn.url`), keeps each
ticket's notes, tags and fields in memory, and records every write it accepts in
:attr:`StandIn.received`. A test can script what a real helpdesk does on a bad day: fail the
next requests (:meth:`StandIn.fail_next`) or answer them slowly (:meth:`StandIn.delay_next`).
A slow request is still applied after the client has given up, as a real server would, which is
why a retry must check before it posts again.

``Idempotency-Key`` is honoured as payment APIs do (a repeated key on the same method and path
is answered as before, a concurrent repeat gets 409) unless ``idempotency_keys=False``, which
behaves like Chatwoot and Freshdesk, which ignore the header.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from flask import Flask, Response, g, jsonify, request
from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server

_WRITES = {"POST", "PUT", "PATCH", "DELETE"}
# Request headers worth a test's look; the rest is transport noise.
_RECORDED_HEADERS = ("Idempotency-Key", "Authorization", "Api-Access-Token", "Content-Type")


class _KeepUnderscoreHeaders(WSGIRequestHandler):
    """Chatwoot's ``api_access_token`` header has underscores, which werkzeug (like nginx by
    default) drops; Chatwoot's own servers keep it, so the stand-in must too."""

    def make_environ(self) -> dict[str, Any]:
        environ = super().make_environ()
        for key, value in self.headers.items():
            if "_" in key:
                environ[f"HTTP_{key.upper()}"] = value
        return environ


@dataclass
class _Script:
    """One scripted misbehaviour for the next ``remaining`` requests (of ``method``, if given)."""

    remaining: int
    method: str | None
    status: int | None = None
    retry_after: int | None = None
    delay: float = 0.0


@dataclass
class _Ticket:
    tags: list[str] = field(default_factory=list)
    fields: dict[str, Any] = field(default_factory=dict)


class StandIn:
    """The stand-in server: ``with StandIn() as helpdesk: helpdesk.url("zendesk")``."""

    def __init__(self, *, idempotency_keys: bool = True) -> None:
        self.idempotency_keys = idempotency_keys
        self.received: list[dict[str, Any]] = []
        self._notes: list[dict[str, Any]] = []
        self._tickets: dict[tuple[str, str], _Ticket] = {}
        self._scripts: list[_Script] = []
        self._answered: dict[tuple[str, str, str], tuple[int, bytes, dict[str, str]]] = {}
        self._pending: set[tuple[str, str, str]] = set()
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._in_flight = 0
        self._server: BaseWSGIServer | None = None
        self.app = self._build_app()

    # ------------------------------------------------------------------ running

    def start(self) -> str:
        """Serve on a free port of 127.0.0.1 from a daemon thread; the base URL."""
        self._server = make_server("127.0.0.1", 0, self.app, threaded=True,
                                   request_handler=_KeepUnderscoreHeaders)
        # A short poll keeps stop() quick: shutdown waits for the serving loop's next look.
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                         name="standin", daemon=True).start()
        return self.base_url

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> StandIn:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        if self._server is None:
            raise RuntimeError("the stand-in is not running; call start() first")
        return f"http://127.0.0.1:{self._server.server_port}"

    def url(self, helpdesk: str) -> str:
        """The ``base_url`` (or, for ``generic:<name>``, the ``alert_url``) an adapter should use."""
        if helpdesk.startswith("generic:"):
            return f"{self.base_url}/generic/{helpdesk.removeprefix('generic:')}"
        return f"{self.base_url}/{helpdesk}"

    # ------------------------------------------------------------------ scripting and reading

    def fail_next(self, status: int, times: int = 1, retry_after: int | None = None, *,
                  method: str | None = None) -> None:
        """Answer the next ``times`` requests (of ``method``, if given) with ``status``, unapplied."""
        with self._lock:
            self._scripts.append(_Script(times, method, status=status, retry_after=retry_after))

    def delay_next(self, seconds: float, times: int = 1, *, method: str | None = None) -> None:
        """Hold the next ``times`` requests (of ``method``, if given) ``seconds`` before applying them."""
        with self._lock:
            self._scripts.append(_Script(times, method, delay=seconds))

    def wait_idle(self, timeout: float = 5.0) -> None:
        """Wait until no request is being served (a delayed one has been applied)."""
        with self._idle:
            if not self._idle.wait_for(lambda: self._in_flight == 0, timeout):
                raise TimeoutError(f"the stand-in was still serving a request after {timeout} s")

    def notes(self, ticket_id: str | None = None) -> list[dict[str, Any]]:
        """The notes posted so far (helpdesk, ticket_id, body, private), oldest first."""
        with self._lock:
            return [dict(n) for n in self._notes if ticket_id is None or n["ticket_id"] == str(ticket_id)]

    def seed(self, helpdesk: str, ticket_id: str, *, tags: Iterable[str] = (),
             fields: dict[str, Any] | None = None) -> None:
        """Give a ticket tags (labels, in Chatwoot) and fields before the adapters see it."""
        with self._lock:
            ticket = self._ticket(helpdesk, ticket_id)
            ticket.tags = list(dict.fromkeys([*ticket.tags, *tags]))
            ticket.fields.update(fields or {})

    def ticket(self, helpdesk: str, ticket_id: str) -> dict[str, Any]:
        """A copy of a ticket's tags and fields."""
        with self._lock:
            ticket = self._ticket(helpdesk, ticket_id)
            return {"tags": list(ticket.tags), "fields": dict(ticket.fields)}

    # ------------------------------------------------------------------ the app

    def _build_app(self) -> Flask:
        app = Flask("churnsignal-standin")
        app.before_request(self._before)
        app.after_request(self._after)
        app.teardown_request(self._teardown)
        zendesk = "/zendesk/api/v2/tickets/<ticket_id>"
        app.add_url_rule(f"{zendesk}.json", view_func=self._zendesk_ticket, methods=["GET", "PUT"])
        app.add_url_rule(f"{zendesk}/comments.json", view_func=self._zendesk_comments)
        chatwoot = "/chatwoot/api/v1/accounts/<int:account_id>/conversations/<ticket_id>"
        app.add_url_rule(chatwoot, view_func=self._chatwoot_conversation)
        app.add_url_rule(f"{chatwoot}/messages", view_func=self._chatwoot_messages, methods=["GET", "POST"])
        app.add_url_rule(f"{chatwoot}/labels", view_func=self._chatwoot_labels, methods=["POST"])
        app.add_url_rule(f"{chatwoot}/custom_attributes", view_func=self._chatwoot_attributes, methods=["POST"])
        freshdesk = "/freshdesk/api/v2/tickets/<ticket_id>"
        app.add_url_rule(freshdesk, view_func=self._freshdesk_ticket, methods=["GET", "PUT"])
        app.add_url_rule(f"{freshdesk}/notes", view_func=self._freshdesk_notes, methods=["POST"])
        app.add_url_rule(f"{freshdesk}/conversations", view_func=self._freshdesk_conversations)
        zammad = "/zammad/api/v1"
        app.add_url_rule(f"{zammad}/ticket_articles", view_func=self._zammad_note, methods=["POST"])
        app.add_url_rule(f"{zammad}/ticket_articles/by_ticket/<ticket_id>", view_func=self._zammad_articles)
        app.add_url_rule(f"{zammad}/tags", view_func=self._zammad_tags)
        app.add_url_rule(f"{zammad}/tags/add", view_func=self._zammad_tag, methods=["POST"])
        app.add_url_rule(f"{zammad}/tags/remove", view_func=self._zammad_tag, methods=["DELETE"])
        app.add_url_rule("/generic/<name>", view_func=self._generic_alert, methods=["POST"])
        return app

    def _before(self) -> Response | None:
        with self._lock:
            self._in_flight += 1
            script = next((s for s in self._scripts if s.method in (None, request.method)), None)
            if script is not None:
                script.remaining -= 1
                if script.remaining == 0:
                    self._scripts.remove(script)
            if script is not None and script.status is not None:
                answer = jsonify(error=f"scripted failure {script.status}")
                answer.status_code = script.status
                if script.retry_after is not None:
                    answer.headers["Retry-After"] = str(script.retry_after)
                return answer
            key = request.headers.get("Idempotency-Key")
            if self.idempotency_keys and key and request.method in _WRITES:
                slot = (request.method, request.path, key)
                if slot in self._answered:
                    status, body, headers = self._answered[slot]
                    return Response(body, status, headers)
                if slot in self._pending:
                    return Response('{"error": "a request with this Idempotency-Key is in progress"}', 409,
                                    {"Content-Type": "application/json"})
                self._pending.add(slot)
                g.slot = slot
        if script is not None and script.delay:
            time.sleep(script.delay)
        return None

    def _after(self, response: Response) -> Response:
        slot = g.get("slot")
        if slot is not None and response.status_code < 300:
            with self._lock:
                self._answered[slot] = (response.status_code, response.get_data(),
                                        {"Content-Type": response.content_type})
        return response

    def _teardown(self, _error: BaseException | None) -> None:
        slot = g.pop("slot", None)
        with self._idle:
            self._pending.discard(slot)
            self._in_flight -= 1
            self._idle.notify_all()

    def _ticket(self, helpdesk: str, ticket_id: str) -> _Ticket:
        # Called with the lock held. Unknown tickets spring into being, as in a demo account.
        return self._tickets.setdefault((helpdesk, str(ticket_id)), _Ticket())

    def _write(self, helpdesk: str, ticket_id: str, kind: str, body: Any) -> None:
        # Called with the lock held, once a write has been accepted.
        headers = {name: request.headers[name] for name in _RECORDED_HEADERS if name in request.headers}
        headers.update({k: v for k, v in request.headers.items() if k.lower().startswith("x-")})
        self.received.append({"helpdesk": helpdesk, "ticket_id": str(ticket_id), "kind": kind,
                              "body": body, "headers": headers})

    def _note(self, helpdesk: str, ticket_id: str, body: str, private: bool) -> dict[str, Any]:
        note = {"id": next(self._ids), "helpdesk": helpdesk, "ticket_id": str(ticket_id), "body": body,
                "private": private, "created_at": time.time()}
        self._notes.append(note)
        return note

    def _notes_of(self, helpdesk: str, ticket_id: str) -> list[dict[str, Any]]:
        return [n for n in self._notes if n["helpdesk"] == helpdesk and n["ticket_id"] == ticket_id]

    # ------------------------------------------------------------------ Zendesk

    def _zendesk_ticket(self, ticket_id: str) -> Response | tuple[Response, int]:
        if request.authorization is None or not str(request.authorization.username).endswith("/token"):
            return jsonify(error="Couldn't authenticate you"), 401
        with self._lock:
            ticket = self._ticket("zendesk", ticket_id)
            if request.method == "PUT":
                update = (request.get_json() or {}).get("ticket") or {}
                comment = update.get("comment")
                if comment:
                    self._note("zendesk", ticket_id, comment["body"], private=not comment.get("public", True))
                remove = set(update.get("remove_tags") or [])
                ticket.tags = [t for t in dict.fromkeys([*ticket.tags, *(update.get("additional_tags") or [])])
                               if t not in remove]
                ticket.fields.update({str(f["id"]): f["value"] for f in update.get("custom_fields") or []})
                self._write("zendesk", ticket_id, "ticket_update", update)
            return jsonify(ticket={"id": int(ticket_id) if ticket_id.isdigit() else ticket_id,
                                   "tags": ticket.tags,
                                   "custom_fields": [{"id": k, "value": v} for k, v in ticket.fields.items()]})

    def _zendesk_comments(self, ticket_id: str) -> Response:
        with self._lock:
            comments = [{"id": n["id"], "body": n["body"], "public": not n["private"]}
                        for n in self._notes_of("zendesk", ticket_id)]
        if request.args.get("sort_order") == "desc":
            comments.reverse()
        return jsonify(comments=comments, next_page=None, count=len(comments))

    # ------------------------------------------------------------------ Chatwoot

    def _chatwoot_auth_failed(self) -> tuple[Response, int] | None:
        if not request.headers.get("api_access_token"):
            return jsonify(error="You need to sign in or sign up before continuing."), 401
        return None

    def _chatwoot_conversation(self, account_id: int, ticket_id: str) -> Any:
        if failed := self._chatwoot_auth_failed():
            return failed
        with self._lock:
            ticket = self._ticket("chatwoot", ticket_id)
            return jsonify(id=int(ticket_id) if ticket_id.isdigit() else ticket_id, account_id=account_id,
                           labels=ticket.tags, custom_attributes=ticket.fields)

    def _chatwoot_messages(self, account_id: int, ticket_id: str) -> Any:
        if failed := self._chatwoot_auth_failed():
            return failed
        with self._lock:
            if request.method == "GET":
                return jsonify(meta={}, payload=[{"id": n["id"], "content": n["body"], "message_type": 1,
                                                  "private": n["private"]}
                                                 for n in self._notes_of("chatwoot", ticket_id)[-20:]])
            body = request.get_json() or {}
            note = self._note("chatwoot", ticket_id, body["content"], private=bool(body.get("private")))
            self._write("chatwoot", ticket_id, "message", body)
            return jsonify(id=note["id"], content=note["body"], message_type=1, private=note["private"])

    def _chatwoot_labels(self, account_id: int, ticket_id: str) -> Any:
        if failed := self._chatwoot_auth_failed():
            return failed
        with self._lock:
            body = request.get_json() or {}
            self._ticket("chatwoot", ticket_id).tags = list(dict.fromkeys(body.get("labels") or []))
            self._write("chatwoot", ticket_id, "labels", body)
            return jsonify(payload=self._ticket("chatwoot", ticket_id).tags)

    def _chatwoot_attributes(self, account_id: int, ticket_id: str) -> Any:
        if failed := self._chatwoot_auth_failed():
            return failed
        with self._lock:
            body = request.get_json() or {}
            # Chatwoot assigns the whole hash: keys left out are gone.
            self._ticket("chatwoot", ticket_id).fields = dict(body.get("custom_attributes") or {})
            self._write("chatwoot", ticket_id, "custom_attributes", body)
            return jsonify(custom_attributes=self._ticket("chatwoot", ticket_id).fields)

    # ------------------------------------------------------------------ Freshdesk

    def _freshdesk_ticket(self, ticket_id: str) -> Any:
        if request.authorization is None:
            return jsonify(code="invalid_credentials", message="You have to be logged in"), 401
        with self._lock:
            ticket = self._ticket("freshdesk", ticket_id)
            if request.method == "PUT":
                body = request.get_json() or {}
                if "tags" in body:  # Freshdesk replaces the tag list
                    ticket.tags = list(dict.fromkeys(body["tags"]))
                ticket.fields.update(body.get("custom_fields") or {})  # and merges custom fields
                self._write("freshdesk", ticket_id, "ticket_update", body)
            return jsonify(id=int(ticket_id) if ticket_id.isdigit() else ticket_id, tags=ticket.tags,
                           custom_fields=ticket.fields)

    def _freshdesk_notes(self, ticket_id: str) -> Any:
        if request.authorization is None:
            return jsonify(code="invalid_credentials", message="You have to be logged in"), 401
        with self._lock:
            body = request.get_json() or {}
            note = self._note("freshdesk", ticket_id, body["body"], private=bool(body.get("private", True)))
            self._write("freshdesk", ticket_id, "note", body)
            return jsonify(id=note["id"], body=note["body"], private=note["private"]), 201

    def _freshdesk_conversations(self, ticket_id: str) -> Any:
        if request.authorization is None:
            return jsonify(code="invalid_credentials", message="You have to be logged in"), 401
        per_page = int(request.args.get("per_page", 30))
        page = int(request.args.get("page", 1))
        with self._lock:
            notes = self._notes_of("freshdesk", ticket_id)[(page - 1) * per_page:page * per_page]
        return jsonify([{"id": n["id"], "body": n["body"], "private": n["private"]} for n in notes])

    # ------------------------------------------------------------------ Zammad

    def _zammad_auth_failed(self) -> tuple[Response, int] | None:
        if not request.headers.get("Authorization", "").startswith("Token token="):
            return jsonify(error="authentication failed"), 401
        return None

    def _zammad_note(self) -> Any:
        if failed := self._zammad_auth_failed():
            return failed
        body = request.get_json(silent=True) or {}
        if not isinstance(body.get("ticket_id"), int) or not body.get("body"):
            return jsonify(error="Need ticket_id and body"), 422
        ticket_id = str(body["ticket_id"])
        with self._lock:
            note = self._note("zammad", ticket_id, body["body"], private=bool(body.get("internal")))
            self._write("zammad", ticket_id, "article", body)
        return jsonify(id=note["id"], ticket_id=body["ticket_id"], body=note["body"], internal=note["private"],
                       type=body.get("type"), sender="Agent"), 201

    def _zammad_articles(self, ticket_id: str) -> Any:
        if failed := self._zammad_auth_failed():
            return failed
        with self._lock:
            return jsonify([{"id": n["id"], "ticket_id": int(ticket_id) if ticket_id.isdigit() else ticket_id,
                             "body": n["body"], "internal": n["private"]}
                            for n in self._notes_of("zammad", ticket_id)])

    def _zammad_tags(self) -> Any:
        if failed := self._zammad_auth_failed():
            return failed
        with self._lock:
            return jsonify(tags=self._ticket("zammad", request.args.get("o_id", "")).tags)

    def _zammad_tag(self) -> Any:
        if failed := self._zammad_auth_failed():
            return failed
        body = request.get_json(silent=True) or {}
        if body.get("object") != "Ticket" or not body.get("item") or "o_id" not in body:
            return jsonify(error="Need object, o_id and item"), 422
        ticket_id = str(body["o_id"])
        with self._lock:
            ticket = self._ticket("zammad", ticket_id)
            if request.method == "POST":
                ticket.tags = list(dict.fromkeys([*ticket.tags, body["item"]]))
            else:
                ticket.tags = [tag for tag in ticket.tags if tag != body["item"]]
            self._write("zammad", ticket_id, "tag_add" if request.method == "POST" else "tag_remove", body)
        return jsonify(True), 201 if request.method == "POST" else 200

    # ------------------------------------------------------------------ generic

    def _generic_alert(self, name: str) -> Any:
        body = request.get_json(silent=True)
        if not isinstance(body, dict) or "ticket_id" not in body:
            return jsonify(error="expected a JSON alert with a ticket_id"), 422
        helpdesk = f"generic:{name}"
        with self._lock:
            self._note(helpdesk, str(body["ticket_id"]), str(body.get("note", "")), private=True)
            self._write(helpdesk, str(body["ticket_id"]), "alert", body)
        return jsonify(received=True)
