"""The one configuration object: defaults, then an optional YAML file, then environment.

Every setting can be given as ``CHURNSIGNAL_<NAME>`` (nested with ``__``, e.g.
``CHURNSIGNAL_SENTIMENT__NEUTRAL_LOW=0.4``) or in the YAML file named by
``CHURNSIGNAL_CONFIG``. Environment wins over YAML so a deployment can override one
value without editing the file.
"""

from __future__ import annotations

import ipaddress
import os
import re
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import jmespath
from jinja2 import StrictUndefined, TemplateSyntaxError, meta
from jinja2.sandbox import ImmutableSandboxedEnvironment
from jmespath.exceptions import JMESPathError
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, SecretStr, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    YamlConfigSettingsSource,
)

class MissingSetting(RuntimeError):
    """A setting the service cannot run without is not set; the message says how to set it."""


class Section(BaseModel):
    """A part of the settings: an unknown key is a typo, refused rather than silently ignored."""

    model_config = ConfigDict(extra="forbid")


class SentimentSettings(Section):
    """Where the sentiment model lives and how its probability becomes a label."""

    # Any Hugging Face BERT sequence-classification directory (save_pretrained layout);
    # None means the model shipped with the package.
    model_dir: Path | None = None
    # negative_prob at or above neutral_high is negative: a complaint (nlp/complaints.py).
    # 0.35 is the shipped model's operating point, chosen on its chat dev slice to call at most
    # 10 % of calm or happy turns negative (model_cards/sentiment.md). Below it, a model with a
    # neutral class says neutral or positive itself; a two-class model says positive below
    # neutral_low and neutral in between.
    neutral_low: float = Field(0.2, ge=0.0, le=1.0)
    neutral_high: float = Field(0.35, ge=0.0, le=1.0)
    batch_size: int = Field(64, ge=1)
    max_tokens: int = Field(128, ge=16, le=512)
    threads: int | None = Field(None, ge=1)
    # Index of the "negative" class for a user's checkpoint whose id2label does not say.
    negative_label: int | None = Field(None, ge=0)
    # Dynamic int8 on the CPU: faster at a small accuracy cost (see model_cards/sentiment.md).
    quantize: bool = True

    @model_validator(mode="after")
    def _band_is_ordered(self) -> SentimentSettings:
        if self.neutral_low > self.neutral_high:
            raise ValueError("sentiment.neutral_low must not exceed sentiment.neutral_high")
        return self


class EntitySettings(Section):
    """Where the spaCy complaint-entity pipeline lives (None: the shipped one)."""

    model_dir: Path | None = None


class Tier(Section):
    """A warning tier: a churn probability strictly above ``above`` reaches it."""

    name: str
    above: float = Field(ge=0.0, lt=1.0)
    # SPEC: the highest tier is answered within 4 h, the middle within 12 h, the lowest within 24 h.
    response_hours: float = Field(gt=0)


class Intervention(Section):
    """What an agent is asked to do for a customer whose risk has this driver."""

    zh: str
    en: str


def _default_tiers() -> list[Tier]:
    return [Tier(name="red", above=0.70, response_hours=4),
            Tier(name="yellow", above=0.30, response_hours=12),
            Tier(name="blue", above=0.10, response_hours=24)]


def _default_interventions() -> dict[str, Intervention]:
    # SPEC's intervention library, keyed by churn driver.
    return {
        "price": Intervention(zh="发放定向优惠券", en="send a targeted coupon"),
        "service": Intervention(zh="安排专属客服回访", en="arrange a dedicated agent callback"),
        "social": Intervention(zh="邀请加入会员社群", en="invite to the member community"),
        "other": Intervention(zh="人工复核客户情况", en="review the customer by hand"),
    }


