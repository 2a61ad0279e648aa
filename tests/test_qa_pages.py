"""The QA workspace over a real store (SQLite and PostgreSQL): login, every figure's numbers
against the store, the filters, CSV exports, the drill-down, and its refusals."""

import csv
import io
import re
from collections import Counter
from datetime import date, timedelta

import pytest
from pydantic import ValidationError
from sqlalchemy import select, text

from churnsignal.config import Settings
from churnsignal.nlp.complaints import is_complaint, topics
from churnsignal.store import Alert, AlertHandling, Customer, Event, Order, RiskScore, Store, utcnow
from churnsignal.webhook.app import create_app
from churnsignal import rollups


@pytest.fixture
def client(seeded_store, pages_settings):
    return create_app(pages_settings, store=seeded_store).test_client()


def csrf_token(client, path="/login") -> str:
    return re.search(r'name="csrf_token" value="([^"]+)"', client.get(path).text).group(1)


@pytest.fixture
def qa(client, page_users):
    name, (_role, password) = next(iter(page_users.items()))
    answer = client.post("/login", data={"name": name, "password": password, "csrf_token": csrf_token(client)})
    assert answer.status_code == 302
    return client


def stored_complaints(store, settings, **where) -> list[Event]:
    """Every complaint in the store, by nlp.complaints' own test, one turn at a time."""
    with store.session() as session:
        events = session.scalars(select(Event)).all()
    return [e for e in events if is_complaint(e.author, e.negative_prob, settings)
            and all(getattr(e, key) == value for key, value in where.items())]


def in_range(event: Event, since: date, until: date) -> bool:
    return since <= event.created_at.date() <= until


# --- Login ---

def test_pages_send_strangers_to_the_login_and_data_answers_401(client):
    answer = client.get("/qa/?topic=REFUND")
    assert answer.status_code == 302 and answer.headers["Location"].startswith("/login?next=")
    answer = client.get("/qa/data/volume.json")
    assert answer.status_code == 401 and "log in" in answer.json["error"]


def test_a_wrong_password_or_unknown_name_is_refused_alike(client, page_users):
    name = next(iter(page_users))
    for who, password in ((name, "wrong password!"), ("nobody", "wrong password!")):
        answer = client.post("/login", data={"name": who, "password": password, "csrf_token": csrf_token(client)})
        assert answer.status_code == 401
        assert "Wrong name or password" in answer.text
    assert client.get("/qa/data/volume.json").status_code == 401


def test_the_right_password_opens_the_workspace_with_a_hardened_session_cookie(client, page_users):
    name, (role, password) = next(iter(page_users.items()))
    answer = client.post("/login", data={"name": name, "password": password, "csrf_token": csrf_token(client),
                                         "next": "/qa/spikes"})
    assert answer.status_code == 302 and answer.headers["Location"] == "/qa/spikes"
    cookie = answer.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie
    page = client.get("/qa/")
    assert page.status_code == 200 and f"{name} ({role})" in page.text
    assert "frame-ancestors 'none'" in page.headers["Content-Security-Policy"]


def test_login_goes_back_only_to_a_path_on_this_site(client, page_users):
    name, (_role, password) = next(iter(page_users.items()))
    answer = client.post("/login", data={"name": name, "password": password, "csrf_token": csrf_token(client),
                                         "next": "//evil.example/qa"})
    assert answer.headers["Location"] == "/qa/"


def test_forms_without_the_csrf_token_are_refused(client, page_users):
    name, (_role, password) = next(iter(page_users.items()))
    answer = client.post("/login", data={"name": name, "password": password})
    assert answer.status_code == 400 and "CSRF" in answer.json["error"]


def test_logging_out_ends_the_session(qa):
    qa.post("/logout", data={"csrf_token": csrf_token(qa, "/qa/")})
    assert qa.get("/qa/data/volume.json").status_code == 401


def test_a_removed_user_is_logged_out_at_once(qa):
    qa.application.extensions["churnsignal"].settings.qa.users.pop(0)
    assert qa.get("/qa/data/volume.json").status_code == 401


def test_secure_cookies_by_default(seeded_store, pages_settings, page_users):
    client = create_app(pages_settings.model_copy(update={"qa": pages_settings.qa.model_copy(
        update={"secure_cookies": True})}), store=seeded_store).test_client()
    name, (_role, password) = next(iter(page_users.items()))
    answer = client.post("/login", data={"name": name, "password": password, "csrf_token": csrf_token(client)})
    assert "Secure" in answer.headers["Set-Cookie"]


