"""What a complaint is (nlp/complaints.py), and the reasons an agent reads from complaints.

The sentiment and entity models are replaced by a keyword stand-in: these tests pin what
is done with their output, not what the models read in a sentence.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from churnsignal.config import FusionSettings, Settings
from churnsignal.fusion import text
from churnsignal.fusion.artifact import FusionModel
from churnsignal.fusion.features import TEXT_FEATURES, latest_complaints, text_features
from churnsignal.fusion.reasons import explain
from churnsignal.fusion.scoring import score_details
from churnsignal.fusion.training import feature_settings
from churnsignal.nlp.complaints import TOPICS, is_complaint, topics

AS_OF = pd.Timestamp("2024-07-01")
ANGRY = ("还没到", "气死了", "太差")
TOPIC_WORDS = {"快递": "LOGISTICS", "没到": "LOGISTICS", "京东": "COMPETITOR", "质量": "QUALITY"}
# Reasons that speak of complaints; a calm customer must get none of them.
COMPLAINT_KINDS = {*(f"complaints_{t.lower()}" for t in TOPICS), "complaints", "complaint_spike", "repeat_complaints",
                   "complaints_6m", "unresolved_tickets", "unresolved_days", "awaiting_reply"}


def day(offset: float) -> pd.Timestamp:
    return AS_OF - pd.Timedelta(days=offset)


def keyword_signals(texts: list[str], settings: Settings, contexts: list, reviews: list[bool]) -> list[dict]:
    """Stand-in for the models: angry words read as negative, topic words as entities (context and channel unread)."""
    return [{"negative_prob": 0.95 if any(w in t for w in ANGRY) else 0.1, "negative_word_share": 0.0,
             "labels": {label: 1 for word, label in TOPIC_WORDS.items() if word in t},
             "spans": [{"start": t.index(word), "end": t.index(word) + len(word), "label": label}
                       for word, label in TOPIC_WORDS.items() if word in t]} for t in texts]


@pytest.fixture
def settings(tmp_path: Path, monkeypatch) -> Settings:
    from churnsignal.nlp import analysis

    monkeypatch.setattr(text, "_analyse", keyword_signals)
    monkeypatch.setattr(analysis, "model_versions", lambda settings: {"stand-in": {"version": "1"}})
    return Settings(fusion={"cache_dir": str(tmp_path / "cache")})


def turns(rows: list[tuple]) -> pd.DataFrame:
    """Support events as the fusion model reads them: (customer, days ago, ticket, author, text)."""
    frame = pd.DataFrame(rows, columns=["customer_id", "days_ago", "ticket_id", "author", "text"])
    frame["created_at"] = [day(d) for d in frame.pop("days_ago")]
    return frame.assign(channel="chat", rating=float("nan"))


def features_and_quotes(events: pd.DataFrame, settings: Settings) -> tuple[pd.DataFrame, pd.DataFrame]:
    analysed = text.analyse_events(events, settings)
    customers = pd.Index(events["customer_id"].unique())
    features = text_features(analysed, AS_OF, customers, pd.Series(0.5, index=customers), FusionSettings())
    return features, latest_complaints(analysed, AS_OF)


def pushed_by(features: pd.DataFrame, *kinds: str) -> pd.DataFrame:
    """Contributions as a model could give them: only ``kinds`` raised the risk, the first most."""
    shares = pd.DataFrame(0.0, index=features.index, columns=features.columns)
    for rank, kind in enumerate(kinds):
        shares[kind] = 1 / (rank + 1)
    return shares


@pytest.mark.parametrize(("author", "negative_prob", "expected"), [
    ("customer", 0.95, True), ("customer", 0.35, True), ("customer", 0.34, False), ("customer", None, False),
    ("customer", math.nan, False), ("agent", 0.99, False), ("bot", 0.99, False),
])
def test_a_complaint_is_a_customer_turn_the_sentiment_reads_as_negative(author, negative_prob, expected) -> None:
    assert is_complaint(author, negative_prob, Settings()) is expected


def test_the_negative_test_is_the_sentiment_band_in_the_settings() -> None:
    stricter = Settings(sentiment={"neutral_high": 0.9})
    assert not is_complaint("customer", 0.8, stricter) and is_complaint("customer", 0.9, stricter)


def test_topics_are_what_a_complaint_is_about_once_each() -> None:
    assert topics(["ORDER_ID", "LOGISTICS", "COMPETITOR", "LOGISTICS", "MONEY"]) == ("LOGISTICS", "COMPETITOR")
    assert topics([]) == ()


def test_agent_turns_and_our_own_notes_never_count_as_complaints(settings) -> None:
    note = "【流失风险 red】原因：物流投诉2次：“快递还没到，气死了” (churnsignal alert 7)"
    events = turns([
        ("k", 4, "t1", "customer", "请问我的快递到哪了"),
        ("k", 3, "t1", "agent", "您好，您说快递还没到气死了，我们马上催"),
        ("k", 2, "t1", "bot", note),
        ("k", 1, "t2", "agent", "质量太差的问题已登记"),
    ])
    analysed = text.analyse_events(events, settings)
    assert not analysed["is_complaint"].any()
    assert "bot" not in set(analysed["author"])
    features, quotes = features_and_quotes(events, settings)
    assert features.loc["k", ["complaints", "complaints_logistics", "complaints_quality", "unresolved_tickets",
                              "awaiting_reply"]].eq(0).all()
    assert quotes.empty


def test_two_logistics_complaints_give_the_topic_count_and_a_masked_quote_of_the_latest(settings) -> None:
    events = turns([
        ("c", 6, "t1", "customer", "快递五天了还没到"),
        ("c", 2, "t1", "customer", "等了三天还没到，快递电话13812345678也打不通，气死了"),
        ("c", 1, "t1", "agent", "非常抱歉，已为您催件"),
    ])
    features, quotes = features_and_quotes(events, settings)
    assert features.loc["c", "complaints_logistics"] == 2 and features.loc["c", "complaints"] == 2
    [reason] = explain(pushed_by(features, "complaints_logistics"), features, FusionSettings(),
                       quotes).loc["c", "reason_list"]
    assert reason["kind"] == "complaints_logistics"
    assert reason["zh"] == "物流投诉2次：“等了三天还没到，快递电话[PHONE]…”"
    assert reason["en"] == '2 complaints about delivery: "等了三天还没到，快递电话[PHONE]…"'
    assert "13812345678" not in reason["zh"] + reason["en"]


def test_a_quote_is_cut_short_but_never_inside_a_masked_placeholder(settings) -> None:
    events = turns([("q", 1, None, "customer", "东西质量太差了，麻烦请联系我13812345678")])
    features, quotes = features_and_quotes(events, settings)
    [reason] = explain(pushed_by(features, "complaints_quality"), features, FusionSettings(),
                       quotes).loc["q", "reason_list"]
    assert reason["en"] == '1 complaint about product quality: "东西质量太差了，麻烦请联系我…"'


def test_an_unresolved_complaint_ticket_gives_its_age(settings) -> None:
    events = turns([
        ("u", 10, "t8", "customer", "质量太差"),        # t8: complained, then calm: resolved
        ("u", 8, "t8", "customer", "换货收到了，谢谢"),
        ("u", 5, "t9", "customer", "快递还没到"),       # t9: calm in between, so unresolved since day 3
        ("u", 4, "t9", "customer", "好的我再等等"),
        ("u", 3, "t9", "customer", "还没到，气死了"),
        ("u", 2, "t9", "agent", "已经解决了"),          # an agent's word does not resolve it
        ("u", 1, "t9", "customer", "到底什么时候到？还没到"),
    ])
    features, quotes = features_and_quotes(events, settings)
    assert features.loc["u", "unresolved_tickets"] == 1 and features.loc["u", "unresolved_days"] == 3
    [reason] = explain(pushed_by(features, "unresolved_days"), features, FusionSettings(),
                       quotes).loc["u", "reason_list"]
    assert reason == {"kind": "unresolved_days", "zh": "投诉工单已3天未解决",
                      "en": "complaint ticket unresolved for 3 days"}


def test_a_ticket_the_helpdesk_reports_solved_is_not_unresolved(settings) -> None:
    events = turns([
        ("s", 3, "t9", "customer", "还没到，气死了"),
        ("s", 2, "t9", "agent", "已补发"),
        ("s", 1, "t9", "bot", "Conversation was marked resolved"),   # a status change, as Chatwoot posts it
        ("s", 3, "t7", "customer", "质量太差"),                       # t7: no status known, the old rule
    ]).assign(ticket_status=[None, "pending", "solved", None])
    analysed = text.analyse_events(events, settings)
    # The bot's turn is kept for its status alone: no signal, no complaint.
    [bot] = analysed[analysed["author"] == "bot"].itertuples()
    assert (bot.ticket_status, bot.is_complaint) == ("solved", False) and pd.isna(bot.negative_prob)
    features, _ = features_and_quotes(events, settings)
    assert features.loc["s", "unresolved_tickets"] == 1 and features.loc["s", "unresolved_days"] == 3  # t7 only
    assert features.loc["s", "complaints"] == 2


def test_a_customer_whose_turns_are_all_calm_gets_no_complaint_reasons(settings) -> None:
    events = turns([
        ("calm", 9, "t1", "customer", "快递什么时候到？"),
        ("calm", 8, "t1", "agent", "气死了也没用，明天到"),
        ("calm", 7, "t1", "bot", "原因：物流投诉2次：“还没到，气死了” (churnsignal alert 9)"),
        ("calm", 1, None, "customer", "收到了，质量不错"),
    ])
    features, quotes = features_and_quotes(events, settings)
    kinds = [k for k in TEXT_FEATURES if k in features.columns]
    # As a tree model may: every feature raised the risk.
    why = explain(pushed_by(features, *kinds), features, FusionSettings(), quotes)
    assert not {r["kind"] for r in why.loc["calm", "reason_list"]} & COMPLAINT_KINDS


class LeaningOnComplaints:
    """A stand-in fusion estimator: a customer's logistics complaints alone raise their risk."""

    feature_names_in_ = np.array(["orders_90d", "complaints_logistics", "unresolved_days"])

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        return np.tile([0.2, 0.8], (len(X), 1))

    def contributions(self, X: pd.DataFrame) -> pd.DataFrame:
        return pd.DataFrame({"orders_90d": 0.0, "complaints_logistics": X["complaints_logistics"].clip(upper=1),
                             "unresolved_days": 0.0}, index=X.index)