class FusionSettings(Section):
    """How purchase and text signals become a churn risk, a tier and an action."""

    # Highest tier first; below the last tier's cut-off there is no alert.
    tiers: list[Tier] = Field(default_factory=_default_tiers)
    interventions: dict[str, Intervention] = Field(default_factory=_default_interventions)
    # SPEC: a 7-day window for high-frequency customers, 90 days for the others.
    high_frequency_orders_per_month: float = Field(4.0, gt=0)
    short_window_days: int = Field(7, ge=1)
    long_window_days: int = Field(90, ge=1)
    # Per-message analysis results, keyed by a hash of the text and the model versions.
    cache_dir: Path = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "churnsignal"

    @model_validator(mode="after")
    def _tiers_are_ordered(self) -> FusionSettings:
        cut_offs = [t.above for t in self.tiers]
        if not self.tiers or cut_offs != sorted(cut_offs, reverse=True) or len(set(cut_offs)) != len(cut_offs):
            raise ValueError("fusion.tiers must list at least one tier, highest cut-off first, cut-offs distinct")
        if len({t.name for t in self.tiers}) != len(self.tiers):
            raise ValueError("fusion.tiers: tier names must be unique")
        missing = {"price", "service", "social", "other"} - set(self.interventions)
        if missing:
            raise ValueError(f"fusion.interventions: no action for driver(s) {', '.join(sorted(missing))}")
        return self


def _data_dir() -> Path:
    return Path(os.environ.get("XDG_DATA_HOME", Path.home() / ".local" / "share")) / "churnsignal"


class ZendeskSettings(Section):
    """Zendesk: webhook signing secret in, ticket update API out."""

    # The webhook's signing secret (Admin Center > Webhooks > signing secret).
    signing_secret: SecretStr | None = None
    # A signature older or newer than this is a replay (Zendesk retries within minutes).
    replay_window_seconds: int = Field(300, ge=1)
    # https://<subdomain>.zendesk.com; alerts are posted with email/token basic auth.
    base_url: str | None = None
    email: str | None = None
    api_token: SecretStr | None = None
    # A ticket custom field (drop-down or text) that shows the tier; None: tags and note only.
    risk_field_id: int | None = None


class ChatwootSettings(Section):
    """Chatwoot: signed webhooks in, private messages and labels out."""

    # The webhook's secret: Chatwoot signs "timestamp.body" with HMAC-SHA256.
    webhook_secret: SecretStr | None = None
    replay_window_seconds: int = Field(300, ge=1)
    base_url: str | None = None
    account_id: int | None = None
    # An agent or bot access token (api_access_token header).
    api_token: SecretStr | None = None
    # A conversation custom attribute key that shows the tier; None: labels and note only.
    risk_attribute: str | None = None


class FreshdeskSettings(Section):
    """Freshdesk: automation-rule webhooks in (it does not sign them), notes and tags out."""

    # Freshdesk cannot sign; the automation rule sends this shared secret in a header.
    webhook_secret: SecretStr | None = None
    secret_header: str = "X-Churnsignal-Secret"
    base_url: str | None = None
    api_key: SecretStr | None = None
    # A ticket custom field (e.g. cf_churn_risk) that shows the tier; None: tags and note only.
    risk_field: str | None = None


class ListItem(Section):
    """The item of a list whose ``where`` value equals a value taken from the payload's root.

    JMESPath cannot compare a list item with a value elsewhere in the document (a
    ``ticket.followup_set`` and the root's ``followup_id``), which is how some helpdesks say
    which message of a ticket a webhook is about.
    """

    list: str  # JMESPath over the payload: the list
    where: str  # JMESPath over one item: the value compared
    equals: str  # JMESPath over the payload: the value it must equal


# The mapped fields of a normalised event, in the order they are read.
MAPPED_FIELDS = ("event_id", "ticket_id", "text", "created_at", "author_role", "requester_id",
                 "requester_email", "requester_phone", "requester_external_id", "channel")
REQUIRED_FIELDS = MAPPED_FIELDS[:5]


