"""Who is looking at a page: a configured user with an argon2-hashed password, or the name a
trusted reverse proxy puts in a header.

A password login keeps only the user's name in the signed session cookie; the role is read
from configuration on every request, so removing a user (or changing their role) takes
effect at once, without waiting for cookies to expire.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cache, wraps
from typing import Any
from urllib.parse import urlsplit

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from flask import Blueprint, g, redirect, render_template, request, session, url_for
from werkzeug.exceptions import Forbidden, Unauthorized

from churnsignal.webhook.app import service
from churnsignal.webhook.helpdesks.base import NotConfigured
from churnsignal.webhook.pages import csrf, secure_headers

blueprint = Blueprint("login", __name__)
blueprint.after_request(secure_headers)
ROLES = ("qa", "admin")


@dataclass(frozen=True)
class User:
    name: str
    role: str


@cache
def _hasher() -> PasswordHasher:
    return PasswordHasher()


@cache
def _decoy_hash() -> str:
    # Verified against when the name is unknown, so that an unknown name takes as long to
    # refuse as a wrong password and names cannot be guessed from the answer's timing.
    return _hasher().hash("not anyone's password")


def hash_password(password: str) -> str:
    """An argon2id hash of ``password`` for ``qa.users[].password_hash``."""
    return _hasher().hash(password)


def authenticate(name: str, password: str) -> User | None:
    """The configured user ``name`` if ``password`` is theirs, else None."""
    users = {user.name: user for user in service().settings.qa.users}
    found = users.get(name)
    stored = found.password_hash.get_secret_value() if found else _decoy_hash()
    try:
        _hasher().verify(stored, password)
    except (VerificationError, InvalidHashError):
        return None
    return User(found.name, found.role) if found else None


def current_user() -> User | None:
    """Who sent this request: the trusted header's user, or the session's, if still configured."""
    if "user" not in g:
        g.user = _identify()
    return g.user


def _identify() -> User | None:
    settings = service().settings.qa
    if settings.trusted_header is not None:
        name = request.headers.get(settings.trusted_header, "").strip()
        if name:
            return User(name, settings.trusted_role)
    name = session.get("user")
    for user in settings.users:
        if user.name == name:
            return User(user.name, user.role)
    return None


def login_required(*roles: str, page: bool = True) -> Callable:
    """Let the view run for a logged-in user with one of ``roles`` (default: any role).

    A page sends a stranger to the login form; a data endpoint answers 401, as an API does.
    """
    allowed = roles or ROLES

    def decorate(view: Callable) -> Callable:
        @wraps(view)
        def guarded(*args: Any, **kwargs: Any) -> Any:
            require_enabled()
            user = current_user()
            if user is None:
                if page:
                    return redirect(url_for("login.form", next=request.full_path.rstrip("?")))
                raise Unauthorized("log in first (POST /login)")
            if user.role not in allowed:
                raise Forbidden(f"the role {user.role!r} may not open this (needs one of {', '.join(allowed)})")
            return view(*args, **kwargs)

        return guarded

    return decorate


def require_enabled() -> None:
    if not service().settings.qa.enabled:
        raise NotConfigured("not configured: the pages for people need CHURNSIGNAL_QA__USERS or "
                            "CHURNSIGNAL_QA__TRUSTED_HEADER, and CHURNSIGNAL_QA__SECRET_KEY (docs/qa.md)")


@blueprint.app_context_processor
def _user_in_templates() -> dict[str, Any]:
    return {"current_user": current_user}


@blueprint.before_request
def _checked_forms() -> None:
    if request.method == "POST":
        require_enabled()
        csrf.protect()


@blueprint.get("/login")
def form():
    require_enabled()
    return render_template("login.html", next=safe_next(request.args.get("next"), url_for("qa.index")))


@blueprint.post("/login")
def log_in():
    name = request.form.get("name", "").strip()
    user = authenticate(name, request.form.get("password", ""))
    target = safe_next(request.form.get("next"), url_for("qa.index"))
    if user is None:
        return render_template("login.html", next=target, failed=True, name=name), 401
    # A fresh session on every login: a cookie planted before it (session fixation) is not kept.
    session.clear()
    session["user"] = user.name
    session.permanent = True
    return redirect(target)


@blueprint.post("/logout")
def log_out():
    session.clear()
    return redirect(url_for("login.form"))


def safe_next(target: str | None, default: str) -> str:
    """Where to go after a form: a path on this site only, never another host; else ``default``."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return default
    parts = urlsplit(target)
    return target if not parts.scheme and not parts.netloc else default
