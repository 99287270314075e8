"""Alembic environment: migrations run on a connection that peerdesk hands over."""

from alembic import context

from bot.schema import metadata

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations with `peerdesk migrate` (or `peerdesk init`)")

context.configure(
    connection=connection,
    target_metadata=metadata,
    render_as_batch=True,
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