class GenericMapping(Section):
    """Where each field of a normalised event lives in a JSON payload (JMESPath expressions)."""

    # Named list items (see ListItem), each searchable by its name in the expressions below,
    # as if it were a key of the payload's root (shadowing a root key of that name).
    select: dict[str, ListItem] = {}
    # Required: an expression, a default, or both.
    event_id: str | None = None
    ticket_id: str | None = None
    text: str | None = None
    created_at: str | None = None
    author_role: str | None = None
    # Any of these that are present identify the customer; at least one must be.
    requester_id: str | None = None
    requester_email: str | None = None
    requester_phone: str | None = None
    requester_external_id: str | None = None
    channel: str | None = None
    # A field's value when its expression finds nothing (or it has none), e.g. author_role:
    # customer for a helpdesk whose webhook fires on customer messages only.
    defaults: dict[str, str] = {}
    # A JMESPath condition a payload must meet to be a message (e.g. "event == 'message.created'");
    # other payloads (status changes, say) are answered 200 "ignored" instead of 422.
    message_when: str | None = None
    # Payload values of author_role that mean a customer / an agent; anything else is a bot.
    customer_roles: list[str] = ["customer", "contact", "end-user", "end_user", "user"]
    agent_roles: list[str] = ["agent", "admin"]

    @model_validator(mode="after")
    def _every_required_field_has_a_source(self) -> GenericMapping:
        unknown = sorted(set(self.defaults) - set(MAPPED_FIELDS))
        if unknown:
            raise ValueError(f"mapping.defaults: {', '.join(unknown)} is not a mapped field "
                             f"(one of {', '.join(MAPPED_FIELDS)})")
        missing = [f for f in REQUIRED_FIELDS if getattr(self, f) is None and f not in self.defaults]
        if missing:
            raise ValueError(f"mapping: {', '.join(missing)} needs an expression or a mapping.defaults entry")
        return self


HashAlgorithm = Literal["md5", "sha1", "sha256", "sha512"]
# {name} or {md5(body)}-style calls; anything else between braces is refused at load.
PLACEHOLDER = re.compile(r"\{([^{}]*)\}")


class RequestValue(Section):
    """Where a value travels in the webhook request: a header or a query-string parameter."""

    header: str | None = None
    query: str | None = None
    # Removed from the value when present, e.g. "sha1=" (Zammad, GitHub).
    prefix: str = ""

    @model_validator(mode="after")
    def _one_place(self) -> RequestValue:
        if (self.header is None) == (self.query is None):
            raise ValueError("name exactly one of header or query")
        return self

    def describe(self) -> str:
        return f"header {self.header}" if self.header else f"query parameter {self.query}"


def _check_template(template: str, allowed: frozenset[str], setting: str) -> str:
    unknown = [name for name in PLACEHOLDER.findall(template) if name not in allowed]
    if unknown:
        raise ValueError(f"{setting}: unknown placeholder {{{unknown[0]}}} (known: "
                         f"{', '.join('{' + a + '}' for a in sorted(allowed))})")
    return template


# What a signed template may contain besides literal text.
BODY_PLACEHOLDERS = frozenset({"body", "timestamp", "nonce", "md5(body)", "sha1(body)", "sha256(body)"})


class SignedRequest(Section):
    """What both signing schemes share: where the signature, timestamp and nonce are."""

    # None: the helpdesk's signature_header.
    signature: RequestValue | None = None
    timestamp: RequestValue | None = None
    nonce: RequestValue | None = None
    # A timestamp further than this from now is a replay (or a stale retry): 401.
    replay_window_seconds: int = Field(300, ge=1)

    def placeholders_present(self, template: str, setting: str) -> None:
        for name in ("timestamp", "nonce"):
            if "{" + name + "}" in template and getattr(self, name) is None:
                raise ValueError(f"{setting} signs {{{name}}} but auth.{name} does not say where it is")


class HmacAuth(SignedRequest):
    """HMAC of a template over the request under the helpdesk's secret (GitHub, Zammad, Chatwoot...)."""

    scheme: Literal["hmac"] = "hmac"
    algorithm: Literal["sha1", "sha256", "sha512"] = "sha256"
    encoding: Literal["hex", "base64", "base64url"] = "hex"
    signed: str = "{body}"

    @model_validator(mode="after")
    def _template(self) -> HmacAuth:
        _check_template(self.signed, BODY_PLACEHOLDERS, "auth.signed")
        self.placeholders_present(self.signed, "auth.signed")
        return self


class DigestAuth(SignedRequest):
    """A plain hash of a template that includes the secret (网易七鱼: SHA1(secret + md5(body) + time))."""

    scheme: Literal["digest"]
    algorithm: HashAlgorithm = "sha1"
    encoding: Literal["hex", "base64", "base64url"] = "hex"
    signed: str

    @model_validator(mode="after")
    def _template(self) -> DigestAuth:
        _check_template(self.signed, BODY_PLACEHOLDERS | {"secret"}, "auth.signed")
        if "{secret}" not in self.signed:
            raise ValueError("auth.signed: a digest without {secret} can be computed by anyone")
        self.placeholders_present(self.signed, "auth.signed")
        return self


