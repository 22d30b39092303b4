from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from offpeak.errors import SchemaNotCurrent
from offpeak.state.db import MIGRATIONS, Database, migrate, upgrade
from offpeak.state.models import Base


def head_revision() -> str | None:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return ScriptDirectory.from_config(config).get_current_head()


def test_alembic_head_matches_the_models(db: Database) -> None:
    with db.engine.connect() as connection:
        diffs = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    assert diffs == []


def test_database_is_at_the_head_revision(db: Database) -> None:
    with db.engine.connect() as connection:
        assert MigrationContext.configure(connection).get_current_revision() == head_revision()


def test_migrating_again_is_a_no_op(db: Database) -> None:
    migrate(db.engine)
    with db.engine.connect() as connection:
        assert MigrationContext.configure(connection).get_current_revision() == head_revision()


def test_model_comparison_notices_a_schema_drift(db: Database) -> None:
    # Guards the test above: an index missing from the database must show as a diff.
    with db.engine.begin() as connection:
        connection.exec_driver_sql("DROP INDEX ix_requests_job_id")
    with db.engine.connect() as connection:
        diffs = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    assert [(d[0], d[1].name) for d in diffs] == [("add_index", "ix_requests_job_id")]


def test_an_unmigrated_database_is_refused_naming_the_command(tmp_path: Path) -> None:
    with pytest.raises(SchemaNotCurrent, match="offpeak db upgrade"):
        Database(f"sqlite:///{tmp_path / 'fresh.db'}")


def test_upgrade_makes_it_current(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'fresh.db'}"
    assert upgrade(url) == "sqlite"
    Database(url).dispose()
