"""The schema comes from the Alembic migrations; times go in and come out aware, in UTC."""

import datetime as dt

import pytest
import sqlalchemy as sa
from alembic import command
from sqlmodel import Session, SQLModel, select

from mailbot.store.db import alembic_config, open_database
from mailbot.store.models import Dossier

pytestmark = pytest.mark.migrations  # each test's database made by the migrations, not copied


def test_migrations_build_the_models_schema(tmp_path):
    url = f"sqlite:///{tmp_path}/m.sqlite"
    engine = open_database(url)
    tables = set(sa.inspect(engine).get_table_names())
    assert tables == set(SQLModel.metadata.tables) | {"alembic_version"}
    for name, table in SQLModel.metadata.tables.items():
        columns = {c["name"] for c in sa.inspect(engine).get_columns(name)}
        assert columns == {c.name for c in table.columns}, name
    command.downgrade(alembic_config(url), "base")
    assert set(sa.inspect(engine).get_table_names()) == {"alembic_version"}
    open_database(url)  # and up again


def test_times_are_aware_utc(tmp_path):
    engine = open_database(f"sqlite:///{tmp_path}/t.sqlite")
    brussels = dt.timezone(dt.timedelta(hours=1))
    at = dt.datetime(2027, 1, 11, 9, 12, tzinfo=brussels)
    with Session(engine) as s:
        s.add(Dossier(reference="EPAY-2027-0001", project_name="p", project_key="p", opened_at=at, updated_at=at))
        s.commit()
    with Session(engine) as s:
        got = s.exec(select(Dossier)).one().opened_at
    assert got == at and got.tzinfo == dt.timezone.utc


def test_naive_times_are_refused(tmp_path):
    engine = open_database(f"sqlite:///{tmp_path}/n.sqlite")
    with Session(engine) as s:
        s.add(Dossier(reference="x", project_name="p", project_key="p", opened_at=dt.datetime(2027, 1, 1),
                      updated_at=dt.datetime(2027, 1, 1)))
        with pytest.raises(sa.exc.StatementError, match="naive"):
            s.commit()
