"""The service's commands: db upgrade, import-orders, worker and serve start-up checks."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
from click.testing import CliRunner
from sqlalchemy import inspect, select

from churnsignal.cli import main
from churnsignal.config import get_settings
from churnsignal.store import Order, Store


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


def test_serve_runs_the_app_under_gunicorn(tmp_path: Path, service_env: str) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = os.environ | {"CHURNSIGNAL_SERVICE__BROKER_URL": f"sqla+sqlite:///{tmp_path / 'broker.db'}"}
    server = subprocess.Popen([sys.executable, "-m", "churnsignal.cli", "serve", "--bind", f"127.0.0.1:{port}",
                               "--workers", "2"], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                answer = requests.get(f"http://127.0.0.1:{port}/healthz", timeout=10)
                break
            except requests.ConnectionError:
                assert server.poll() is None and time.monotonic() < deadline, server.stdout.read().decode()
                time.sleep(0.3)
        # No fusion model is configured: not healthy, and it says why.
        assert answer.status_code == 503
        health = answer.json()
        assert health["store"] == "ok" and health["broker"] == "ok"
        assert "CHURNSIGNAL_ALERTS__MODEL_PATH" in health["models"]["fusion"]
        # Two gunicorn workers answer in turn; every scrape counts both workers' requests.
        for _ in range(7):
            requests.get(f"http://127.0.0.1:{port}/healthz", timeout=10)
        for _ in range(3):
            text = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
            line = next(line for line in text.splitlines()
                        if line.startswith("churnsignal_http_requests_total") and "/healthz" in line)
            assert float(line.rsplit(" ", 1)[1]) == 8.0, line
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_a_misspelt_setting_is_refused_not_ignored(monkeypatch) -> None:
    monkeypatch.setenv("CHURNSIGNAL_SERVICE__DATABSE_URL", "postgresql+psycopg://db/x")
    get_settings.cache_clear()
    result = churnsignal("db", "upgrade")
    assert result.exit_code == 1
    assert "service.databse_url" in result.output and "Traceback" not in result.output
