"""Open the database and bring its schema up to date with the Alembic migrations."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import event
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError
from sqlmodel import create_engine

from mailbot.errors import StoreError
from mailbot.private_files import close_to_others, private_file

MIGRATIONS = Path(__file__).resolve().parent / "migrations"


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    cursor = dbapi_connection.cursor()
    # WAL lets the status command read while the daemon writes; a busy timeout rides out
    # a moment of lock instead of failing the mail.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.close()


def alembic_config(url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def _private_sqlite_file(url: str) -> None:
    """Create the SQLite file 0600 (its folder 0700) before SQLite does it with the umask's
    mode; SQLite gives its -wal and -shm files the database file's mode. (A server database
    such as PostgreSQL keeps its own files.)"""
    try:
        parsed = make_url(url)
    except ArgumentError:  # a malformed URL: create_engine below says so
        return
    database = parsed.database
    if parsed.get_backend_name() != "sqlite" or not database or database == ":memory:" \
            or database.startswith("file:"):
        return
    path = Path(database)
    if not private_file(path):
        for file in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
            close_to_others(file)


def open_database(url: str, migrate: bool = True) -> Engine:
    """An engine on `url` whose schema is at the newest migration."""
    try:
        _private_sqlite_file(url)
    except OSError as exc:
        raise StoreError(f"the database {url} cannot be created: {exc}") from exc
    try:
        engine = create_engine(url)
        if engine.dialect.name == "sqlite":
            event.listen(engine, "connect", _sqlite_pragmas)
        if migrate:
            cfg = alembic_config(url)
            with engine.begin() as connection:
                cfg.attributes["connection"] = connection
                command.upgrade(cfg, "head")
    except SQLAlchemyError as exc:
        raise StoreError(f"the database {url.split('@')[-1]} cannot be opened: "
                         f"{exc.__class__.__name__}: {exc}") from exc
    return engine
