"The SQL store: migrations on SQLite and on a real PostgreSQL server, models and migrations agree, concurrent starts migrate once."
import subprocess, sys
import pytest
from sqlalchemy import text
from dspyopt_nb.store import db


def test_sqlite_store_migrates_idempotently(tmp_path):
    url = f"sqlite:///{tmp_path}/s.db"
    first = db.migrate(url)
    assert db.migrate(url) == first == db.current_revisions(url)
    assert db.schema_drift(url) == []
    with db.get_engine(url).connect() as c:
        assert c.execute(text("pragma journal_mode")).scalar() == "wal"


def test_store_url_default_is_beside_the_runs(monkeypatch, tmp_path):
    monkeypatch.delenv("DSPYOPT_DB_URL", raising=False)
    monkeypatch.setenv("DSPYOPT_RUNS", str(tmp_path / "runs"))
    assert db.store_url() == f"sqlite:///{tmp_path / 'runs' / 'dspyopt.db'}"
    monkeypatch.setenv("DSPYOPT_DB_URL", "postgresql+psycopg://u@h/d")
    assert db.store_url() == "postgresql+psycopg://u@h/d"


def test_two_processes_migrate_one_store_at_once(tmp_path):
    url = f"sqlite:///{tmp_path}/s.db"
    code = f"from dspyopt_nb.store.db import migrate; print(migrate({url!r}))"
    procs = [subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=120) for p in procs]
    assert all(p.returncode == 0 for p in procs), outs
    assert outs[0][0] == outs[1][0]


def test_unreachable_store_names_the_fix():
    with pytest.raises(db.StoreError, match="Fix:"):
        db.migrate("postgresql+psycopg://nobody@127.0.0.1:9/none")


@pytest.mark.slow
def test_postgres_store_migrates_and_matches_the_models(postgres_url):
    assert db.ping(postgres_url)
    revs = db.migrate(postgres_url)
    assert db.migrate(postgres_url) == revs
    assert db.schema_drift(postgres_url) == []