def test_a_trusted_proxy_header_names_the_user(seeded_store, tmp_path):
    settings = Settings(service={"data_dir": str(tmp_path)}, identity={"pepper": "p" * 64},
                        qa={"trusted_header": "X-Remote-User", "secret_key": "k" * 40})
    client = create_app(settings, store=seeded_store).test_client()
    assert client.get("/qa/data/volume.json").status_code == 401
    assert client.get("/qa/data/volume.json", headers={"X-Remote-User": "li.lei"}).status_code == 200
    assert "li.lei (qa)" in client.get("/qa/", headers={"X-Remote-User": "li.lei"}).text


def test_the_workspace_needs_a_way_in_and_a_secret_key(seeded_store, tmp_path):
    settings = Settings(service={"data_dir": str(tmp_path)}, identity={"pepper": "p" * 64})
    answer = create_app(settings, store=seeded_store).test_client().get("/qa/")
    assert answer.status_code == 403 and "CHURNSIGNAL_QA__USERS" in answer.json["error"]
    with pytest.raises(ValidationError, match="qa.secret_key"):
        Settings(qa={"trusted_header": "X-Remote-User"})
    with pytest.raises(ValidationError, match="not an argon2 hash"):
        Settings(qa={"users": [{"name": "a", "password_hash": "plain"}], "secret_key": "k" * 40})


# --- The figures equal the store ---

def test_volume_counts_each_topic_of_each_complaint_per_day(qa, seeded_store, pages_settings):
    figure = qa.get("/qa/data/volume.json").json
    since, until = date.fromisoformat(figure["chart"]["buckets"][0]), date.fromisoformat(figure["chart"]["buckets"][-1])
    expected = Counter()
    for event in stored_complaints(seeded_store, pages_settings):
        if in_range(event, since, until):
            for topic in topics(event.entities) or ("OTHER",):
                expected[event.created_at.date().isoformat(), topic] += 1
    assert {(b, t): n for b, t, n in figure["rows"] if n} == dict(expected)
    assert until == utcnow().date() and (until - since).days == 27
    series = {s["name"]: s["data"] for s in figure["chart"]["series"]}
    assert sum(map(sum, series.values())) == sum(expected.values())


def test_agent_turns_are_never_complaints(qa, seeded_store):
    with seeded_store.session() as session:
        agent = session.scalars(select(Event).where(Event.author == "agent", Event.negative_prob > 0.8)).first()
    assert agent is not None
    since = utcnow().date() - timedelta(days=45)
    texts = {row[-1] for row in qa.get(f"/qa/data/messages.json?since={since}").json["rows"]}
    assert texts and agent.text not in texts


def test_the_database_draws_the_complaint_line_where_is_complaint_does(qa, seeded_store, pages_settings):
    floor = pages_settings.sentiment.neutral_high
    probabilities = [floor - 1e-9, floor, floor + 1e-9, 1.0, float("nan")]
    with seeded_store.session() as session:
        for number, probability in enumerate(probabilities):
            session.add(Event(delivery_id=1, source="edge", external_id=f"edge{number}", ticket_id="e", customer_id="c1",
                              author="customer", channel="chat", text=f"edge {number}", created_at=utcnow(),
                              received_at=utcnow(), status="analysed", negative_prob=probability, entities={}))
    shown = qa.get("/qa/data/messages.json?source=edge").json["rows"]
    expected = [p for p in probabilities if is_complaint("customer", p, pages_settings)]
    assert len(shown) == len(expected) == 3


def test_weekly_buckets_start_on_monday_and_add_up_to_the_days(qa):
    days = qa.get("/qa/data/volume.json?since=2026-01-05&until=2026-02-01").json
    weeks = qa.get("/qa/data/volume.json?since=2026-01-05&until=2026-02-01&by=week").json
    assert weeks["chart"]["buckets"] == ["2026-01-05", "2026-01-12", "2026-01-19", "2026-01-26"]
    assert sum(n for *_, n in weeks["rows"]) == sum(n for *_, n in days["rows"])


