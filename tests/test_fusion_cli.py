"""``churnsignal fusion train / score / evaluate`` from files, as a user runs them."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner

from churnsignal.cli import main
from churnsignal.config import get_settings
from churnsignal.fusion.simulation import cdnow_transactions

AS_OF = "1997-10-01"
COMPLAINTS = ["快递一个星期都没到，客服也不回消息，太差了", "质量太差，申请退款三天没人处理", "再也不在这家买了，去京东买"]
PRAISE = ["很满意，下次还来", "包装很好，送货很快"]


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    """Orders, labels and a few support messages of 300 real CDNOW customers."""
    folder = tmp_path_factory.mktemp("history")
    rows = cdnow_transactions()
    chosen = rows["customer_id"].drop_duplicates().sample(300, random_state=2)
    rows = rows[rows["customer_id"].isin(chosen)].reset_index(drop=True)
    pd.DataFrame({"customer_id": rows["customer_id"], "order_id": rows.index, "ordered_at": rows["date"].dt.date,
                  "amount": rows["amount"]}).to_csv(folder / "orders.csv", index=False)
    later = set(rows.loc[rows["date"] >= AS_OF, "customer_id"])
    pd.DataFrame({"customer_id": chosen, "churned": [int(c not in later) for c in chosen]}).to_csv(
        folder / "labels.csv", index=False)
    with open(folder / "events.jsonl", "w", encoding="utf-8") as out:
        for i, customer in enumerate(chosen[:60]):
            texts = COMPLAINTS if customer not in later else PRAISE
            for j, text in enumerate(texts):
                out.write(json.dumps({"customer_id": customer, "created_at": f"1997-09-{10 + j:02d}T10:00:00",
                                      "text": text, "ticket_id": f"t{i}"}, ensure_ascii=False) + "\n")
    return {"orders": folder / "orders.csv", "labels": folder / "labels.csv", "events": folder / "events.jsonl",
            "folder": folder}


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("CHURNSIGNAL_FUSION__CACHE_DIR", str(tmp_path / "cache"))
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def fusion(*args: str | Path):
    return CliRunner().invoke(main, ["fusion", *map(str, args)])


@pytest.fixture(scope="module")
def model(files) -> Path:
    path = files["folder"] / "model.zip"
    result = fusion("train", "--orders", files["orders"], "--events", files["events"], "--labels", files["labels"],
                    "--as-of", AS_OF, "--out", path, "--target-false-alarm", "0.05")
    assert result.exit_code == 0, result.output
    figures = json.loads(result.stdout)
    assert figures["customers"] == 300 and 0 < figures["oof_auc"] <= 1
    assert "neg_prob_max" in figures["features"] and "complaints" in figures["features"]
    return path


def test_score_writes_one_row_per_customer(files, model: Path, tmp_path: Path) -> None:
    out = tmp_path / "scores.csv"
    result = fusion("score", "--model", model, "--orders", files["orders"], "--events", files["events"],
                    "--as-of", AS_OF, "--out", out)
    assert result.exit_code == 0, result.output
    scores = pd.read_csv(out)
    assert list(scores.columns) == ["customer_id", "churn_prob", "tier", "reasons", "driver", "action"]
    assert len(scores) == 300 and scores["customer_id"].is_unique
    summary = json.loads(result.stdout)
    assert sum(summary["tiers"].values()) == (scores["tier"] != "none").sum()


def test_score_names_messages_from_customers_without_orders(files, model: Path, tmp_path: Path) -> None:
    events = tmp_path / "events.jsonl"
    stranger = {"customer_id": "stranger", "created_at": "1997-09-01", "text": "我的订单呢？"}
    events.write_text(files["events"].read_text(encoding="utf-8") + json.dumps(stranger, ensure_ascii=False) + "\n",
                      encoding="utf-8")
    result = fusion("score", "--model", model, "--orders", files["orders"], "--events", events, "--as-of", AS_OF,
                    "--out", tmp_path / "s.csv")
    assert result.exit_code == 0, result.output
    assert "warning: 1 customer(s) wrote messages but have no order before 1997-10-01" in result.stderr
    assert "stranger" not in pd.read_csv(tmp_path / "s.csv")["customer_id"].tolist()


def test_score_without_events_warns_for_a_text_model(files, model: Path, tmp_path: Path) -> None:
    result = fusion("score", "--model", model, "--orders", files["orders"], "--as-of", AS_OF,
                    "--out", tmp_path / "s.csv")
    assert result.exit_code == 0, result.output
    assert "warning: this model was trained with support events" in result.stderr


def test_evaluate_writes_json_report_and_plots(files, model: Path, tmp_path: Path) -> None:
    out = tmp_path / "report"
    result = fusion("evaluate", "--model", model, "--orders", files["orders"], "--events", files["events"],
                    "--labels", files["labels"], "--as-of", AS_OF, "--out", out)
    assert result.exit_code == 0, result.output
    figures = json.loads(result.stdout)
    assert figures["customers"] == 300 and figures["auc"] > 0.5
    assert "warning: 300 of the 300 labelled customers trained this model" in result.stderr
    assert [t["tier"] for t in figures["tiers"]] == ["red", "yellow", "blue"]
    assert json.loads((out / "metrics.json").read_text())["auc"] == figures["auc"]
    for name in ("report.md", "roc.png", "pr.png", "calibration.png", "tiers.png"):
        assert (out / name).stat().st_size > 0


@pytest.mark.parametrize(("change", "message"), [
    ({"orders": "customer_id,order_id,amount\nc1,o1,3\n"}, "missing column(s) ordered_at"),
    ({"orders": "customer_id,order_id,ordered_at,amount\nc1,o1,1997-01-01,-2\n"}, "column amount: -2 is negative"),
    ({"labels": "customer_id,churned\nnobody,1\n"}, "'nobody' has no orders"),
    ({"events": ""}, "no events"),
    ({"as_of": "someday"}, "--as-of: 'someday'"),
])
def test_bad_input_is_one_clear_message(files, tmp_path: Path, change: dict, message: str) -> None:
    paths = {name: files[name] for name in ("orders", "labels", "events")}
    for name, content in change.items():
        if name != "as_of":
            paths[name] = tmp_path / f"{name}.txt"
            paths[name].write_text(content, encoding="utf-8")
    result = fusion("train", "--orders", paths["orders"], "--events", paths["events"], "--labels", paths["labels"],
                    "--as-of", change.get("as_of", AS_OF), "--out", tmp_path / "m.zip")
    assert result.exit_code == 1
    assert message in result.stderr and "Traceback" not in result.output
    assert not (tmp_path / "m.zip").exists()


def test_a_model_file_that_is_not_one(files, tmp_path: Path) -> None:
    fake = tmp_path / "model.zip"
    fake.write_text("hello")
    result = fusion("score", "--model", fake, "--orders", files["orders"], "--as-of", AS_OF,
                    "--out", tmp_path / "s.csv")
    assert result.exit_code == 1 and "not a churnsignal fusion model" in result.stderr


def test_simulate_writes_files_the_other_commands_read(tmp_path: Path) -> None:
    from churnsignal.fusion.inputs import read_events, read_labels, read_orders

    result = fusion("simulate", "--out", tmp_path, "--customers", "80", "--seed", "3")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    orders = read_orders(Path(summary["orders"]))
    labels = read_labels(Path(summary["labels"]), orders["customer_id"])
    events = read_events(Path(summary["events"]))
    assert summary["customers"] == len(labels) == 80
    assert set(events["customer_id"]) <= set(labels.index)
    assert labels["churned"].mean() == summary["churn_rate"]


def test_evaluate_says_which_labelled_customers_it_cannot_score(files, model: Path, tmp_path: Path) -> None:
    orders = tmp_path / "orders.csv"
    orders.write_text(files["orders"].read_text() + "newcomer,late1,1998-01-05,12.5\n")
    labels = tmp_path / "labels.csv"
    labels.write_text(files["labels"].read_text() + "newcomer,0\n")
    result = fusion("evaluate", "--model", model, "--orders", orders, "--labels", labels, "--as-of", AS_OF,
                    "--out", tmp_path / "report")
    assert result.exit_code == 0, result.output
    assert "warning: 1 labelled customer(s) have no order before 1997-10-01" in result.stderr
    assert json.loads(result.stdout)["customers"] == 300
