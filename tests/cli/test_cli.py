"""The `spoke` command, run as a real subprocess with its environment."""

from __future__ import annotations

import hashlib
import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest
import sqlalchemy as sa
from cryptography.fernet import Fernet
from tests.support.services import REDIS_URL, create_pg_database, drop_pg_database, require_redis

from spoke.config import Settings
from spoke.core.db import make_engine, make_session_factory, session_scope
from spoke.users import imports
from spoke.users.models import User, UserChange, UserImport
from spoke.workspaces import service as workspaces


def spoke(env: dict[str, str], *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [sys.executable, "-m", "spoke", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **env, "COLUMNS": "200"},
    )
    if check:
        assert result.returncode == 0, result.stdout + result.stderr
    return result


@pytest.fixture
def base_env(tmp_path: Path) -> dict[str, str]:
    """The environment of a `spoke` process that needs no database."""
    return {
        "SPOKE_DATA_DIR": str(tmp_path / "data"),
        "SPOKE_SECRET_KEY": Fernet.generate_key().decode(),
        "SPOKE_LOG__LEVEL": "WARNING",
    }


@pytest.fixture(params=["sqlite", "postgresql"])
def env(
    request: pytest.FixtureRequest, base_env: dict[str, str], tmp_path: Path
) -> Iterator[dict[str, str]]:
    """The environment of a `spoke` process, on each database."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'spoke.db'}"
    else:
        url = create_pg_database("spoke_cli")
    yield {**base_env, "SPOKE_DATABASE_URL": url}
    if request.param == "postgresql":
        drop_pg_database(url)


def test_config_show_masks_secrets(base_env: dict[str, str]) -> None:
    env = {
        **base_env,
        "SPOKE_DATABASE_URL": "postgresql://spoke:hunter2@db.internal:5432/spoke",
        "SPOKE_REDIS_URL": "redis://:s3cret@cache:6379/0",
        "SPOKE_JOBS__WORKERS": "7",
    }
    out = spoke(env, "config", "show", "--json").stdout
    assert "hunter2" not in out
    assert "s3cret" not in out
    assert env["SPOKE_SECRET_KEY"] not in out
    assert "postgresql://spoke:********@db.internal:5432/spoke" in out
    assert '"workers": 7' in out
    table = spoke(env, "config", "show").stdout
    assert "SPOKE_JOBS__LEASE_SECONDS" in table
    assert "hunter2" not in table


def test_production_mode_requires_a_secret_key(base_env: dict[str, str]) -> None:
    env = {k: v for k, v in base_env.items() if k != "SPOKE_SECRET_KEY"}
    result = spoke({**env, "SPOKE_MODE": "production"}, "config", "show", check=False)
    assert result.returncode != 0
    assert "SPOKE_SECRET_KEY is required" in result.stdout + result.stderr


def test_embedded_mode_generates_and_keeps_a_key(env: dict[str, str], tmp_path: Path) -> None:
    env = {k: v for k, v in env.items() if k != "SPOKE_SECRET_KEY"}
    spoke(env, "db", "upgrade")
    spoke(env, "workspaces", "create", "A", "--slug", "a", "--owner-email", "a@example.com")
    key_file = tmp_path / "data" / "secret.key"
    first = key_file.read_text()
    assert oct(key_file.stat().st_mode & 0o777) == "0o600"
    spoke(env, "workspaces", "create", "B", "--slug", "b", "--owner-email", "b@example.com")
    assert key_file.read_text() == first


def test_serve_refuses_an_unmigrated_database(env: dict[str, str]) -> None:
    result = spoke(env, "serve", "--port", "1", check=False)
    assert result.returncode == 1
    assert "Refusing to start" in result.stdout + result.stderr
    assert "spoke db upgrade" in result.stdout + result.stderr


def test_workspace_and_key_lifecycle(env: dict[str, str]) -> None:
    spoke(env, "db", "upgrade")
    created = spoke(
        env, "workspaces", "create", "Acme", "--slug", "acme", "--owner-email", "Owner@Acme.example"
    ).stdout
    assert re.search(r"X-Secret-Key:\s+sk_", created)
    listed = spoke(env, "workspaces", "list").stdout
    assert "acme" in listed
    key = spoke(env, "keys", "create", "-w", "acme", "--name", "ci").stdout
    key_id = re.search(r"X-Api-Key:\s+(\S+)", key)
    assert key_id is not None
    keys = spoke(env, "keys", "list", "-w", "acme").stdout
    assert key_id.group(1) in keys
    assert "sk_" not in keys  # secrets are never shown again
    spoke(env, "keys", "revoke", key_id.group(1), "-w", "acme")
    duplicate = spoke(
        env,
        "workspaces",
        "create",
        "X",
        "--slug",
        "acme",
        "--owner-email",
        "x@example.com",
        check=False,
    )
    assert duplicate.returncode == 1
    assert "workspace_slug_taken" in duplicate.stdout + duplicate.stderr


def _csv(path: Path, rows: int) -> Path:
    lines = ["external_id,email,first_name,tags.plan"]
    lines += [f"c{i},c{i}@example.com,Name {i},{'pro' if i % 2 else 'free'}" for i in range(rows)]
    lines.append("bad-row,not-an-email,X,free")
    path.write_text("\n".join(lines) + "\n")
    return path


def test_users_import_resumes_an_interrupted_upload(env: dict[str, str], tmp_path: Path) -> None:
    spoke(env, "db", "upgrade")
    spoke(env, "workspaces", "create", "Imp", "--slug", "imp", "--owner-email", "o@example.com")
    csv_file = _csv(tmp_path / "users.csv", 1_200)
    settings = Settings(
        database_url=env["SPOKE_DATABASE_URL"],  # type: ignore[arg-type]
        data_dir=Path(env["SPOKE_DATA_DIR"]),
    )
    engine = make_engine(settings.database_url)
    sessions = make_session_factory(engine)
    # An earlier `spoke users import` that died after storing the first chunk of the file.
    with session_scope(sessions) as session:
        ws = workspaces.get_workspace_by_slug(session, "imp")
        with csv_file.open(newline="") as fh:
            header = imports.read_header(fh.readline())
            chunks = list(imports.chunk_rows(fh))
        imp = imports.begin(
            session,
            ws.id,
            filename="users.csv",
            sha256=hashlib.sha256(csv_file.read_bytes()).hexdigest(),
            header=header,
            total_rows=sum(len(c.rows) for c in chunks),
            chunk_count=len(chunks),
        )
        imports.store_chunks(session, imp, chunks[:1])
        import_id = imp.id
    out = spoke(env, "users", "import", str(csv_file), "-w", "imp").stdout
    assert f"Resuming import {import_id}" in out
    assert "1200 created" in out
    assert "1 failed" in out
    with session_scope(sessions) as session:
        finished = session.get(UserImport, import_id)
        assert finished is not None
        assert finished.status == "completed"
        assert (
            session.scalar(
                sa.select(sa.func.count()).select_from(User).where(User.workspace_id == ws.id)
            )
            == 1_200
        )
        assert (
            session.scalar(
                sa.select(sa.func.count())
                .select_from(UserChange)
                .where(UserChange.workspace_id == ws.id)
            )
            == 1_200
        )
    # Importing the same file again is a new import that changes nothing.
    again = spoke(env, "users", "import", str(csv_file), "-w", "imp").stdout
    assert "0 created, 0 updated, 1200 unchanged, 1 failed" in again
    engine.dispose()


def test_users_list_add_is_recorded_as_by_hand(env: dict[str, str]) -> None:
    from spoke.users import lists
    from spoke.users import service as users
    from spoke.users.changes import Origin
    from spoke.users.models import ListMembership
    from spoke.users.schemas import UserFields

    spoke(env, "db", "upgrade")
    spoke(env, "workspaces", "create", "Lst", "--slug", "lst", "--owner-email", "o@example.com")
    engine = make_engine(env["SPOKE_DATABASE_URL"])
    sessions = make_session_factory(engine)
    with session_scope(sessions) as session:
        ws = workspaces.get_workspace_by_slug(session, "lst")
        users.write_users(
            session,
            Origin(ws.id, "api", "test"),
            [users.WriteItem("u1", UserFields.model_validate({"email": "u1@example.com"}))],
        )
        list_id = lists.create_list(session, ws.id, name="Moved", description="").id
    out = spoke(env, "users", "list-add", list_id, "u1", "-w", "lst").stdout
    assert "Added 1" in out
    missing = spoke(env, "users", "list-add", list_id, "nobody", "-w", "lst", check=False)
    assert missing.returncode == 1
    assert "nobody" in missing.stdout
    with session_scope(sessions) as session:
        origins = list(session.scalars(sa.select(ListMembership.origin)))
        feed = list(session.scalars(sa.select(UserChange.origin).where(UserChange.kind == "lists")))
    assert origins == ["cli"]
    assert feed == ["cli"]
    assert "cli" in lists.BY_HAND_ORIGINS
    engine.dispose()


def test_serve_refuses_several_processes_without_postgresql_and_redis(tmp_path: Path) -> None:
    env = {
        "SPOKE_DATA_DIR": str(tmp_path / "data"),
        "SPOKE_SECRET_KEY": Fernet.generate_key().decode(),
        "SPOKE_DATABASE_URL": f"sqlite:///{tmp_path / 'spoke.db'}",
    }
    spoke(env, "db", "upgrade")
    result = spoke(env, "serve", "--port", "1", "--processes", "2", check=False)
    assert result.returncode == 2
    assert "need PostgreSQL" in result.stdout + result.stderr


def test_serve_runs_several_processes_on_one_port(tmp_path: Path) -> None:
    """`--processes 2`: two HTTP processes answer on the same port, and stop with the
    supervisor."""
    require_redis()
    url = create_pg_database("spoke_serve")
    port = _free_port()
    env = {
        **os.environ,
        "SPOKE_DATA_DIR": str(tmp_path / "data"),
        "SPOKE_SECRET_KEY": Fernet.generate_key().decode(),
        "SPOKE_DATABASE_URL": url,
        "SPOKE_REDIS_URL": REDIS_URL,
        "SPOKE_LOG__LEVEL": "WARNING",
    }
    try:
        spoke(env, "db", "upgrade")
        server = subprocess.Popen(
            [sys.executable, "-m", "spoke", "serve", "--port", str(port), "--processes", "2"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            children = _wait_for_children(server.pid, 2)
            answered = _healthy(f"http://127.0.0.1:{port}/healthz")
            assert len(children) == 2
            assert answered
        finally:
            server.terminate()
            server.wait(30)
        assert all(not child.is_running() or child.status() == "zombie" for child in children)
    finally:
        drop_pg_database(url)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_for_children(pid: int, count: int, seconds: float = 60) -> list[psutil.Process]:
    """The supervisor's worker processes, once `count` of them have started."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        children = [
            child
            for child in psutil.Process(pid).children()
            # The spawned workers, not multiprocessing's resource tracker beside them.
            if "multiprocessing.spawn" in " ".join(child.cmdline())
        ]
        if len(children) >= count:
            return children
        time.sleep(0.2)
    return []


def _healthy(url: str, seconds: float = 60) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return True
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    return False
