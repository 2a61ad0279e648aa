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
from typing import Annotated, Any, Literal, cast, get_args
from urllib.parse import quote, urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import jmespath
from jinja2 import StrictUndefined, TemplateSyntaxError, meta
from jinja2.sandbox import ImmutableSandboxedEnvironment
from jmespath.exceptions import JMESPathError
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    SecretStr,
    ValidationInfo,
    field_validator,
    model_validator,
)
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
    # 0.35 is the shipped model's operating point: the lowest negative_prob at which at most 10 %
    # of the calm or happy turns of its chat dev slice are labelled negative in each JDDC
    # sample, read in dialogue as the worker reads (bench/operating_point.py, model_cards/sentiment.md). Below it, a model with a
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


# What events.analysed_by holds: the models that read a message, in a few words (fusion.text.analysed_by).
ANALYSED_BY_CHARS = 200
# entities.own_names, joined by commas, fit beside the models' names in events.analysed_by.
OWN_NAMES_CHARS = 100


class EntitySettings(Section):
    """Where the spaCy complaint-entity pipeline lives (None: the shipped one), and whose
    platform the messages are written on."""

    model_dir: Path | None = None
    # The deployer's own platform or shop names (e.g. 京东): the extractor marks every platform it
    # knows as COMPETITOR, and a customer of a JD.com shop writing 京东快递 mentions no rival.
    # A COMPETITOR span holding one of these names is dropped.
    own_names: list[str] = []
    # A complaint that names no topic takes the topics the turns before it make clear ("怎么还没好"
    # after "我的快递到哪了" is about delivery), where the pipeline has a reader for them
    # (model_cards/entities.md, "Topics read from the dialogue"). False: only what its words name.
    dialogue_topics: bool = True

    @field_validator("own_names")
    @classmethod
    def _names_are_words(cls, names: list[str]) -> list[str]:
        names = [name.strip() for name in names]
        if any(not name for name in names):
            raise ValueError("entities.own_names holds an empty name, which every mention would contain")
        # They are part of what each analysed message records (events.analysed_by, 200 characters).
        if len(",".join(names)) > OWN_NAMES_CHARS:
            raise ValueError(f"entities.own_names: at most {OWN_NAMES_CHARS} characters together, commas included")
        return names


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


# An EncodingAESKey: 43 base64 characters, the base64 of a 32-byte AES key without its "=".
_ENCODING_AES_KEY = re.compile(r"[A-Za-z0-9+/]{43}")
# 企业微信 callback tokens: letters and digits, at most 32 (the admin console generates them).
_CALLBACK_TOKEN = re.compile(r"[A-Za-z0-9]{1,32}")


