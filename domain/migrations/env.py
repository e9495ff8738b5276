"""Alembic environment: runs against the engine handed over by domain.migrations."""

from __future__ import annotations

from alembic import context

import domain.interactions.models
import domain.mail.models
import domain.queue.models
import domain.sales.integration
import domain.sales.models  # noqa: F401  (registers the local sales tables)
from domain.base import Base
from domain.db import make_engine

config = context.config
engine = config.attributes.get("engine")
if engine is None:  # plain `alembic` command line: take DATABASE_URL
    from runtime.settings import Settings

    engine = make_engine(Settings.from_env().database_url)

with engine.connect() as connection:
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        render_as_batch=connection.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()
    connection.commit()