def test_every_filter_narrows_every_figure(qa, seeded_store, pages_settings):
    today = utcnow().date().isoformat()
    since = utcnow().date() - timedelta(days=27)
    with seeded_store.session() as session:
        red = set(session.scalars(select(Customer.customer_id).where(Customer.tier == "red")))
    complaints = [e for e in stored_complaints(seeded_store, pages_settings) if in_range(e, since, utcnow().date())]
    cases = {
        "source=chatwoot": [e for e in complaints if e.source == "chatwoot"],
        "channel=email": [e for e in complaints if e.channel == "email"],
        "topic=REFUND": [e for e in complaints if "REFUND" in topics(e.entities)],
        "tier=red": [e for e in complaints if e.customer_id in red],
    }
    for query, expected in cases.items():
        topic_filter = query.removeprefix("topic=") if query.startswith("topic=") else None
        mentions = sum(len([t for t in (topics(e.entities) or ("OTHER",)) if topic_filter in (None, t)])
                       for e in expected)
        volume = qa.get(f"/qa/data/volume.json?{query}&until={today}").json
        assert sum(n for *_, n in volume["rows"]) == mentions, query
        heat = qa.get(f"/qa/data/heatmap-source.json?{query}").json
        assert sum(n for *_, n in heat["rows"]) == mentions, query
        share = qa.get(f"/qa/data/negative-share.json?{query}").json
        assert sum(row[2] for row in share["rows"]) == len(expected), query
        messages = qa.get(f"/qa/data/messages.json?{query}").json
        assert len(messages["rows"]) == len(expected), query


def tier_figures_from_events(store, settings, tier: str, since: date, until: date) -> dict[str, dict]:
    """Volume, negative share and heat maps of ``tier``'s customers (their latest tier), counted one event at a time."""
    with store.session() as session:
        at_tier = set(session.scalars(select(Customer.customer_id).where(Customer.tier == tier)))
        events = [e for e in session.scalars(select(Event)) if e.customer_id in at_tier and in_range(e, since, until)]
    turns = Counter(e.created_at.date() for e in events if e.author == "customer" and e.negative_prob is not None)
    complaints = [e for e in events if is_complaint(e.author, e.negative_prob, settings)]
    mentions = [(e, topic) for e in complaints for topic in topics(e.entities) or ("OTHER",)]
    return {"volume": Counter((e.created_at.date(), topic) for e, topic in mentions),
            "turns": turns, "complaints": Counter(e.created_at.date() for e in complaints),
            "source": Counter((topic, e.source) for e, topic in mentions),
            "channel": Counter((topic, e.channel) for e, topic in mentions),
            "category": Counter((topic, category_at(store, e)) for e, topic in mentions)}


@pytest.mark.parametrize("tier", ["red", "yellow", "blue"])
def test_under_a_tier_every_trend_figure_equals_a_direct_count_of_its_customers_events(qa, seeded_store,
                                                                                     pages_settings, tier):
    until, since = utcnow().date(), utcnow().date() - timedelta(days=39)
    query = f"tier={tier}&since={since}&until={until}"
    expected = tier_figures_from_events(seeded_store, pages_settings, tier, since, until)
    volume = qa.get(f"/qa/data/volume.json?{query}").json
    assert {(date.fromisoformat(d), t): n for d, t, n in volume["rows"] if n} == expected["volume"]
    share = qa.get(f"/qa/data/negative-share.json?{query}").json
    assert {date.fromisoformat(d): (turns, n) for d, turns, n, _share in share["rows"] if turns} == {
        day: (turns, expected["complaints"][day]) for day, turns in expected["turns"].items()}
    for across in ("source", "channel", "category"):
        heat = qa.get(f"/qa/data/heatmap-{across}.json?{query}").json
        assert {(t, c): n for t, c, n in heat["rows"] if n} == expected[across], across
    assert {volume["from"], share["from"], heat["from"]} == {"customer_rollups"}
    assert sum(expected["volume"].values()) > 10

    # A customer's tier changes: their messages count under the new one at once, no recount.
    with seeded_store.session() as session:
        moving = session.scalar(select(Customer).where(Customer.tier == tier).limit(1))
        moving.tier = "yellow" if tier != "yellow" else "red"
    after = tier_figures_from_events(seeded_store, pages_settings, tier, since, until)
    assert after["volume"] != expected["volume"]
    volume = qa.get(f"/qa/data/volume.json?{query}").json
    assert {(date.fromisoformat(d), t): n for d, t, n in volume["rows"] if n} == after["volume"]


