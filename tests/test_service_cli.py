"""The service's commands: db upgrade, import-orders, worker and serve start-up checks."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
import requests
import yaml
from click.testing import CliRunner
from sqlalchemy import inspect, select

from churnsignal.cli import main
from churnsignal.config import get_settings
from churnsignal.store import Alert, Order, RiskScore, Store


@pytest.fixture(autouse=True)
def service_env(tmp_path: Path, monkeypatch, database_url: str) -> str:
    monkeypatch.setenv("CHURNSIGNAL_SERVICE__DATA_DIR", str(tmp_path))
    monkeypatch.setenv("CHURNSIGNAL_SERVICE__DATABASE_URL", database_url)
    monkeypatch.setenv("CHURNSIGNAL_IDENTITY__PEPPER", "test-pepper")
    get_settings.cache_clear()
    yield database_url
    get_settings.cache_clear()


def churnsignal(*args: str):
    return CliRunner().invoke(main, list(args))


def test_db_upgrade_creates_the_schema_and_can_run_again(service_env: str) -> None:
    for _ in range(2):
        result = churnsignal("db", "upgrade")
        assert result.exit_code == 0, result.output
        assert "up to date" in result.output
    store = Store(service_env)
    assert {"events", "orders", "alerts", "scores", "identities", "alembic_version"} <= set(
        inspect(store.engine).get_table_names())
    store.dispose()


def test_an_unreachable_database_is_one_clear_message(monkeypatch) -> None:
    monkeypatch.setenv("CHURNSIGNAL_SERVICE__DATABASE_URL", "postgresql+psycopg://postgres@127.0.0.1:1/none")
    get_settings.cache_clear()
    result = churnsignal("db", "upgrade")
    assert result.exit_code == 1
    assert "cannot open the database at postgresql+psycopg://postgres@127.0.0.1:1/none" in result.output
    assert "Traceback" not in result.output


def test_import_orders_inserts_then_updates(tmp_path: Path, service_env: str) -> None:
    orders = tmp_path / "orders.csv"
    orders.write_text("customer_id,order_id,ordered_at,amount,status\n"
                      "c1,o1,2026-01-02T10:00:00,99.5,paid\nc1,o2,2026-02-03,12,refunded\n")
    assert churnsignal("import-orders", str(orders)).output.strip() == '{"inserted": 2, "updated": 0}'
    orders.write_text("customer_id,order_id,ordered_at,amount\nc1,o1,2026-01-02T10:00:00,80\n")
    assert churnsignal("import-orders", str(orders)).output.strip() == '{"inserted": 0, "updated": 1}'
    store = Store(service_env)
    with store.session() as session:
        assert session.scalar(select(Order.amount).where(Order.order_id == "o1")) == 80
    store.dispose()


def test_import_orders_names_the_bad_line_and_keeps_nothing(tmp_path: Path, service_env: str) -> None:
    orders = tmp_path / "orders.csv"
    orders.write_text("customer_id,order_id,ordered_at,amount\nc1,o1,2026-01-02,10\nc1,o2,yesterday,-3\n")
    result = churnsignal("import-orders", str(orders))
    assert result.exit_code == 1
    assert "line 3, column ordered_at" in result.output and "line 3, column amount" in result.output
    store = Store(service_env)
    with store.session() as session:
        assert session.scalars(select(Order)).all() == []
    store.dispose()


def test_a_worker_without_a_fusion_model_says_how_to_make_one() -> None:
    result = churnsignal("worker")
    assert result.exit_code == 1
    assert "churnsignal fusion train" in result.output and "CHURNSIGNAL_ALERTS__MODEL_PATH" in result.output


@contextmanager
def serving(tmp_path: Path, workers: int = 2, **env: str) -> Iterator[tuple[str, subprocess.Popen]]:
    """``churnsignal serve`` under gunicorn, once it answers: (base URL, master process)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = os.environ | {"CHURNSIGNAL_SERVICE__BROKER_URL": f"sqla+sqlite:///{tmp_path / 'broker.db'}"} | env
    server = subprocess.Popen([sys.executable, "-m", "churnsignal.cli", "serve", "--bind", f"127.0.0.1:{port}",
                               "--workers", str(workers)], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: answers(base), 60, server)
        yield base, server
    finally:
        server.terminate()
        server.wait(timeout=30)


def answers(base: str) -> bool:
    try:
        requests.get(f"{base}/healthz", timeout=10)
    except requests.ConnectionError:
        return False
    return True


def wait_until(condition, seconds: float, server: subprocess.Popen) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert server.poll() is None and time.monotonic() < deadline, server.stdout.read().decode()
        time.sleep(0.2)


def gunicorn_workers(server: subprocess.Popen) -> set[int]:
    children = Path(f"/proc/{server.pid}/task/{server.pid}/children").read_text().split()
    return {int(pid) for pid in children}


def statuses(base: str, path: str, times: int) -> list[int]:
    return [requests.get(f"{base}{path}", timeout=10).status_code for _ in range(times)]


