"""The weekly digest (``churnsignal report``): the QA workspace's figures for one period, each
beside the period before it, as Markdown, HTML or CSV.

The Markdown avoids tables: WeCom group robots, the usual place it is posted, render
headings, bold and lists but not tables.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import timedelta

import requests
from jinja2 import Environment, PackageLoader, select_autoescape

from churnsignal.config import Settings
from churnsignal.store import Store
from churnsignal.webhook.highlight import highlighted
from churnsignal.webhook.pages import trends
from churnsignal.webhook.pages.filters import Filters, today_in
from churnsignal.webhook.pages.trends import CHART_TOPICS, TOPIC_NAMES, Table

# WeCom's group robot takes Markdown messages of at most 4,096 bytes.
WECOM_MARKDOWN_BYTES = 4096


class DigestRefused(RuntimeError):
    """The webhook took the request but refused the message (a WeCom errcode)."""


@dataclass
class Digest:
    filters: Filters
    figures: dict[str, Table]
    # The same length of time just before, for the comparisons.
    previous: dict[str, Table]

    def topics(self) -> list[tuple[str, int, int]]:
        """(topic, complaints, complaints the period before), busiest first."""
        now, before = _per_topic(self.figures["volume"]), _per_topic(self.previous["volume"])
        return sorted(((t, now[t], before[t]) for t in CHART_TOPICS), key=lambda row: (-row[1], row[0]))

    def complaints(self, previous: bool = False) -> tuple[int, int]:
        """(complaints, customer turns read) over the whole period."""
        rows = (self.previous if previous else self.figures)["negative-share"].rows
        return sum(row[2] for row in rows), sum(row[1] for row in rows)

    def helpdesks(self) -> list[tuple[str, int]]:
        totals: dict[str, int] = {}
        for _topic, source, count in self.figures["heatmap-source"].rows:
            totals[source] = totals.get(source, 0) + count
        return sorted(totals.items(), key=lambda item: (-item[1], item[0]))

    def alerts(self) -> list[tuple[str, int]]:
        totals: dict[str, int] = {}
        for _bucket, tier, _customers, alerts in self.figures["tiers"].rows:
            totals[tier] = totals.get(tier, 0) + alerts
        return list(totals.items())


def build(store: Store, filters: Filters, settings: Settings) -> Digest:
    """Every figure of the digest, read from the store."""
    span = (filters.until - filters.since).days + 1
    before = replace(filters, since=filters.since - timedelta(days=span), until=filters.since - timedelta(days=1))
    with store.session() as session:
        figures = {"volume": trends.volume(session, filters, settings),
                   "negative-share": trends.negative_share(session, filters, settings),
                   "heatmap-source": trends.heatmap(session, filters, settings, "source"),
                   "tiers": trends.tiers(session, filters, settings),
                   "outcomes": trends.outcomes(session, filters, settings),
                   "spikes": trends.spike_table(trends.spike_rows(session, filters, settings))}
        previous = {"volume": trends.volume(session, before, settings),
                    "negative-share": trends.negative_share(session, before, settings)}
    return Digest(filters, figures, previous)


def markdown(digest: Digest) -> str:
    f = digest.filters
    complaints, turns = digest.complaints()
    complaints_before, turns_before = digest.complaints(previous=True)
    lines = [f"# churnsignal 投诉周报 complaint digest {f.since} – {f.until}", "",
             f"**投诉 complaints**: {complaints} (上期 previous {complaints_before}{_change(complaints, complaints_before)})",
             f"**负面占比 negative share**: {_share(complaints, turns)} (上期 previous {_share(complaints_before, turns_before)})",
             "", "## 各主题 by topic"]
    lines += [f"- {TOPIC_NAMES[t]}: {n} (上期 previous {b}{_change(n, b)})" for t, n, b in digest.topics() if n or b]
    lines += ["", "## 各帮助台 by helpdesk"] + [f"- {source}: {n}" for source, n in digest.helpdesks()]
    lines += ["", "## 预警 alerts raised"] + [f"- {tier}: {n}" for tier, n in digest.alerts()]
    lines += ["", "## 结果 outcomes"]
    lines += [f"- {tier}: {alerted} 预警客户 alerted, {handled} 已处理 handled ({in_time} 按时 in time), "
              f"{again} 再次下单 ordered again" for tier, alerted, handled, in_time, again in digest.figures["outcomes"].rows]
    spikes = digest.figures["spikes"].chart["spikes"]
    lines += ["", "## 突增 spikes"] + ([
        f"- {s['day']} {TOPIC_NAMES[s['topic']]}: {s['count']} (基线 baseline {s['baseline']}/day, +{s['rise']}, "
        f"p={s['p_value']})" + (f" — 「{s['examples'][0]['text']}」" if s["examples"] else "") for s in spikes]
        or ["- 无 none"])
    return "\n".join(lines) + "\n"


def html(digest: Digest) -> str:
    environment = Environment(loader=PackageLoader("churnsignal.webhook", "templates"),
                              autoescape=select_autoescape(["html"]))
    environment.filters["highlighted"] = highlighted
    complaints, turns = digest.complaints()
    complaints_before, turns_before = digest.complaints(previous=True)
    return environment.get_template("report.html").render(
        digest=digest, topics=TOPIC_NAMES, complaints=complaints, complaints_before=complaints_before,
        share=_share(complaints, turns), share_before=_share(complaints_before, turns_before))


def csv_text(digest: Digest) -> str:
    """Every figure's full table, each after a ``# <figure>`` line."""
    return "\n".join(f"# {name}\n" + table.csv().lstrip("\ufeff") for name, table in digest.figures.items())


def post(url: str, body: str, fmt: str, timeout: float) -> requests.Response:
    """Send the digest to a webhook: Markdown as a WeCom group-robot message, HTML and CSV as they are."""
    if fmt == "md":
        content = body.encode("utf-8")[:WECOM_MARKDOWN_BYTES].decode("utf-8", errors="ignore")
        answer = requests.post(url, json={"msgtype": "markdown", "markdown": {"content": content}}, timeout=timeout)
        answer.raise_for_status()
        # WeCom answers 200 with {"errcode": ..., "errmsg": ...}; anything but errcode 0 is a refusal.
        reply = answer.json() if answer.headers.get("Content-Type", "").startswith("application/json") else {}
        if reply.get("errcode", 0) != 0:
            raise DigestRefused(f"errcode {reply['errcode']}: {reply.get('errmsg', '')}")
        return answer
    else:
        kind = "text/html" if fmt == "html" else "text/csv"
        answer = requests.post(url, data=body.encode("utf-8"), headers={"Content-Type": f"{kind}; charset=utf-8"},
                               timeout=timeout)
    answer.raise_for_status()
    return answer


def _per_topic(volume: Table) -> dict[str, int]:
    totals = dict.fromkeys(CHART_TOPICS, 0)
    for _bucket, topic, count in volume.rows:
        totals[topic] += count
    return totals


def _change(now: int, before: int) -> str:
    if not before:
        return ""
    return f", {'+' if now >= before else ''}{(now - before) / before:.0%}"


def _share(complaints: int, turns: int) -> str:
    return f"{complaints / turns:.1%}" if turns else "—"


def last_week(zone: str) -> Filters:
    """The seven days up to yesterday in ``zone``, the digest's default period."""
    today = today_in(zone)
    return Filters(since=today - timedelta(days=7), until=today - timedelta(days=1), zone=zone)