def category_at(store, event: Event) -> str:
    """The category of the customer's latest order at or before the message, as the heat map reads it."""
    with store.session() as session:
        orders = session.scalars(select(Order).where(Order.customer_id == event.customer_id,
                                                     Order.ordered_at <= event.created_at)).all()
    latest = max(orders, key=lambda o: (o.ordered_at, o.id), default=None)
    return latest.category if latest is not None and latest.category else "-"


def test_the_category_heat_map_reads_what_each_customer_last_bought(qa, seeded_store, pages_settings):
    since = utcnow().date() - timedelta(days=27)
    complaints = [e for e in stored_complaints(seeded_store, pages_settings) if in_range(e, since, utcnow().date())]
    expected = Counter()
    for event in complaints:
        for topic in topics(event.entities) or ("OTHER",):
            expected[topic, category_at(seeded_store, event)] += 1
    figure = qa.get("/qa/data/heatmap-category.json").json
    assert {(t, c): n for t, c, n in figure["rows"] if n} == dict(expected)
    assert {"服饰", "数码", "食品", "-"} <= set(figure["chart"]["columns"])
    digital = [e for e in complaints if category_at(seeded_store, e) == "数码"]
    assert len(qa.get("/qa/data/messages.json?category=数码").json["rows"]) == len(digital) > 0
    x, y = figure["chart"]["columns"].index("数码"), figure["chart"]["topics"].index("LOGISTICS")
    cell = qa.get(figure["chart"]["drill"][y][x])
    assert cell.text.count('class="message"') == expected["LOGISTICS", "数码"]
    with seeded_store.session() as session:
        alerts = session.scalars(select(Alert)).all()
        triggers = {a.id: session.get(Event, session.get(RiskScore, a.score_id).event_id) for a in alerts}
    tiers = qa.get(f"/qa/data/tiers.json?since={utcnow().date() - timedelta(days=45)}&category=数码").json
    assert sum(row[3] for row in tiers["rows"]) == sum(category_at(seeded_store, e) == "数码" for e in triggers.values())


def test_negative_share_divides_complaints_by_the_customer_turns_read(qa, seeded_store, pages_settings):
    figure = qa.get("/qa/data/negative-share.json").json
    with seeded_store.session() as session:
        read = Counter(e.created_at.date().isoformat() for e in session.scalars(
            select(Event).where(Event.author == "customer", Event.negative_prob.is_not(None))))
    for bucket, turns, complaints, share in figure["rows"]:
        assert turns == read[bucket]
        assert share == (round(complaints / turns, 4) if turns else None)


def test_tiers_count_alerts_raised_per_tier(qa, seeded_store):
    figure = qa.get(f"/qa/data/tiers.json?since={utcnow().date() - timedelta(days=45)}").json
    with seeded_store.session() as session:
        expected = Counter((a.created_at.date().isoformat(), a.tier) for a in session.scalars(select(Alert)))
    assert {(b, t): n for b, t, _customers, n in figure["rows"] if n} == dict(expected)


def test_outcomes_count_alerted_customers_handled_and_ordering_again(qa, seeded_store):
    since = utcnow().date() - timedelta(days=45)
    figure = qa.get(f"/qa/data/outcomes.json?since={since}").json
    with seeded_store.session() as session:
        alerts = session.scalars(select(Alert).order_by(Alert.created_at, Alert.id)).all()
        handlings = session.scalars(select(AlertHandling)).all()
        orders = session.scalars(select(Order).where(Order.status == "paid")).all()
    first = {}
    for alert in alerts:
        first.setdefault(alert.customer_id, alert)
    by_alert = {a.id: a for a in alerts}
    handled = {by_alert[h.alert_id].customer_id for h in handlings}
    in_time = {by_alert[h.alert_id].customer_id for h in handlings if h.handled_at <= by_alert[h.alert_id].due_at}
    again = {o.customer_id for o in orders if o.customer_id in first and o.ordered_at > first[o.customer_id].created_at}
    expected = []
    for tier in ("red", "yellow", "blue"):
        customers = {c for c, a in first.items() if a.tier == tier}
        expected.append([tier, len(customers), len(customers & handled), len(customers & in_time),
                         len(customers & again)])
    assert figure["rows"] == expected
    assert sum(row[2] for row in expected) > 0 and sum(row[4] for row in expected) > 0
    assert sum(row[3] for row in expected) < sum(row[2] for row in expected)