def test_scoring_carries_the_masked_quote_from_the_events_to_the_reason(settings) -> None:
    model = FusionModel(LeaningOnComplaints(), uses_text=True, feature_settings=feature_settings(settings),
                        cutoffs=None)
    orders = pd.DataFrame({"customer_id": ["c", "calm"], "order_id": ["1", "2"], "ordered_at": [day(30), day(30)],
                           "amount": [10.0, 10.0], "category": None, "status": "paid"})
    events = turns([
        ("c", 3, "t1", "customer", "快递还没到"),
        ("c", 2, "t1", "customer", "还没到！电话13812345678"),
        ("c", 1, "t1", "bot", "物流投诉2次：“还没到，气死了” (churnsignal alert 1)"),
        ("calm", 2, None, "customer", "快递到了吗"),
    ])
    scored = score_details(model, orders, events, AS_OF, settings).set_index("customer_id")
    assert scored.loc["c", "reason_list"] == [{"kind": "complaints_logistics", "zh": "物流投诉2次：“还没到！电话[PHONE]”",
                                               "en": '2 complaints about delivery: "还没到！电话[PHONE]"'}]
    assert scored.loc["calm", "reason_list"] == []


def test_a_topic_named_late_in_a_complaint_is_quoted_from_where_it_is_named(settings) -> None:
    events = turns([
        ("f", 2, "t1", "customer", "东西用着还行，就是屏幕有点暗，说明书也看不懂，太差了，快递也慢"),
        # One long clause: the quote starts late enough to show the word, and not inside [PHONE].
        ("g", 2, "t2", "customer", "我的电话13812345678请尽快联系我这个太差的快递"),
    ])
    features, quotes = features_and_quotes(events, settings)
    assert features.loc["f", "complaints_logistics"] == 1 and features.loc["g", "complaints_logistics"] == 1
    why = explain(pushed_by(features, "complaints_logistics"), features, FusionSettings(), quotes)
    assert [r["zh"] for r in why.loc["f", "reason_list"]] == ["物流投诉1次：“…快递也慢”"]
    assert [r["zh"] for r in why.loc["g", "reason_list"]] == ["物流投诉1次：“…请尽快联系我这个太差的快递”"]
    # The count of complaints whatever their topic still quotes a complaint from its beginning.
    assert quotes.loc["f", "latest"].startswith("东西用着还行")