class WecomKfSettings(Section):
    """企业微信 微信客服 (WeCom Customer Service): encrypted notices in, messages pulled with
    ``kf/sync_msg``; alerts out as an application message to the serving agent and/or a group robot."""

    # 企业ID (My Company > Company Information); the receiveid every notice is sealed for.
    corp_id: str | None = None
    # The callback's Token and EncodingAESKey (微信客服 > API > 回调配置).
    token: SecretStr | None = None
    encoding_aes_key: SecretStr | None = None
    # The secret of the application that calls the 微信客服 API (and whose agent_id sends
    # alerts): access tokens are fetched with corp_id and this secret.
    secret: SecretStr | None = None
    api_base: str = "https://qyapi.weixin.qq.com"
    # That application's AgentId: alerts go to the serving agent as its application message.
    agent_id: int | None = None
    # A group robot's webhook URL (https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=...).
    robot_webhook_url: SecretStr | None = None
    # A notice timestamped further than this from now, or seen before within it, is refused.
    replay_window_seconds: int = Field(300, ge=1)

    @field_validator("encoding_aes_key")
    @classmethod
    def _aes_key(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not _ENCODING_AES_KEY.fullmatch(value.get_secret_value()):
            raise ValueError("must be the 43 characters (letters, digits, + and /) the callback "
                             "configuration shows as EncodingAESKey")
        return value

    @field_validator("token")
    @classmethod
    def _token(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not _CALLBACK_TOKEN.fullmatch(value.get_secret_value()):
            raise ValueError("must be the callback Token: 1 to 32 letters and digits")
        return value

    @field_validator("api_base")
    @classmethod
    def _api_base(cls, value: str) -> str:
        if not re.fullmatch(r"https?://[^/?#\s]+/?", value):
            raise ValueError("must be a scheme and host such as https://qyapi.weixin.qq.com")
        return value.rstrip("/")

    @field_validator("robot_webhook_url")
    @classmethod
    def _robot_url(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not re.fullmatch(r"https?://\S+", value.get_secret_value()):
            raise ValueError("must be the robot's webhook URL (https://...)")
        return value

    @model_validator(mode="after")
    def _complete(self) -> WecomKfSettings:
        inbound = {"corp_id": self.corp_id, "token": self.token, "encoding_aes_key": self.encoding_aes_key}
        if any(inbound.values()) and not all(inbound.values()):
            missing = ", ".join(f"helpdesks.wecom_kf.{name}" for name, value in inbound.items() if not value)
            raise ValueError(f"the callback needs corp_id, token and encoding_aes_key together; missing {missing}")
        if self.token and not self.secret:
            raise ValueError("helpdesks.wecom_kf.secret is needed to pull the messages a notice announces")
        if self.agent_id is not None and not self.secret:
            raise ValueError("helpdesks.wecom_kf.agent_id needs helpdesks.wecom_kf.secret to send application messages")
        return self


def _jmespath(expression: str | None, setting: str) -> str | None:
    """``expression`` if it compiles: a typo in a mapping must stop the service at start, not
    answer every webhook with an error."""
    if expression is not None:
        try:
            jmespath.compile(expression)
        except JMESPathError as error:
            raise ValueError(f"{setting}: not a JMESPath expression: {error}") from None
    return expression


class ZammadSettings(Section):
    """Zammad: signed trigger webhooks in, internal notes and tags out."""

    # The webhook's "HMAC SHA1 Signature Token": Zammad signs the body with HMAC-SHA1.
    webhook_secret: SecretStr | None = None
    # https://zammad.example.com; alerts are posted with an access token (Profile > Token
    # Access, permission ticket.agent), which must be set with it.
    base_url: str | None = None
    api_token: SecretStr | None = None
    # Tag the ticket churn-risk-<tier> (and remove the other tiers' tags); false: the note only.
    tag: bool = True

    @model_validator(mode="after")
    def _api_is_usable(self) -> ZammadSettings:
        if self.base_url is not None and not re.match(r"https?://[^/\s]+", self.base_url):
            raise ValueError("helpdesks.zammad.base_url: expected http(s)://host of the Zammad instance")
        if self.base_url is not None and not (self.api_token and self.api_token.get_secret_value()):
            raise ValueError("helpdesks.zammad.api_token is not set: alerts to helpdesks.zammad.base_url need "
                             "an access token (CHURNSIGNAL_HELPDESKS__ZAMMAD__API_TOKEN)")
        return self


class ListItem(Section):
    """The item of a list whose ``where`` value equals a value taken from the payload's root.

    JMESPath cannot compare a list item with a value elsewhere in the document (a
    ``ticket.followup_set`` and the root's ``followup_id``), which is how some helpdesks say
    which message of a ticket a webhook is about.
    """

    list: str  # JMESPath over the payload: the list
    where: str  # JMESPath over one item: the value compared
    equals: str  # JMESPath over the payload: the value it must equal

    @field_validator("list", "where", "equals")
    @classmethod
    def _compiles(cls, expression: str, info: ValidationInfo) -> str:
        return _jmespath(expression, info.field_name)


# A ticket's status in churnsignal's words, whatever the helpdesk calls it. Each adapter maps its
# own values onto these; "solved" ends a ticket's unresolved complaints (fusion/features.py).
TicketStatus = Literal["open", "pending", "solved"]
TICKET_STATUSES: tuple[str, ...] = get_args(TicketStatus)

# Where a customer's message was written, in churnsignal's words: a review is read as a
# review (nlp/sentiment.py), chat and ticket messages as turns of a dialogue.
CHANNELS: tuple[str, ...] = ("chat", "ticket", "review")

# The mapped fields of a normalised event, in the order they are read.
MAPPED_FIELDS = ("event_id", "ticket_id", "text", "created_at", "author_role", "requester_id",
                 "requester_email", "requester_phone", "requester_external_id", "channel", "ticket_status")
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
    # The ticket's status, read through status_values; a value it does not list is taken as
    # it is when it is one of open/pending/solved, and as unknown otherwise.
    ticket_status: str | None = None
    # The helpdesk's status values (compared case-insensitively) and what each means here,
    # e.g. {new: open, waiting: pending, closed: solved}.
    status_values: dict[str, TicketStatus] = {}
    # A field's value when its expression finds nothing (or it has none), e.g. author_role:
    # customer for a helpdesk whose webhook fires on customer messages only.
    defaults: dict[str, str] = {}
    # A JMESPath condition a payload must meet to be a message (e.g. "event == 'message.created'");
    # other payloads (status changes, say) are answered 200 "ignored" instead of 422.
    message_when: str | None = None
    # Payload values of author_role that mean a customer / an agent; anything else is a bot.
    customer_roles: list[str] = ["customer", "contact", "end-user", "end_user", "user"]
    agent_roles: list[str] = ["agent", "admin"]

    @field_validator(*MAPPED_FIELDS, "message_when")
    @classmethod
    def _compiles(cls, expression: str | None, info: ValidationInfo) -> str | None:
        return _jmespath(expression, info.field_name)

    @model_validator(mode="after")
    def _every_required_field_has_a_source(self) -> GenericMapping:
        unknown = sorted(set(self.defaults) - set(MAPPED_FIELDS))
        if unknown:
            raise ValueError(f"mapping.defaults: {', '.join(unknown)} is not a mapped field "
                             f"(one of {', '.join(MAPPED_FIELDS)})")
        missing = [f for f in REQUIRED_FIELDS if getattr(self, f) is None and f not in self.defaults]
        if missing:
            raise ValueError(f"mapping: {', '.join(missing)} needs an expression or a mapping.defaults entry")
        if self.status_values and self.ticket_status is None and "ticket_status" not in self.defaults:
            raise ValueError("mapping.status_values: set mapping.ticket_status to where the status is")
        folded = [value.strip().lower() for value in self.status_values]
        if len(set(folded)) != len(folded):
            raise ValueError("mapping.status_values: a value is listed twice (they compare case-insensitively)")
        return self

    def status(self, value: Any) -> TicketStatus | None:
        """The status a payload's value means here; None when it is not one this mapping knows."""
        if not isinstance(value, str):
            return None
        wanted = value.strip().lower()
        known = {key.strip().lower(): status for key, status in self.status_values.items()}
        found = known.get(wanted, wanted)
        return cast(TicketStatus, found) if found in TICKET_STATUSES else None


HashAlgorithm = Literal["md5", "sha1", "sha256", "sha512"]
# {name} or {md5(body)}-style calls; anything else between braces is refused at load.
PLACEHOLDER = re.compile(r"\{([^{}]*)\}")


# RFC 9110's token: what a header name may be made of.
_HEADER_NAME = re.compile(r"[A-Za-z0-9!#$%&'*+.^_`|~-]+")


def _check_header(name: str | None, setting: str) -> str | None:
    if name is not None and not _HEADER_NAME.fullmatch(name):
        raise ValueError(f"{setting}: {name!r} is not an HTTP header name")
    return name


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
        _check_header(self.header, "header")
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


# How the digest is written: hex, base64, unpadded base64url, or base64 of the hex digest
# (美洽 sends "meiqia_sign:" + base64(hex(HMAC-SHA1))).
SignatureEncoding = Literal["hex", "base64", "base64url", "hex_base64"]


class HmacAuth(SignedRequest):
    """HMAC of a template over the request under the helpdesk's secret (GitHub, Zammad, Chatwoot...)."""

    scheme: Literal["hmac"] = "hmac"
    algorithm: Literal["sha1", "sha256", "sha512"] = "sha256"
    encoding: SignatureEncoding = "hex"
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
    encoding: SignatureEncoding = "hex"
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


class QuerySignature(Section):
    """A signature in the query string, made afresh for every request, as APIs that sign each
    call do (Udesk's open API: ``sign = SHA256(email&open_api_token&timestamp&nonce&v2)``).

    ``signed`` is the text that is hashed: literal text with ``{secret}`` (the value of
    ``secret_env``), ``{timestamp}`` (Unix seconds), ``{nonce}`` (a random UUID, new for every
    request) and any name in ``params``. ``params`` are sent as they are, beside the
    timestamp, the nonce and the signature.
    """

    secret_env: str
    algorithm: HashAlgorithm = "sha256"
    signed: str
    params: dict[str, str] = {}
    signature_param: str = "sign"
    timestamp_param: str = "timestamp"
    nonce_param: str = "nonce"
    _secret: SecretStr | None = PrivateAttr(None)

    @model_validator(mode="after")
    def _resolve(self) -> QuerySignature:
        _check_template(self.signed, frozenset({"secret", "timestamp", "nonce", *self.params}), "query_signature.signed")
        if "{secret}" not in self.signed:
            raise ValueError("query_signature.signed: must contain {secret}, or the signature proves nothing")
        self._secret = _from_environment(self.secret_env, "query_signature.secret_env")
        return self

    def secret(self) -> str:
        return self._secret.get_secret_value()


class OutboundAuth(Section):
    """How an outbound request authenticates: exactly one of ``basic``, ``bearer_env``,
    ``header`` with ``value_env``, or ``query_signature``.

    Only environment-variable names are written in the YAML; the values are read when the
    settings load, so a missing one stops the service at start rather than at the first alert.
    """

    basic: BasicFromEnvironment | None = None
    bearer_env: str | None = None
    header: str | None = None
    value_env: str | None = None
    query_signature: QuerySignature | None = None
    # Written before the header's value, e.g. "Token token=" (Zammad).
    prefix: str = ""
    _basic: tuple[SecretStr, SecretStr] | None = PrivateAttr(None)
    _header: tuple[str, SecretStr] | None = PrivateAttr(None)

    @model_validator(mode="after")
    def _resolve(self) -> OutboundAuth:
        if sum(kind is not None for kind in (self.basic, self.bearer_env, self.header, self.query_signature)) != 1:
            raise ValueError("name exactly one of basic, bearer_env, header with value_env, or query_signature")
        if (self.header is None) != (self.value_env is None):
            raise ValueError("header and value_env go together")
        _check_header(self.header, "header")
        if self.basic is not None:
            self._basic = (_from_environment(self.basic.username_env, "basic.username_env"),
                           _from_environment(self.basic.password_env, "basic.password_env"))
        elif self.bearer_env is not None:
            self._header = ("Authorization", SecretStr("Bearer " + _from_environment(
                self.bearer_env, "bearer_env").get_secret_value()))
        elif self.header is not None:
            self._header = (self.header, SecretStr(self.prefix + _from_environment(
                self.value_env, "value_env").get_secret_value()))
        return self

    def basic_auth(self) -> tuple[str, str] | None:
        return None if self._basic is None else (self._basic[0].get_secret_value(), self._basic[1].get_secret_value())

    def headers(self) -> dict[str, str]:
        return {} if self._header is None else {self._header[0]: self._header[1].get_secret_value()}


def _check_url(url: str) -> str:
    """A URL template whose placeholders are known and that is an http(s) address once filled in:
    ``helpdesk.example.com/api`` would otherwise fail only when the first alert is sent."""
    _check_template(url, URL_PLACEHOLDERS, "url")
    _http_address(PLACEHOLDER.sub("1", url), "url")
    return url


def _http_address(url: str, setting: str) -> str:
    address = urlsplit(url)
    if address.scheme not in ("http", "https") or not address.hostname:
        raise ValueError(f"{setting}: not an http:// or https:// address: {url!r}")
    return url


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

    @field_validator("url")
    @classmethod
    def _url(cls, url: str) -> str:
        return _check_url(url)

    @field_validator("find")
    @classmethod
    def _find_compiles(cls, find: str) -> str:
        return _jmespath(find, "find")

    def model_post_init(self, _context: Any) -> None:
        self._find = jmespath.compile(self.find)

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

    @field_validator("url")
    @classmethod
    def _url(cls, url: str) -> str:
        return _check_url(url)

    @field_validator("body")
    @classmethod
    def _template_compiles(cls, body: str | None) -> str | None:
        if body is None:
            return None
        try:
            unknown = sorted(meta.find_undeclared_variables(OUTBOUND_TEMPLATES.parse(body)) - TEMPLATE_FIELDS)
        except TemplateSyntaxError as error:
            raise ValueError(f"body: not a Jinja2 template: {error.message} (line {error.lineno})") from None
        if unknown:
            raise ValueError(f"body: unknown variable {unknown[0]} (known: {', '.join(sorted(TEMPLATE_FIELDS))})")
        return body

    def model_post_init(self, _context: Any) -> None:
        self._template = None if self.body is None else OUTBOUND_TEMPLATES.from_string(self.body)

    def render(self, values: dict[str, Any]) -> str | None:
        """The body as the template writes it (JSON, if the template is right); None without one."""
        return None if self._template is None else self._template.render(values)


# What a pull request's URL and body templates may use besides ``pull.values``.
# since/until are ISO 8601 UTC times (2026-11-01T00:00:00Z), *_unix the same in Unix seconds.
PULL_TEMPLATE_FIELDS = frozenset({"cursor", "since", "until", "since_unix", "until_unix"})


def _url_value(value: Any) -> str:
    """Every value a URL template writes is one quoted URL component; None writes nothing."""
    return "" if value is None else quote(str(value), safe="")


# Pull URL templates: sandboxed like the bodies, and every value quoted, so that an id from a
# webhook cannot add a path segment or a query parameter to the request.
PULL_URLS = ImmutableSandboxedEnvironment(undefined=StrictUndefined, autoescape=False, finalize=_url_value)


def _pull_expression(expression: str, setting: str) -> str:
    """``expression`` if it is JMESPath; a ValueError naming ``setting`` otherwise."""
    try:
        jmespath.compile(expression)
    except JMESPathError as error:
        raise ValueError(f"{setting}: not a JMESPath expression: {error}") from None
    return expression


def _pull_template(environment: ImmutableSandboxedEnvironment, source: str, known: frozenset[str],
                   setting: str) -> str:
    """``source`` if it is a Jinja2 template that uses only ``known`` variables."""
    try:
        unknown = sorted(meta.find_undeclared_variables(environment.parse(source)) - known)
    except TemplateSyntaxError as error:
        raise ValueError(f"{setting}: not a Jinja2 template: {error.message} (line {error.lineno})") from None
    if unknown:
        raise ValueError(f"{setting}: unknown variable {unknown[0]} (known: {', '.join(sorted(known)) or 'none'})")
    return source


def _pull_names(info: ValidationInfo) -> frozenset[str]:
    """The variables a pull template may use; ``values`` is validated first (it is declared first)."""
    return PULL_TEMPLATE_FIELDS | frozenset(info.data.get("values", {}))


class PullCursor(Section):
    """How a sync API says where the next page starts (and that there is one)."""

    # JMESPath over the answer: the cursor the next request sends (as the template value ``cursor``).
    next: str
    # JMESPath over the answer: true while there are more pages; None: while ``next`` finds a cursor.
    has_more: str | None = None
    # A template over pull.values naming the cursor's stream (one per account or inbox, say).
    stream: str = "default"

    @field_validator("next", "has_more")
    @classmethod
    def _expression(cls, expression: str | None, info: ValidationInfo) -> str | None:
        return None if expression is None else _pull_expression(expression, info.field_name)


class PullSettings(Section):
    """The request that fetches the messages a webhook only announces (ids or a bare notice).

    The answer's messages are read with the helpdesk's ``mapping``, one item at a time.
    """

    # The webhook values the templates use, by name: JMESPath over the webhook's payload.
    values: dict[str, str] = {}
    # A JMESPath condition a webhook must meet to be a notice to pull for; None: every webhook.
    # Other webhooks are read with the mapping, as without a pull.
    when: str | None = None
    method: OutboundMethod = "GET"
    # A Jinja2 template over pull.values and PULL_TEMPLATE_FIELDS; each value it writes is URL-quoted.
    url: str
    auth: OutboundAuth | None = None
    # A Jinja2 template (sandboxed) that renders the JSON body; None: no body.
    body: str | None = None
    # JMESPath over the answer: the list of messages.
    messages: str
    # For sync APIs and paged answers; None: one request per notice.
    cursor: PullCursor | None = None
    # The most requests one pull makes, so that an API that always says "more" cannot hold a worker.
    max_pages: int = Field(100, ge=1)
    _url: Any = PrivateAttr(None)
    _body: Any = PrivateAttr(None)
    _values: dict[str, Any] = PrivateAttr(default_factory=dict)
    _when: Any = PrivateAttr(None)
    _messages: Any = PrivateAttr(None)
    _next: Any = PrivateAttr(None)
    _has_more: Any = PrivateAttr(None)
    _stream: Any = PrivateAttr(None)

    @field_validator("values")
    @classmethod
    def _value_paths(cls, values: dict[str, str]) -> dict[str, str]:
        clash = sorted(PULL_TEMPLATE_FIELDS & set(values))
        if clash:
            raise ValueError(f"{clash[0]} is set by the pull itself; name the value otherwise")
        for name, path in values.items():
            _pull_expression(path, name)
        return values

    @field_validator("when", "messages")
    @classmethod
    def _expression(cls, expression: str | None, info: ValidationInfo) -> str | None:
        return None if expression is None else _pull_expression(expression, info.field_name)

    @field_validator("url")
    @classmethod
    def _url_template(cls, url: str, info: ValidationInfo) -> str:
        return _pull_template(PULL_URLS, url, _pull_names(info), "url")

    @field_validator("body")
    @classmethod
    def _body_template(cls, body: str | None, info: ValidationInfo) -> str | None:
        return None if body is None else _pull_template(OUTBOUND_TEMPLATES, body, _pull_names(info), "body")

    @field_validator("cursor")
    @classmethod
    def _stream_template(cls, cursor: PullCursor | None, info: ValidationInfo) -> PullCursor | None:
        if cursor is not None:
            _pull_template(OUTBOUND_TEMPLATES, cursor.stream, frozenset(info.data.get("values", {})), "stream")
        return cursor

    def model_post_init(self, _context: Any) -> None:
        self._url = PULL_URLS.from_string(self.url)
        self._body = None if self.body is None else OUTBOUND_TEMPLATES.from_string(self.body)
        self._values = {name: jmespath.compile(path) for name, path in self.values.items()}
        self._when = None if self.when is None else jmespath.compile(self.when)
        self._messages = jmespath.compile(self.messages)
        if self.cursor is not None:
            self._next = jmespath.compile(self.cursor.next)
            self._has_more = None if self.cursor.has_more is None else jmespath.compile(self.cursor.has_more)
            self._stream = OUTBOUND_TEMPLATES.from_string(self.cursor.stream)

    def is_notice(self, payload: Any) -> bool:
        return self._when is None or bool(self._when.search(payload))

    def notice_values(self, payload: Any) -> dict[str, Any]:
        """Each of ``values`` found in a webhook's payload (None where it is absent)."""
        return {name: path.search(payload) for name, path in self._values.items()}

    def template_values(self, notice: dict[str, Any] | None = None, **fields: Any) -> dict[str, Any]:
        """Every name a template may use: the notice's values (None without a notice), then
        the PULL_TEMPLATE_FIELDS given (None for the others)."""
        return {name: None for name in self.values} | (notice or {}) | dict.fromkeys(PULL_TEMPLATE_FIELDS) | fields

    def url_for(self, values: dict[str, Any]) -> str:
        return self._url.render(values)

    def body_for(self, values: dict[str, Any]) -> str | None:
        return None if self._body is None else self._body.render(values)

    def stream_for(self, values: dict[str, Any]) -> str:
        """The stream a notice's cursor is kept under (only with ``cursor``)."""
        return self._stream.render(values)

    def messages_in(self, answer: Any) -> Any:
        return self._messages.search(answer)

    def next_cursor(self, answer: Any) -> tuple[Any, bool]:
        """The next page's cursor in an answer, and whether there is a next page."""
        found = self._next.search(answer)
        more = self._has_more.search(answer) if self._has_more is not None else found not in (None, "")
        return found, bool(more)


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
    # For webhooks that carry only ids or a notice: the request that fetches the messages.
    pull: PullSettings | None = None

    @field_validator("secret")
    @classmethod
    def _not_empty(cls, secret: SecretStr) -> SecretStr:
        if not secret.get_secret_value():
            raise ValueError("secret: empty (unsigned webhooks are refused, and alert_url is signed with it)")
        return secret

    @field_validator("signature_header")
    @classmethod
    def _header_name(cls, name: str) -> str:
        return _check_header(name, "signature_header")

    @field_validator("alert_url")
    @classmethod
    def _alert_url(cls, url: str | None) -> str | None:
        # Used exactly as written: no placeholders are filled in.
        return None if url is None else _http_address(url, "alert_url")

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
    wecom_kf: WecomKfSettings = WecomKfSettings()
    zammad: ZammadSettings = ZammadSettings()
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
    # slower than `slow_first_response_hours`), and with at least one reason (a worrying fact
    # that raised the risk): a risk that purchases alone drive, or that nothing the agent can
    # read explains, is not something an agent on the ticket can act on. Such scores are still
    # stored and shown by the read API. False: every tier the customer rises to is posted.
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


# An origin as a browser writes it, e.g. https://support.example.com or http://localhost:3000;
# a leading "*." (CSP's host wildcard) is allowed in frame_ancestors, never a path.
_ORIGIN = re.compile(r"^https?://(\*\.)?[A-Za-z0-9.-]+(:\d{1,5})?$")
MIN_BADGE_SECRET_LENGTH = 32


class BadgeSettings(Section):
    """The agent's risk badge (webhook/badge.py): signed links, and which helpdesks may frame it."""

    enabled: bool = False
    # Signs badge links and helpdesk app keys (HMAC-SHA256); its own secret, so that rotating it
    # revokes every badge link and app key and nothing else.
    secret: SecretStr | None = None
    # Helpdesk origins allowed to show the badge in a frame (Content-Security-Policy
    # frame-ancestors), e.g. https://chat.example.com, https://*.zendesk.com.
    frame_ancestors: list[str] = []
    # Origins whose window.postMessage the Chatwoot dashboard app believes (exact, no wildcard).
    chatwoot_origins: list[str] = []
    # How long a link minted by a helpdesk app (POST /badge/link) stays valid.
    link_ttl_seconds: int = Field(3600, ge=60, le=7 * 24 * 3600)
    # How often an open badge asks whether a new score has landed.
    refresh_seconds: int = Field(15, ge=5, le=3600)

    @field_validator("frame_ancestors", "chatwoot_origins")
    @classmethod
    def _origins(cls, origins: list[str], info) -> list[str]:
        for origin in origins:
            if not _ORIGIN.match(origin) or (info.field_name == "chatwoot_origins" and "*" in origin):
                raise ValueError(f"badge.{info.field_name}: {origin!r} is not an origin (scheme://host[:port], "
                                 "no path" + (", no wildcard)" if info.field_name == "chatwoot_origins" else ")"))
        return origins

    @model_validator(mode="after")
    def _secret_when_enabled(self) -> BadgeSettings:
        if not self.enabled:
            return self
        if self.secret is None or len(self.secret.get_secret_value()) < MIN_BADGE_SECRET_LENGTH:
            raise ValueError(f"badge.secret: at least {MIN_BADGE_SECRET_LENGTH} characters when badge.enabled "
                             "(CHURNSIGNAL_BADGE__SECRET, e.g. python -c 'import secrets; print(secrets.token_hex(32))')")
        return self


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
    badge: BadgeSettings = BadgeSettings()
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