def test_the_alerts_page_shows_who_handled_each_alert_and_when(qa, seeded_store):
    since = utcnow().date() - timedelta(days=45)
    rows = qa.get(f"/qa/data/alerts.json?since={since}").json
    with seeded_store.session() as session:
        alerts = session.scalars(select(Alert)).all()
        handled = {h.alert_id: h for h in session.scalars(select(AlertHandling))}
    found = {row[rows["columns"].index("alert_id")]: dict(zip(rows["columns"], row)) for row in rows["rows"]}
    assert set(found) == {a.id for a in alerts}
    for alert in alerts:
        handling = handled.get(alert.id)
        assert found[alert.id]["handled_by"] == (handling.handled_by if handling else None)
        assert found[alert.id]["in_time"] == (handling.handled_at <= alert.due_at if handling else None)
    page = qa.get(f"/qa/alerts?since={since}&tier=red").text
    assert page.count("<td class=\"tier-red\">red</td>") == sum(a.tier == "red" for a in alerts)
    assert "agent.zhang · " in page and "逾期 late" in page


def test_the_drill_down_of_a_cell_lists_exactly_the_messages_counted_in_it(qa):
    figure = qa.get("/qa/data/volume.json").json
    # The latest bucket with messages: just after midnight today's is still empty.
    index = max(i for i, _ in enumerate(figure["chart"]["buckets"]) if any(s["data"][i] for s in figure["chart"]["series"]))
    series = next(s for s in figure["chart"]["series"] if s["data"][index])
    link = figure["chart"]["drill"][series["name"]][index]
    page = qa.get(link)
    assert page.status_code == 200
    assert page.text.count('class="message"') == series["data"][index]


def test_heat_map_cells_link_to_their_topic_and_helpdesk(qa):
    figure = qa.get("/qa/data/heatmap-source.json").json
    x, y, n = max(figure["chart"]["cells"], key=lambda cell: cell[2])
    link = figure["chart"]["drill"][y][x]
    assert f"topic={figure['chart']['topics'][y]}" in link
    assert qa.get(link).text.count('class="message"') == n


def test_the_drill_down_shows_masked_text_sentiment_and_the_ticket_link(qa):
    page = qa.get("/qa/messages?topic=LOGISTICS&source=zendesk").text
    assert '<mark class="pii">[PHONE]</mark>' in page
    assert re.search(r'href="https://shop\.zendesk\.example/agent/tickets/\d+"', page)
    assert "负面 negative 0." in page


def test_the_drill_down_marks_each_stored_entity_with_the_one_highlighter(qa):
    page = qa.get("/qa/messages?topic=LOGISTICS&source=zendesk").text
    shown = page.count('class="message"')
    # Every seeded logistics complaint's span covers 快递: each message marks that word, and only it.
    assert shown and page.count('<mark class="entity entity-LOGISTICS">快递</mark>') == shown
    assert page.count('<mark class="entity') == shown


def test_the_drill_down_marks_exactly_the_spanned_word_and_escapes_the_rest(qa, seeded_store):
    text = "<b>耳机</b>坏了 & 快递<script>alert(1)</script>"
    start = text.index("快递")
    with seeded_store.session() as session:
        session.add(Event(delivery_id=1, source="spans", external_id="spans1", ticket_id="s1", customer_id="c1",
                          author="customer", channel="chat", text=text, created_at=utcnow(), received_at=utcnow(),
                          status="analysed", negative_prob=0.9, entities={"LOGISTICS": 1},
                          entity_spans=[{"start": start, "end": start + 2, "label": "LOGISTICS"},
                                        {"start": 0, "end": 3, "label": 'X" onmouseover="alert(1)'}]))
    page = qa.get("/qa/messages?source=spans").text
    assert ('&lt;b&gt;耳机&lt;/b&gt;坏了 &amp; <mark class="entity entity-LOGISTICS">快递</mark>'
            '&lt;script&gt;alert(1)&lt;/script&gt;') in page
    assert "<script>alert" not in page and "onmouseover" not in page


