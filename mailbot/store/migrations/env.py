"""Alembic environment: runs on the connection mailbot passes in (or the configured URL)."""

from alembic import context
from sqlalchemy import create_engine
from sqlmodel import SQLModel

from mailbot.store import models  # noqa: F401  (registers the tables)

target_metadata = SQLModel.metadata


def _include(obj, name, type_, reflected, compare_to):
    # APScheduler keeps its own table in the same database: never ours to drop.
    return not (type_ == "table" and name.startswith("apscheduler"))


def run() -> None:
    connection = context.config.attributes.get("connection")
    if connection is None:
        url = context.config.get_main_option("sqlalchemy.url")
        assert url is not None  # set by store/db.py
        engine = create_engine(url)
        with engine.begin() as connection:
            _run(connection)
    else:
        _run(connection)


def _run(connection) -> None:
    context.configure(connection=connection, target_metadata=target_metadata, include_object=_include,
                      render_as_batch=connection.dialect.name == "sqlite")
    with context.begin_transaction():
        context.run_migrations()


run()
