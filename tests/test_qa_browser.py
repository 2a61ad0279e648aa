"""The QA workspace in a real browser (Debian's Chromium, driven by Playwright): the login,
charts whose drawn numbers equal the store's, a drill-down from a chart cell, a CSV export.

Screenshots go to the ``shots`` folder (tests/conftest.py): docs/images under ``make screenshots``,
for docs/qa.md.
"""

import csv
import io
from collections import Counter
from datetime import timedelta

from playwright.sync_api import expect
from sqlalchemy import select

from churnsignal.nlp.complaints import is_complaint, topics
from churnsignal.store import Event, utcnow


def complaints_in_window(live_app, days: int = 28) -> list[Event]:
    since = utcnow().date() - timedelta(days=days - 1)
    with live_app.store.session() as session:
        events = session.scalars(select(Event)).all()
    return [e for e in events if e.created_at.date() >= since
            and is_complaint(e.author, e.negative_prob, live_app.settings)]


def drawn(page, figure: str):
    """The chart's option as ECharts holds it, once the page has drawn it."""
    page.wait_for_selector(f"#chart-{figure}[data-ready=true]")
    return page.evaluate(f"echarts.getInstanceByDom(document.getElementById('chart-{figure}')).getOption()")


def test_a_wrong_password_is_refused_and_the_right_one_accepted(page, live_app, page_users, shots):
    name, (_role, password) = next(iter(page_users.items()))
    page.goto(f"{live_app.url}/qa/")
    assert page.url.startswith(f"{live_app.url}/login")
    page.fill("input[name=name]", name)
    page.fill("input[name=password]", "not the password")
    page.click("form button[type=submit]")
    assert page.locator("[role=alert]").inner_text() == "用户名或密码错误 Wrong name or password"
    assert page.url.startswith(f"{live_app.url}/login")
    page.screenshot(path=shots / "qa-login.png")
    page.fill("input[name=password]", password)
    page.click("form button[type=submit]")
    page.wait_for_url(f"{live_app.url}/qa/")
    assert f"{name} (qa)" in page.locator(".site-header .user").inner_text()


def test_the_volume_chart_draws_the_stores_complaint_counts(logged_in, live_app, shots):
    errors = []
    logged_in.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
    logged_in.reload()
    option = drawn(logged_in, "volume")
    buckets = option["xAxis"][0]["data"]
    expected = Counter()
    for event in complaints_in_window(live_app):
        for topic in topics(event.entities) or ("OTHER",):
            expected[topic, event.created_at.date().isoformat()] += 1
    for series in option["series"]:
        assert series["data"] == [expected[series["id"], bucket] for bucket in buckets], series["id"]
    assert sum(sum(s["data"]) for s in option["series"]) == sum(expected.values()) > 0
    for figure in ("negative-share", "heatmap-source", "heatmap-channel", "heatmap-category", "tiers", "outcomes"):
        drawn(logged_in, figure)
    # A tooltip is styled by script: the page's Content-Security-Policy must allow it.
    box = logged_in.locator("#chart-volume").bounding_box()
    logged_in.mouse.move(box["x"] + box["width"] - 40, box["y"] + box["height"] - 60)
    logged_in.wait_for_selector("#chart-volume div[style*='position: absolute'] >> text=/\\d{4}-\\d{2}-\\d{2}/")
    assert errors == []
    logged_in.screenshot(path=shots / "qa-trends.png", full_page=True)


