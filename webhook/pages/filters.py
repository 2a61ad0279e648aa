"""The filters every QA view honours, read once from the query string.

Days are days in ``qa.timezone`` (a team in China counts from midnight in Shanghai, not in
London); stored times are naive UTC and are converted by ``churnsignal.rollups.day_in`` and
``first_moment``, the one place the worker's roll-ups convert them too. ``until`` is the
last day shown, included. Values that cannot be a filter are a 400 that names the parameter.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from datetime import date, datetime, timedelta
from typing import Literal
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

from werkzeug.datastructures import MultiDict
from werkzeug.exceptions import BadRequest

from churnsignal.config import Settings
from churnsignal.nlp.complaints import TOPICS
from churnsignal.rollups import NO_CATEGORY, NO_TOPIC, day_in, first_moment

DEFAULT_DAYS = 28
MAX_DAYS = 366
Bucket = Literal["day", "week"]


@dataclass(frozen=True)
class Filters:
    since: date
    until: date
    source: str | None = None
    channel: str | None = None
    topic: str | None = None
    tier: str | None = None
    # The product category the customer last bought before the message (NO_CATEGORY: none).
    category: str | None = None
    # Per day or per ISO week (starting on Monday) on the charts over time.
    by: Bucket = "day"
    # The configured qa.timezone: whose days these are. Not a filter a page can change.
    zone: str = "UTC"

    @property
    def start(self) -> datetime:
        """The range's first moment, as the naive UTC the store holds."""
        return self._stored(self.since)

    @property
    def end(self) -> datetime:
        """The first moment after the range, as the naive UTC the store holds."""
        return self._stored(self.until + timedelta(days=1))

    def day(self, stored: datetime) -> date:
        """The day a stored (naive UTC) moment falls on, in the zone."""
        return day_in(self.zone, stored)

    def _stored(self, day: date) -> datetime:
        return first_moment(self.zone, day)

    def days(self) -> list[date]:
        return [self.since + timedelta(days=n) for n in range((self.until - self.since).days + 1)]

    def buckets(self) -> list[date]:
        """The first day of every bucket in the range, in order."""
        return sorted({self.bucket(day) for day in self.days()})

    def bucket(self, moment: date | datetime) -> date:
        """The first day of the bucket of a day, or of a stored moment."""
        day = self.day(moment) if isinstance(moment, datetime) else moment
        return day - timedelta(days=day.weekday()) if self.by == "week" else day

    def cell(self, bucket: date, **narrower: str | None) -> Filters:
        """These filters narrowed to one bucket (clamped to the range) and any other values given."""
        last = bucket + timedelta(days=6 if self.by == "week" else 0)
        return replace(self, since=max(bucket, self.since), until=min(last, self.until), **narrower)

    def query(self) -> str:
        """The filters as a query string, for links that keep them."""
        values = {key: (value.isoformat() if isinstance(value, date) else value)
                  for key, value in asdict(self).items() if value is not None and key != "zone"}
        return urlencode(values)


def parse(args: MultiDict, settings: Settings) -> Filters:
    """The filters in ``args``; the last ``DEFAULT_DAYS`` days, everything, per day when absent."""
    today = today_in(settings.qa.timezone)
    until = _day(args, "until") or today
    since = _day(args, "since") or until - timedelta(days=DEFAULT_DAYS - 1)
    if since > until:
        raise BadRequest(f"since ({since}) is after until ({until})")
    if (until - since).days + 1 > MAX_DAYS:
        raise BadRequest(f"since..until spans more than {MAX_DAYS} days")
    topic = _choice(args, "topic", (*TOPICS, NO_TOPIC))
    tier = _choice(args, "tier", tuple(t.name for t in settings.fusion.tiers))
    by = _choice(args, "by", ("day", "week")) or "day"
    return Filters(since=since, until=until, source=_text(args, "source"), channel=_text(args, "channel"),
                   topic=topic, tier=tier, category=_text(args, "category"), by=by, zone=settings.qa.timezone)


def today_in(zone: str) -> date:
    return datetime.now(ZoneInfo(zone)).date()


def _day(args: MultiDict, name: str) -> date | None:
    value = args.get(name, "").strip()
    if not value:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise BadRequest(f"{name}: {value!r} is not a date (YYYY-MM-DD)") from None


def _choice(args: MultiDict, name: str, allowed: tuple[str, ...]) -> str | None:
    value = args.get(name, "").strip()
    if not value:
        return None
    if value not in allowed:
        raise BadRequest(f"{name}: {value!r} is not one of {', '.join(allowed)}")
    return value


def _text(args: MultiDict, name: str) -> str | None:
    value = args.get(name, "").strip()
    if len(value) > 200:
        raise BadRequest(f"{name}: longer than 200 characters")
    return value or None