def test_spike_examples_mark_their_entities(qa):
    assert '<mark class="entity entity-LOGISTICS">快递</mark>' in qa.get("/qa/spikes").text


def test_csv_exports_hold_the_json_rows(qa):
    for figure in ("volume", "negative-share", "heatmap-channel", "heatmap-category", "tiers", "outcomes", "alerts",
                   "spikes", "messages"):
        json_rows = qa.get(f"/qa/data/{figure}.json").json
        answer = qa.get(f"/qa/data/{figure}.csv")
        assert answer.mimetype == "text/csv" and "attachment" in answer.headers["Content-Disposition"]
        rows = list(csv.reader(io.StringIO(answer.text.lstrip("\ufeff"))))
        assert rows[0] == json_rows["columns"]
        assert len(rows) - 1 == len(json_rows["rows"]), figure


def test_csv_cells_never_start_a_formula(qa, seeded_store):
    with seeded_store.session() as session:
        session.add(Event(delivery_id=1, source="zendesk", external_id="formula", ticket_id="9", customer_id="c1",
                          author="customer", channel="chat", text="=HYPERLINK(\"http://x\")", created_at=utcnow(),
                          received_at=utcnow(), status="analysed", negative_prob=0.9, entities={"PRICE": 1}))
    text = qa.get("/qa/data/messages.csv").text
    assert "'=HYPERLINK" in text and "\n=HYPERLINK" not in text.replace(",=", "\n=")


def test_spikes_list_the_logistics_burst_with_examples(qa):
    spikes = qa.get("/qa/data/spikes.json").json["chart"]["spikes"]
    burst = next(s for s in spikes if s["topic"] == "LOGISTICS" and s["count"] >= 8)
    assert burst["rise"] == pytest.approx(burst["count"] - burst["baseline"], abs=0.01)
    assert burst["p_value"] < 0.01 and 1 <= len(burst["examples"]) <= 3
    assert "泊松" in qa.get("/qa/spikes").text


@pytest.mark.parametrize("query, reason", [
    ("since=yesterday", "since: 'yesterday' is not a date"),
    ("since=2026-02-01&until=2026-01-01", "is after until"),
    ("since=2020-01-01&until=2026-01-01", "more than 366 days"),
    ("topic=WEATHER", "topic: 'WEATHER' is not one of"),
    ("tier=purple", "tier: 'purple' is not one of red, yellow, blue"),
    ("by=hour", "by: 'hour' is not one of day, week"),
])
def test_bad_filters_are_a_400_naming_the_parameter(qa, query, reason):
    answer = qa.get(f"/qa/data/volume.json?{query}")
    assert answer.status_code == 400 and reason in answer.json["error"]


def test_an_unknown_figure_is_a_404(qa):
    assert qa.get("/qa/data/weather.json").status_code == 404
    assert qa.get("/qa/data/volume.xml").status_code == 404


def test_the_demo_prints_a_login_that_opens_the_workspace_and_a_badge_link_that_opens(seeded_store, tmp_path):
    from churnsignal.demo import DemoLogin, _settings_from, _write_config, print_pages, riskiest_badge_link
    from churnsignal.webhook.standin import StandIn

    login = DemoLogin.make()
    with StandIn() as standin:
        config, _token = _write_config(tmp_path, standin, tmp_path / "model.zip", qa=login.settings())
    settings = _settings_from(config)
    printed: list[str] = []
    print_pages("http://127.0.0.1:8000", login, riskiest_badge_link(seeded_store, settings), printed.append)
    text = "\n".join(printed)
    name, password = re.search(r"http://127\.0\.0\.1:8000/qa/ +login: (\S+) / (\S+)", text).groups()
    badge_path = re.search(r"risk badge \S+ +http://127\.0\.0\.1:8000(/badge\?\S+)", text).group(1)

    client = create_app(settings, store=seeded_store).test_client()
    answer = client.post("/login", data={"name": name, "password": password, "csrf_token": csrf_token(client)})
    assert answer.status_code == 302 and client.get("/qa/data/volume.json").status_code == 200
    assert login.password not in config.read_text()
    with seeded_store.session() as session:
        riskiest = max(session.scalars(select(Alert)), key=lambda a: (a.churn_prob, a.created_at, a.id))
    badge = create_app(settings, store=seeded_store).test_client().get(badge_path)
    assert badge.status_code == 200 and f"ticket={riskiest.ticket_id}&" in badge_path
    assert 'class="tier ' in badge.text and "预警记录 / Alert history" in badge.text