def test_a_topic_read_from_the_turns_before_is_said_to_be_so_in_its_reason(settings, monkeypatch) -> None:
    def read(texts, settings, contexts, reviews):
        signals = keyword_signals(texts, settings, contexts, reviews)
        for text, signal in zip(texts, signals):
            if text == "怎么还没好，气死了":  # names nothing; the dialogue reader gave it delivery
                signal["labels"] = {"LOGISTICS": 1}
        return signals

    monkeypatch.setattr(text, "_analyse", read)
    events = turns([("w", 3, "t1", "customer", "请问我的包裹到哪了"), ("w", 2, "t1", "customer", "怎么还没好，气死了"),
                    ("n", 2, "t2", "customer", "快递还没到，气死了")])
    features, quotes = features_and_quotes(events, settings)
    why = explain(pushed_by(features, "complaints_logistics"), features, FusionSettings(), quotes)
    assert why.loc["w", "reason_list"] == [{"kind": "complaints_logistics", "zh": "物流投诉1次（主题见上文）：“怎么还没好，气死了”",
                                            "en": '1 complaint about delivery (topic from the turns before): "怎么还没好，气死了"'}]
    # A complaint whose words name its topic is quoted as before.
    assert [r["zh"] for r in why.loc["n", "reason_list"]] == ["物流投诉1次：“快递还没到，气死了”"]


def test_a_complaint_stored_without_entity_positions_is_quoted_from_its_beginning(settings) -> None:
    events = turns([("p", 2, "t1", "customer", "东西用着还行，就是屏幕有点暗，说明书也看不懂，太差了，快递也慢"),
                    ("n", 2, "t2", "customer", "东西用着还行，就是屏幕有点暗，说明书也看不懂，太差了，快递也慢")])
    analysed = text.analyse_events(events, settings)
    # Messages analysed before migration 0005 have no positions: null in the store, NaN in a frame.
    analysed["entity_spans"] = pd.Series({0: None, 1: float("nan")})
    quotes = latest_complaints(analysed, AS_OF)
    assert quotes.loc["p", "LOGISTICS"] == quotes.loc["n", "LOGISTICS"] == analysed.loc[0, "masked_text"]
