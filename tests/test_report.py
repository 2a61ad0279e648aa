"""``churnsignal report``: the QA figures for a period as a digest, and posting it to a group robot."""

import csv
import io
import re
from datetime import timedelta

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from churnsignal.cli import main
from churnsignal.config import get_settings
from churnsignal.nlp.complaints import is_complaint, topics
from churnsignal.store import Event, utcnow


def report(*args: str):
    return CliRunner().invoke(main, ["report", *args])


def complaints_between(store, since, until) -> list[Event]:
    with store.session() as session:
        events = session.scalars(select(Event)).all()
    return [e for e in events if since <= e.created_at.date() <= until
            and is_complaint(e.author, e.negative_prob, get_settings())]


def test_the_markdown_digest_counts_last_weeks_complaints_beside_the_week_before(configured):
    result = report()
    assert result.exit_code == 0, result.output
    today = utcnow().date()
    since, until = today - timedelta(days=7), today - timedelta(days=1)
    now = complaints_between(configured, since, until)
    before = complaints_between(configured, since - timedelta(days=7), since - timedelta(days=1))
    assert f"complaint digest {since} – {until}" in result.output
    assert re.search(rf"\*\*投诉 complaints\*\*: {len(now)} \(上期 previous {len(before)}\b", result.output)
    logistics = sum("LOGISTICS" in topics(e.entities) for e in now)
    assert f"- 物流 logistics: {logistics} (上期 previous" in result.output
    # A complaint that names no topic is counted as one that does not say, not as "other".
    unnamed = sum(not topics(e.entities) for e in now)
    assert unnamed and f"- 未点明主题 topic not named: {unnamed} (上期 previous" in result.output
    # The burst three days ago is a spike, with a masked example.
    assert re.search(r"## 突增 spikes\n- \S+ 物流 logistics: \d+ .*\[PHONE\]", result.output)
    assert "|" not in result.output.split("## 突增")[0], "no Markdown tables: group robots do not render them"


def test_csv_and_html_hold_the_same_figures(configured):
    since = (utcnow() - timedelta(days=10)).date().isoformat()
    until = (utcnow() - timedelta(days=2)).date().isoformat()
    text = report("--since", since, "--until", until, "--format", "csv").output
    sections = dict(re.findall(r"# (\S+)\n(.*?)(?=\n# |\Z)", text, flags=re.S))
    assert set(sections) == {"volume", "negative-share", "heatmap-source", "tiers", "outcomes", "spikes"}
    share = list(csv.DictReader(io.StringIO(sections["negative-share"])))
    expected = complaints_between(configured, utcnow().date() - timedelta(days=10), utcnow().date() - timedelta(days=2))
    assert sum(int(row["complaints"]) for row in share) == len(expected)
    page = report("--since", since, "--until", until, "--format", "html").output
    assert page.startswith("<!doctype html>") and f"<strong>投诉 complaints</strong>: {len(expected)} " in page
    # The burst's example, its entity marked by the pages' one highlighter.
    assert '<mark class="entity entity-LOGISTICS">快递</mark>' in page and '<mark class="pii">[PHONE]</mark>' in page


def test_posting_sends_a_wecom_markdown_message(configured, recorder, tmp_path):
    robot = recorder(headers={"Content-Type": "application/json"})
    result = report("--out", str(tmp_path / "digest.md"), "--post", f"{robot.url}/cgi-bin/webhook/send?key=SECRET")
    assert result.exit_code == 0, result.output
    [(method, path, headers)] = robot.requests
    assert (method, path) == ("POST", "/cgi-bin/webhook/send?key=SECRET")
    assert headers["Content-Type"] == "application/json"
    assert "SECRET" not in result.output
    assert (tmp_path / "digest.md").read_text(encoding="utf-8").startswith("# churnsignal")


def test_a_refused_post_is_a_clear_error_without_the_robots_key(configured, recorder):
    robot = recorder(status=500)
    result = report("--post", f"{robot.url}/send?key=SECRET")
    assert result.exit_code == 1
    assert "could not post the report" in result.output and "SECRET" not in result.output


def test_since_after_until_is_refused(configured):
    result = report("--since", "2026-02-01", "--until", "2026-01-01")
    assert result.exit_code == 2 and "is after --until" in result.output