MIN_URL_TOKEN_LENGTH = 32


class UrlTokenAuth(Section):
    """For helpdesks that cannot sign: the webhook URL carries a long random token.

    The URL is then the secret: anything that sees it (logs, proxies, referrers) can post.
    """

    scheme: Literal["url_token"]
    token: SecretStr
    # CIDRs the request must come from; empty: any address.
    allow_from: list[str] = []
    # A header the reverse proxy in front sets to the client's address (e.g. X-Real-IP);
    # None: the address of the peer that connected. Never set it without such a proxy:
    # a client could send the header itself.
    client_ip_header: str | None = None

    @field_validator("token")
    @classmethod
    def _long_enough(cls, token: SecretStr) -> SecretStr:
        if len(token.get_secret_value()) < MIN_URL_TOKEN_LENGTH:
            raise ValueError(f"auth.token: at least {MIN_URL_TOKEN_LENGTH} characters "
                             "(e.g. python -c 'import secrets; print(secrets.token_urlsafe(32))')")
        if not re.fullmatch(r"[A-Za-z0-9_\-.~]+", token.get_secret_value()):
            raise ValueError("auth.token: only letters, digits and -._~ (it is a URL path segment)")
        return token

    @field_validator("allow_from")
    @classmethod
    def _networks(cls, cidrs: list[str]) -> list[str]:
        for cidr in cidrs:
            try:
                ipaddress.ip_network(cidr, strict=False)
            except ValueError as error:
                raise ValueError(f"auth.allow_from: {cidr!r} is not an IP network: {error}") from None
        return cidrs


InboundAuth = Annotated[HmacAuth | DigestAuth | UrlTokenAuth, Field(discriminator="scheme")]


# What an outbound URL template may name; each value is quoted as one path segment.
URL_PLACEHOLDERS = frozenset({"ticket_id", "customer_id", "alert_id"})
# What an outbound body template may use: every field of an alert (webhook/helpdesks/outbound.py
# fills them in; a test pins that the two agree).
TEMPLATE_FIELDS = frozenset({
    "alert_id", "idempotency_key", "ticket_id", "ticket_number", "customer_id", "tier", "tag", "probability",
    "reasons", "reasons_zh", "reasons_en", "driver", "action", "action_zh", "action_en", "due_at", "attempt",
    "note", "marker"})
# Body templates come from a YAML file: sandboxed, so that one cannot reach Python's internals,
# and strict, so that a misspelt field fails instead of rendering as nothing.
OUTBOUND_TEMPLATES = ImmutableSandboxedEnvironment(undefined=StrictUndefined, autoescape=False)
OutboundMethod = Literal["GET", "POST", "PUT", "PATCH", "DELETE"]


def _from_environment(name: str, setting: str) -> SecretStr:
    value = os.environ.get(name)
    if not value:
        raise ValueError(f"{setting}: environment variable {name} is not set")
    return SecretStr(value)


class BasicFromEnvironment(Section):
    """HTTP Basic credentials, each by the name of the environment variable that holds it."""

    username_env: str
    password_env: str


class OutboundAuth(Section):
    """How an outbound request authenticates: exactly one of ``basic``, ``bearer_env`` or
    ``header`` with ``value_env``.

    Only environment-variable names are written in the YAML; the values are read when the
    settings load, so a missing one stops the service at start rather than at the first alert.
    """

    basic: BasicFromEnvironment | None = None
    bearer_env: str | None = None
    header: str | None = None
    value_env: str | None = None
    # Written before the header's value, e.g. "Token token=" (Zammad).
    prefix: str = ""
    _basic: tuple[SecretStr, SecretStr] | None = PrivateAttr(None)
    _header: tuple[str, SecretStr] | None = PrivateAttr(None)

    @model_validator(mode="after")
    def _resolve(self) -> OutboundAuth:
        if sum(kind is not None for kind in (self.basic, self.bearer_env, self.header)) != 1:
            raise ValueError("name exactly one of basic, bearer_env, or header with value_env")
        if (self.header is None) != (self.value_env is None):
            raise ValueError("header and value_env go together")
        if self.basic is not None:
            self._basic = (_from_environment(self.basic.username_env, "basic.username_env"),
                           _from_environment(self.basic.password_env, "basic.password_env"))
        elif self.bearer_env is not None:
            self._header = ("Authorization", SecretStr("Bearer " + _from_environment(
                self.bearer_env, "bearer_env").get_secret_value()))
        else:
            self._header = (self.header, SecretStr(self.prefix + _from_environment(
                self.value_env, "value_env").get_secret_value()))
        return self

    def basic_auth(self) -> tuple[str, str] | None:
        return None if self._basic is None else (self._basic[0].get_secret_value(), self._basic[1].get_secret_value())

    def headers(self) -> dict[str, str]:
        return {} if self._header is None else {self._header[0]: self._header[1].get_secret_value()}