def test_a_demo_without_alerts_says_there_is_no_badge(store, tmp_path):
    from churnsignal.demo import DemoLogin, print_pages, riskiest_badge_link

    printed: list[str] = []
    settings = Settings(badge={"enabled": True, "secret": "b" * 32})
    print_pages("http://127.0.0.1:8000", DemoLogin.make(), riskiest_badge_link(store, settings), printed.append)
    assert "no alert was raised" in "\n".join(printed)


def test_days_are_counted_in_the_configured_time_zone(seeded_store, pages_settings, page_users):
    from datetime import datetime

    settings = pages_settings.model_copy(update={"qa": pages_settings.qa.model_copy(update={"timezone": "Asia/Shanghai"})})
    evening = datetime(2026, 3, 1, 17, 0)  # UTC: already 1 a.m. on 2 March in Shanghai
    with seeded_store.session() as session:
        session.add(Event(delivery_id=1, source="tz", external_id="tz1", ticket_id="t", customer_id="c1",
                          author="customer", channel="chat", text="太慢了", created_at=evening, received_at=evening,
                          status="analysed", negative_prob=0.9, entities={"LOGISTICS": 1}))
    # Roll-ups counted in UTC days are recounted in the zone's days, as docs/qa.md says to.
    rollups.rebuild(seeded_store, settings)
    client = create_app(settings, store=seeded_store).test_client()
    name, (_role, password) = next(iter(page_users.items()))
    client.post("/login", data={"name": name, "password": password, "csrf_token": csrf_token(client)})
    rows = client.get("/qa/data/volume.json?source=tz&since=2026-03-01&until=2026-03-02&topic=LOGISTICS").json["rows"]
    assert rows == [["2026-03-01", "LOGISTICS", 0], ["2026-03-02", "LOGISTICS", 1]]
    assert client.get("/qa/data/messages.json?source=tz&since=2026-03-01&until=2026-03-01").json["rows"] == []
    with pytest.raises(ValidationError, match="qa.timezone"):
        Settings(qa={"timezone": "Mars/Olympus"})


def test_marking_an_alert_handled_records_who_once(qa, seeded_store, page_users):
    with seeded_store.session() as session:
        handled = set(session.scalars(select(AlertHandling.alert_id)))
        alert_id = session.scalar(select(Alert.id).where(Alert.id.not_in(handled)).limit(1))
    token = csrf_token(qa, "/qa/alerts")
    assert qa.post(f"/qa/alerts/{alert_id}/handled").status_code == 400  # no CSRF token
    for _ in range(2):
        answer = qa.post(f"/qa/alerts/{alert_id}/handled", data={"csrf_token": token, "next": "//evil.example/"})
        assert answer.status_code == 302 and answer.headers["Location"] == "/qa/alerts"
    with seeded_store.session() as session:
        [row] = session.scalars(select(AlertHandling).where(AlertHandling.alert_id == alert_id)).all()
    assert (row.handled_by, row.via) == (next(iter(page_users)), "qa")
    assert qa.post("/qa/alerts/999999/handled", data={"csrf_token": token}).status_code == 404


def test_postgresql_plans_every_query_for_its_values(postgres_url):
    """No statement is prepared: a generic plan for every range made a year's drill-down under a tier 10x slower."""
    store = Store(postgres_url)
    store.upgrade()
    try:
        with store.engine.connect() as connection:
            for days in range(8):
                connection.execute(select(Event.id).where(Event.created_at >= utcnow() - timedelta(days=days)))
            assert connection.execute(text("SELECT count(*) FROM pg_prepared_statements")).scalar() == 0
    finally:
        store.dispose()


def test_pages_say_where_their_figures_come_from(qa):
    assert qa.get("/qa/data/volume.json").json["from"] == "daily_rollups"
    assert qa.get("/qa/data/heatmap-channel.json?tier=red").json["from"] == "customer_rollups"
    assert qa.get("/qa/data/tiers.json").json["from"] == "events"
    assert "sum the daily roll-ups" in qa.get("/qa/").text
    assert "sum the per-customer daily roll-ups" in qa.get("/qa/?tier=red").text