def test_serve_runs_the_app_under_gunicorn(tmp_path: Path, service_env: str) -> None:
    with serving(tmp_path) as (base, _):
        answer = requests.get(f"{base}/healthz", timeout=10)
        # No fusion model is configured: not healthy, and it says why.
        assert answer.status_code == 503
        health = answer.json()
        assert health["store"] == "ok" and health["broker"] == "ok"
        assert "CHURNSIGNAL_ALERTS__MODEL_PATH" in health["models"]["fusion"]
        # Two gunicorn workers answer in turn; every scrape counts both workers' requests
        # (the one that found the server up, that one, and seven more).
        statuses(base, "/healthz", 7)
        for _ in range(3):
            text = requests.get(f"{base}/metrics", timeout=10).text
            line = next(line for line in text.splitlines()
                        if line.startswith("churnsignal_http_requests_total") and "/healthz" in line)
            assert float(line.rsplit(" ", 1)[1]) == 9.0, line


def test_a_reload_or_a_worker_exit_keeps_serving(tmp_path: Path, service_env: str) -> None:
    # Each gunicorn worker that exits gracefully used to delete the metrics folder they
    # share, and every later request answered 500.
    with serving(tmp_path) as (base, server):
        assert statuses(base, "/metrics", 4) == [200] * 4
        before = gunicorn_workers(server)
        server.send_signal(signal.SIGHUP)  # reload: every worker is replaced
        wait_until(lambda: len(gunicorn_workers(server) - before) == 2, 60, server)
        assert statuses(base, "/metrics", 40) == [200] * 40
        os.kill(next(iter(gunicorn_workers(server))), signal.SIGTERM)  # one worker leaves, as max_requests does
        assert statuses(base, "/metrics", 40) == [200] * 40
        text = requests.get(f"{base}/metrics", timeout=10).text
        assert 'churnsignal_http_requests_total{endpoint="/metrics",method="GET",status="200"}' in text
        metrics_dir = tmp_path / f"prometheus-{server.pid}"
        assert metrics_dir.is_dir()
    assert not metrics_dir.exists()  # the master removes it when it stops


def test_a_chunked_body_over_the_limit_is_413_and_one_within_it_is_read_whole(tmp_path: Path,
                                                                               service_env: str) -> None:
    # A chunked body has no Content-Length: its stream used to stop at the limit and the
    # truncated body was read as if whole.
    with serving(tmp_path, CHURNSIGNAL_HELPDESKS__ZENDESK__SIGNING_SECRET="s",
                 CHURNSIGNAL_SERVICE__MAX_BODY_BYTES="4096") as (base, _):
        def chunks(size: int) -> Iterator[bytes]:
            yield b'{"type": "zen:event-type:ticket.status_changed", "pad": "'
            yield b"x" * size
            yield b'"}'

        over = requests.post(f"{base}/webhooks/zendesk", data=chunks(8000), timeout=10)
        assert over.status_code == 413, over.text
        assert "4096 bytes" in over.json()["error"]
        within = requests.post(f"{base}/webhooks/zendesk", data=chunks(1000), timeout=10)
        assert within.request.headers["Transfer-Encoding"] == "chunked"
        assert within.status_code == 401, within.text  # read whole, then refused for its missing signature


def test_a_memory_cap_needs_a_pool_whose_children_can_be_replaced() -> None:
    result = churnsignal("worker", "--max-memory", "1000")
    assert result.exit_code == 2 and "--pool prefork" in result.output


def test_serve_and_worker_refuse_to_start_without_a_pepper(monkeypatch) -> None:
    # Processes with a time limit: a serve that did start would otherwise never return.
    env = {k: v for k, v in os.environ.items() if k != "CHURNSIGNAL_IDENTITY__PEPPER"}
    for command in (["serve", "--bind", "127.0.0.1:0"], ["worker"]):
        result = subprocess.run([sys.executable, "-m", "churnsignal.cli", *command], env=env, capture_output=True,
                                text=True, timeout=60)
        assert result.returncode == 1, result.stdout + result.stderr
        assert "CHURNSIGNAL_IDENTITY__PEPPER" in result.stderr and "Traceback" not in result.stderr


def test_a_misspelt_setting_is_refused_not_ignored(monkeypatch) -> None:
    monkeypatch.setenv("CHURNSIGNAL_SERVICE__DATABSE_URL", "postgresql+psycopg://db/x")
    get_settings.cache_clear()
    result = churnsignal("db", "upgrade")
    assert result.exit_code == 1
    assert "service.databse_url" in result.output and "Traceback" not in result.output


# ---------------------------------------------------------------- alerts list