def _check_url(url: str) -> str:
    return _check_template(url, URL_PLACEHOLDERS, "url")


class ReadBack(Section):
    """A request that lists a ticket's notes, so that a retry does not post a note twice."""

    method: OutboundMethod = "GET"
    url: str
    # None: the request's own auth.
    auth: OutboundAuth | None = None
    # JMESPath over the answer: the notes' texts (a string or a list of strings). A text that
    # holds the alert's marker line means an earlier try's note landed.
    find: str
    _find: Any = PrivateAttr(None)

    @model_validator(mode="after")
    def _compile(self) -> ReadBack:
        _check_url(self.url)
        try:
            self._find = jmespath.compile(self.find)
        except JMESPathError as error:
            raise ValueError(f"find: not a JMESPath expression: {error}") from None
        return self

    def texts(self, answer: Any) -> Any:
        return self._find.search(answer)


class OutboundRequest(Section):
    """One request made for every alert: a private note, a tag, a field..."""

    method: OutboundMethod = "POST"
    # e.g. https://helpdesk.example.com/api/tickets/{ticket_id}/tags/
    url: str
    auth: OutboundAuth | None = None
    # A Jinja2 template (sandboxed) that renders the JSON body; None: no body.
    body: str | None = None
    # The statuses that mean it worked; any other fails the attempt.
    expect: list[Annotated[int, Field(ge=100, le=599)]] = Field([200, 201, 202, 204], min_length=1)
    # On a retry, asked first; when the note is there already this request is not sent again.
    read_back: ReadBack | None = None
    _template: Any = PrivateAttr(None)

    @model_validator(mode="after")
    def _compile(self) -> OutboundRequest:
        _check_url(self.url)
        if self.body is None:
            return self
        try:
            unknown = sorted(meta.find_undeclared_variables(OUTBOUND_TEMPLATES.parse(self.body)) - TEMPLATE_FIELDS)
        except TemplateSyntaxError as error:
            raise ValueError(f"body: not a Jinja2 template: {error.message} (line {error.lineno})") from None
        if unknown:
            raise ValueError(f"body: unknown variable {unknown[0]} (known: {', '.join(sorted(TEMPLATE_FIELDS))})")
        self._template = OUTBOUND_TEMPLATES.from_string(self.body)
        return self

    def render(self, values: dict[str, Any]) -> str | None:
        """The body as the template writes it (JSON, if the template is right); None without one."""
        return None if self._template is None else self._template.render(values)


class GenericHelpdeskSettings(Section):
    """A helpdesk wired by configuration alone: a field mapping in; out, signed JSON POSTs or
    the requests its own API takes."""

    mapping: GenericMapping
    # Inbound (by default; see auth) and outbound: hex HMAC-SHA256 of the raw body in this header.
    secret: SecretStr
    signature_header: str = "X-Signature-256"
    # How inbound webhooks prove they are the helpdesk's; the default is the hex HMAC-SHA256 above.
    auth: InboundAuth = Field(default_factory=HmacAuth)
    # Outbound: alerts are POSTed here as JSON, signed the same way with the same secret.
    alert_url: str | None = None
    # Outbound instead: these requests, in order, for every alert (the helpdesk's own API).
    outbound: list[OutboundRequest] = []

    @model_validator(mode="after")
    def _one_way_out(self) -> GenericHelpdeskSettings:
        if self.alert_url and self.outbound:
            raise ValueError("set alert_url or outbound, not both")
        return self


