"""Pages for people, served by the same Flask app: one layout, one login, one set of static files.

Everything a page shows is read from the store, masked as stored; the pages never import
the worker or load a model. Forms that write (the login, "handled") carry a CSRF token:
:data:`csrf` is Flask-WTF's, left off by default and turned on by each pages blueprint, so
the webhooks and the token API, which no browser posts to, are not asked for one.
"""

from __future__ import annotations

from datetime import timedelta

from flask import Flask
from flask_wtf.csrf import CSRFProtect

from churnsignal.config import Settings

csrf = CSRFProtect()

# No script, style or frame from anywhere but this app; no inline script at all. Inline styles
# are allowed: ECharts writes its tooltips as HTML with style attributes.
CONTENT_SECURITY_POLICY = ("default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
                           "img-src 'self' data:; "
                           "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")


def init_app(app: Flask, settings: Settings) -> None:
    """Sessions, CSRF and the pages' blueprints on ``app``."""
    from churnsignal.webhook.highlight import highlighted
    from churnsignal.webhook.pages import login, qa

    if settings.qa.secret_key is not None:
        app.secret_key = settings.qa.secret_key.get_secret_value()
    app.config.update(
        SESSION_COOKIE_NAME="churnsignal_session",
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=settings.qa.secure_cookies,
        PERMANENT_SESSION_LIFETIME=timedelta(hours=settings.qa.session_hours),
        WTF_CSRF_CHECK_DEFAULT=False,
        # The token lives as long as the session that holds it.
        WTF_CSRF_TIME_LIMIT=None,
    )
    csrf.init_app(app)
    # Every stored message on every page goes through the one highlighter.
    app.add_template_filter(highlighted)
    app.register_blueprint(login.blueprint)
    app.register_blueprint(qa.blueprint)


def secure_headers(response):
    """The headers every page for people carries (an ``after_request`` of their blueprints)."""
    response.headers.setdefault("Content-Security-Policy", CONTENT_SECURITY_POLICY)
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Referrer-Policy", "same-origin")
    return response