def seed_alerts(url: str, now: datetime) -> None:
    """Four alerts on one score, raised 1 h, 5 h, 30 h and 3 days ago."""
    store = Store(url)
    store.upgrade()
    with store.session() as session:
        score = RiskScore(customer_id="c1", scored_at=now, as_of=now, churn_prob=0.9, tier="red", reasons=[],
                          driver="service", action={"zh": "回访", "en": "call back"})
        session.add(score)
        session.flush()
        for hours, status, attempts, error in [
            (1, "open", 2, "GET https://***@x.zendesk.com/api/v2/tickets/T1/comments.json: HTTP 503\n<html>busy"),
            (5, "failed", 1, "PUT https://x.zendesk.com/api/v2/tickets/T5.json: HTTP 301 redirect to "
                             "https://y.zendesk.com/api/v2/tickets/T5.json: outbound calls never follow redirects; "
                             "set the URL to where it points"),
            (30, "delivered", 1, None),
            (72, "failed", 8, "POST https://hooks.example.com/churn: HTTP 500"),
        ]:
            session.add(Alert(idempotency_key=f"k{hours}", customer_id="c1", score_id=score.id, source="zendesk",
                              ticket_id=f"T{hours}", tier="red", churn_prob=0.9, reasons=[], driver="service",
                              action=score.action, created_at=now - timedelta(hours=hours),
                              due_at=now - timedelta(hours=hours - 4), status=status, attempts=attempts,
                              last_error=error))
    store.dispose()


def test_alerts_list_shows_failed_alerts_newest_first_with_their_last_error(service_env: str, monkeypatch) -> None:
    monkeypatch.setenv("COLUMNS", "300")
    seed_alerts(service_env, datetime.now(UTC).replace(tzinfo=None))
    result = churnsignal("alerts", "list", "--status", "failed")
    assert result.exit_code == 0, result.output
    header, newer, older = result.output.splitlines()
    assert header.split()[:7] == ["ID", "CREATED", "(UTC)", "TIER", "STATUS", "ATTEMPTS", "SOURCE"]
    assert newer.split()[3:7] == ["red", "failed", "1", "zendesk"] and "T5" in newer
    assert newer.endswith("HTTP 301 redirect to https://y.zendesk.com/api/v2/tickets/T5.json: outbound calls "
                          "never follow redirects; set the URL to where it points")
    assert "T72" in older and older.endswith("POST https://hooks.example.com/churn: HTTP 500")


def test_alerts_list_since_a_time_or_a_span(service_env: str, monkeypatch) -> None:
    monkeypatch.setenv("COLUMNS", "200")
    now = datetime.now(UTC).replace(tzinfo=None)
    seed_alerts(service_env, now)
    for since in ("2d", "48h", (now - timedelta(hours=48)).isoformat(),
                  (now - timedelta(hours=48)).replace(tzinfo=UTC).astimezone(timezone(timedelta(hours=8))).isoformat()):
        lines = churnsignal("alerts", "list", "--since", since).output.splitlines()[1:]
        assert [line.split()[7] for line in lines] == ["T1", "T5", "T30"], since
    lines = churnsignal("alerts", "list", "--since", "2h", "--status", "open", "--status", "failed").output
    assert [line.split()[7] for line in lines.splitlines()[1:]] == ["T1"]


def test_alerts_list_fits_the_terminal_and_says_when_nothing_matches(service_env: str, monkeypatch) -> None:
    monkeypatch.setenv("COLUMNS", "100")
    seed_alerts(service_env, datetime.now(UTC).replace(tzinfo=None))
    lines = churnsignal("alerts", "list", "--limit", "2").output.splitlines()
    assert len(lines) == 3 and all(len(line) <= 100 for line in lines)
    assert lines[1].endswith("…")  # and its two-line error is on one
    assert churnsignal("alerts", "list", "--status", "resolved").output.strip() == "no alerts"


def test_alerts_list_as_json_lines(service_env: str) -> None:
    seed_alerts(service_env, datetime.now(UTC).replace(tzinfo=None))
    result = churnsignal("alerts", "list", "--status", "open", "--json")
    [alert] = [json.loads(line) for line in result.output.splitlines()]
    assert (alert["ticket_id"], alert["status"], alert["attempts"], alert["source"]) == ("T1", "open", 2, "zendesk")
    assert alert["last_error"].endswith("HTTP 503\n<html>busy") and alert["created_at"].endswith("Z")


@pytest.mark.parametrize(("option", "value"), [("--since", "yesterday"), ("--since", "3w"), ("--status", "lost"),
                                              ("--since", "0001-01-01T00:00:00+14:00"),
                                              ("--limit", "0")])
def test_alerts_list_bad_options_are_usage_errors(option: str, value: str) -> None:
    result = churnsignal("alerts", "list", option, value)
    assert result.exit_code == 2 and "Usage:" in result.output and value in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)


def test_the_demo_generates_a_pepper_of_its_own(tmp_path: Path) -> None:
    from churnsignal.demo import _write_config
    from churnsignal.webhook.standin import StandIn

    with StandIn() as standin:
        (tmp_path / "first").mkdir()
        first, _ = _write_config(tmp_path / "first", standin, tmp_path / "model.zip")
        second, _ = _write_config(tmp_path, standin, tmp_path / "model.zip")
    peppers = [yaml.safe_load(path.read_text())["identity"]["pepper"] for path in (first, second)]
    assert all(len(pepper) >= 32 for pepper in peppers) and peppers[0] != peppers[1]