class HelpdeskSettings(Section):
    """The helpdesks churnsignal listens to and posts alerts back to."""

    zendesk: ZendeskSettings = ZendeskSettings()
    chatwoot: ChatwootSettings = ChatwootSettings()
    freshdesk: FreshdeskSettings = FreshdeskSettings()
    generic: dict[str, GenericHelpdeskSettings] = {}
    # Outbound HTTP: per-request timeout, and delivery attempts before an alert is marked failed.
    timeout_seconds: float = Field(10.0, gt=0)
    max_attempts: int = Field(8, ge=1)
    backoff_seconds: float = Field(2.0, gt=0)
    backoff_max_seconds: float = Field(600.0, gt=0)


class IdentitySettings(Section):
    """How a helpdesk requester becomes one of our customers."""

    # Requester keys tried in order against the identity table (POST /api/identities); the
    # first that maps wins. An unmapped requester with an external id is that customer (by
    # convention a helpdesk's external id is the shop's user id) unless it is an email or a
    # phone number; any other becomes a customer of their own, "hd-" and a hash of the first
    # key present.
    order: list[str] = ["external_id", "email", "phone", "id"]
    # Keys are stored as HMAC-SHA256 with this pepper, never in clear. Change it and the
    # stored identities no longer match. No default: one written in the source is public.
    pepper: SecretStr | None = None

    def required_pepper(self) -> SecretStr:
        """The configured pepper, or :class:`MissingSetting` saying how to set one."""
        if self.pepper is None or not self.pepper.get_secret_value():
            raise MissingSetting(
                "identity.pepper is not set: requester emails and phones are stored only as HMACs under "
                "this secret. Set CHURNSIGNAL_IDENTITY__PEPPER once, before identities are stored "
                "(e.g. to the output of `python -c 'import secrets; print(secrets.token_hex(32))'`), and keep it")
        return self.pepper


class AlertSettings(Section):
    """When a score becomes an alert on the ticket."""

    # A red customer who stays red is alerted again after this long.
    cooldown_hours: float = Field(24.0, gt=0)
    # Fusion model file used to score customers (`churnsignal fusion train`); required by the worker.
    model_path: Path | None = None
    # Post an alert only at `lowest_posted_tier` or above and with a service signal in the
    # customer's window (a complaint, a complaint ticket still unresolved, a first response
    # slower than `slow_first_response_hours`): a risk that purchases alone drive is not
    # something an agent on the ticket can act on. Such scores are still stored and shown
    # by the read API. False: every tier the customer rises to is posted, signal or not.
    require_service_signal: bool = True
    # The lowest tier posted when a service signal is required; `fusion train --alert-rate`
    # fits this tier's cut-off.
    lowest_posted_tier: str = "yellow"
    # A ticket whose first agent reply took longer than this (or has not come for this
    # long) is a slow first response, a service signal. SPEC: the lowest tier is answered
    # within 24 h, so a customer kept waiting longer than that has not been served.
    slow_first_response_hours: float = Field(24.0, gt=0)


class ServiceSettings(Section):
    """Where the running service keeps its data and queues its work."""

    data_dir: Path = Field(default_factory=_data_dir)
    # None: SQLite (WAL) in data_dir. Production: postgresql+psycopg://user@host/db
    database_url: str | None = None
    # None: kombu's SQLAlchemy transport on SQLite in data_dir (no server). Production: redis://host:6379/0
    broker_url: str | None = None
    # Read API bearer token; without one the read API answers 401 and says how to set it.
    api_token: SecretStr | None = None
    max_body_bytes: int = Field(1_048_576, ge=1024)
    # Longest a broker may take to connect or answer (socket timeouts on its transport): a
    # broker that accepts but never answers cannot hold a webhook longer than about twice this.
    broker_timeout_seconds: float = Field(2.0, gt=0, le=60)
    # Events persisted but not analysed this long are re-queued by the sweeper.
    requeue_after_seconds: int = Field(120, ge=1)
    # Messages analysed together by one worker task.
    batch_size: int = Field(32, ge=1)

    def database(self) -> str:
        return self.database_url or f"sqlite:///{self.data_dir / 'churnsignal.db'}"

    def broker(self) -> str:
        return self.broker_url or f"sqla+sqlite:///{self.data_dir / 'broker.db'}"


