"""Alembic's environment for Tiddly's shipped models; `migrate.py` runs it (no alembic.ini needed).

The caller passes an open connection in ``config.attributes["connection"]``.
"""
from alembic import context
from alembic.operations.ops import DropIndexOp, DropTableOp, ModifyTableOps

from tiddly.models import Base

config = context.config
connection = config.attributes["connection"]


def _no_index_drops_before_table_drops(_context, _revision, directives) -> None:
    # Dropping a table drops its indexes; dropping one first fails on MySQL when a foreign key uses it.
    for script in directives:
        ops = script.downgrade_ops.ops
        dropped = {op.table_name for op in ops if isinstance(op, DropTableOp)}

        def redundant(op) -> bool:
            if isinstance(op, DropIndexOp):
                return op.table_name in dropped
            return (isinstance(op, ModifyTableOps) and op.table_name in dropped
                    and all(isinstance(inner, DropIndexOp) for inner in op.ops))

        script.downgrade_ops.ops = [op for op in ops if not redundant(op)]


context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    compare_type=True,
    render_as_batch=connection.dialect.name == "sqlite",  # SQLite alters tables by copying them
    process_revision_directives=_no_index_drops_before_table_drops,
)
with context.begin_transaction():
    context.run_migrations()