def test_clicking_a_heat_map_cell_opens_the_messages_behind_it(logged_in, live_app, shots):
    option = drawn(logged_in, "heatmap-source")
    x, y, count = max(option["series"][0]["data"], key=lambda cell: cell[2])
    topic_code = ["QUALITY", "LOGISTICS", "REFUND", "SERVICE", "PRICE", "COMPETITOR", "OTHER"][y]
    source = option["xAxis"][0]["data"][x]
    point = logged_in.evaluate(
        f"echarts.getInstanceByDom(document.getElementById('chart-heatmap-source'))"
        f".convertToPixel({{seriesIndex: 0}}, [{x}, {y}])")
    box = logged_in.locator("#chart-heatmap-source").bounding_box()
    logged_in.mouse.click(box["x"] + point[0], box["y"] + point[1])
    logged_in.wait_for_url("**/qa/messages?**")
    expected = [e for e in complaints_in_window(live_app)
                if e.source == source and topic_code in (topics(e.entities) or ("OTHER",))]
    assert logged_in.locator(".message").count() == count == len(expected)
    assert logged_in.locator(".scope .count").inner_text() == str(count)
    first = logged_in.locator(".message").first
    assert first.locator(".topic").count() >= 1 and "负面 negative" in first.locator(".sentiment").inner_text()
    # Each stored entity span is marked, visibly, around exactly the words the store's spans cover.
    marks = logged_in.locator(".message mark.entity")
    assert marks.count() == sum(len(e.entity_spans or []) for e in expected) > 0
    assert set(marks.all_inner_texts()) == {e.text[s["start"]:s["end"]] for e in expected for s in e.entity_spans or []}
    expect(marks.first).to_be_visible()
    assert marks.first.evaluate("m => getComputedStyle(m).backgroundColor") not in ("rgba(0, 0, 0, 0)", "transparent")
    logged_in.screenshot(path=shots / "qa-drill-down.png", full_page=True)


def test_a_topic_read_from_the_dialogue_is_marked_as_such(logged_in, live_app):
    logged_in.goto(f"{live_app.url}/qa/messages?topic=REFUND")
    shown = [e for e in complaints_in_window(live_app) if "REFUND" in topics(e.entities)]
    # The seed's delivery complaints that also count as refund ones name no refund word.
    unnamed = [e for e in shown if "REFUND" not in {s["label"] for s in e.entity_spans or []}]
    assert logged_in.locator(".message").count() == len(shown) > len(unnamed) > 0
    chips = logged_in.locator(".message .topic.from-dialogue")
    assert chips.all_inner_texts() == ["退款 refund · 上文 turns before"] * len(unnamed)
    assert chips.first.evaluate("c => getComputedStyle(c).borderTopStyle") == "dashed"
    assert logged_in.locator(".message .topic:not(.from-dialogue)").count() == len(shown)


def test_a_csv_export_downloads_the_stores_numbers(logged_in, live_app, tmp_path):
    drawn(logged_in, "heatmap-channel")
    with logged_in.expect_download() as download:
        logged_in.locator("#chart-heatmap-channel ~ a.export").click()
    path = tmp_path / download.value.suggested_filename
    download.value.save_as(path)
    rows = list(csv.DictReader(io.StringIO(path.read_text(encoding="utf-8-sig"))))
    expected = Counter()
    for event in complaints_in_window(live_app):
        for topic in topics(event.entities) or ("OTHER",):
            expected[topic, event.channel] += 1
    assert {(r["topic"], r["channel"]): int(r["complaints"]) for r in rows if int(r["complaints"])} == dict(expected)
    assert path.name.startswith("churnsignal-heatmap-channel-")


def test_the_spikes_page_lists_the_burst(logged_in, live_app, shots):
    logged_in.goto(f"{live_app.url}/qa/spikes")
    burst_day = (utcnow() - timedelta(days=3)).date().isoformat()
    row = logged_in.locator("table.spikes tbody tr", has_text=burst_day).filter(has_text="物流")
    assert row.count() == 1
    assert row.locator("mark.pii").count() >= 1
    logged_in.screenshot(path=shots / "qa-spikes.png", full_page=True)


def test_the_alerts_page_shows_the_handling_audit(logged_in, live_app, shots):
    since = (utcnow() - timedelta(days=45)).date().isoformat()
    logged_in.goto(f"{live_app.url}/qa/alerts?since={since}")
    rows = logged_in.locator("table.alerts tbody tr")
    assert rows.count() == int(logged_in.locator(".scope .count").inner_text()) > 0
    assert rows.filter(has_text="agent.zhang").count() > 0
    logged_in.screenshot(path=shots / "qa-alerts.png", full_page=True)
    waiting = rows.filter(has=logged_in.locator("button", has_text="Mark handled"))
    before = waiting.count()
    waiting.first.locator("button").click()
    expect(waiting).to_have_count(before - 1)
    expect(rows.filter(has_text="qa-lead · ")).to_have_count(1)