QaRole = Literal["qa", "admin"]


class QaUser(Section):
    """A person who may open the QA workspace: a name, a role and an argon2 hash of their password."""

    name: str = Field(min_length=1, max_length=200)
    role: QaRole = "qa"
    # `churnsignal qa hash-password` prints one; the password itself is never in configuration.
    password_hash: SecretStr

    @field_validator("password_hash")
    @classmethod
    def _argon2(cls, value: SecretStr) -> SecretStr:
        if not value.get_secret_value().startswith("$argon2"):
            raise ValueError("qa.users.password_hash: not an argon2 hash (make one with `churnsignal qa hash-password`)")
        return value


class QaSettings(Section):
    """Who may open the pages for people (the QA workspace) and how their sessions are kept.

    The workspace is on once there is a way in: configured users, or a reverse proxy that
    authenticates people and names them in ``trusted_header``.
    """

    users: list[QaUser] = []
    # A header the reverse proxy in front sets to the authenticated user's name (e.g.
    # X-Remote-User); whoever it names is logged in with ``trusted_role``. Only behind a proxy
    # that removes the header from clients' requests: anyone who can reach the app directly
    # could otherwise send it and be anyone.
    trusted_header: str | None = None
    trusted_role: QaRole = "qa"
    # Signs the session cookie and the forms' CSRF tokens; required once the workspace is on.
    secret_key: SecretStr | None = None
    # The session cookie only travels over HTTPS; turn off only for a plain-HTTP test set-up.
    secure_cookies: bool = True
    session_hours: float = Field(12.0, gt=0)
    # Whose days the QA figures count in (an IANA name, e.g. Asia/Shanghai); stored times stay UTC.
    timezone: str = "UTC"

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, name: str) -> str:
        try:
            ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"qa.timezone: {name!r} is not an IANA time zone (e.g. Asia/Shanghai)") from None
        return name

    @property
    def enabled(self) -> bool:
        return bool(self.users) or self.trusted_header is not None

    @model_validator(mode="after")
    def _secret_when_enabled(self) -> QaSettings:
        if self.enabled and (self.secret_key is None or len(self.secret_key.get_secret_value()) < 32):
            raise ValueError("qa.secret_key: at least 32 characters once qa.users or qa.trusted_header is set "
                             "(e.g. python -c 'import secrets; print(secrets.token_hex(32))')")
        names = [user.name for user in self.users]
        if len(set(names)) != len(names):
            raise ValueError("qa.users: user names must be unique")
        return self


class Settings(BaseSettings):
    """All of churnsignal's settings."""

    # A start-up error names the setting and what is wrong, never the value given: that value
    # may be a secret (a URL token too short, a pepper or API token in the wrong place).
    model_config = SettingsConfigDict(env_prefix="CHURNSIGNAL_", env_nested_delimiter="__", extra="forbid",
                                      hide_input_in_errors=True)

    sentiment: SentimentSettings = SentimentSettings()
    entities: EntitySettings = EntitySettings()
    fusion: FusionSettings = FusionSettings()
    service: ServiceSettings = ServiceSettings()
    helpdesks: HelpdeskSettings = HelpdeskSettings()
    identity: IdentitySettings = IdentitySettings()
    alerts: AlertSettings = AlertSettings()
    qa: QaSettings = QaSettings()

    @model_validator(mode="after")
    def _posted_tier_exists(self) -> Settings:
        names = [t.name for t in self.fusion.tiers]
        if self.alerts.require_service_signal and self.alerts.lowest_posted_tier not in names:
            raise ValueError(f"alerts.lowest_posted_tier: {self.alerts.lowest_posted_tier!r} is not one of "
                             f"fusion.tiers ({', '.join(names)}); name one, or set alerts.require_service_signal "
                             "to false")
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        path = os.environ.get("CHURNSIGNAL_CONFIG")
        if path:
            if not Path(path).is_file():
                raise FileNotFoundError(f"CHURNSIGNAL_CONFIG points at {path}, which is not a file")
            sources.append(YamlConfigSettingsSource(settings_cls, yaml_file=path))
        return tuple(sources)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """Load the settings once per process."""
    return Settings()
