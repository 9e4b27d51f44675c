"""exchange log: records, signed tree heads, cached Merkle nodes, signing keys

Revision ID: 0002_exchange_log
Revises: 0001_registry
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from zistboom.registry.db import UTCDateTime

revision = "0002_exchange_log"
down_revision = "0001_registry"
branch_labels = None
depends_on = None

_SEQ = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "exchange_log_records",
        sa.Column("seq", _SEQ, autoincrement=False, nullable=False),
        sa.Column("request_id", sa.String(length=128), nullable=False),
        sa.Column("client_id", sa.String(length=64), nullable=True),
        sa.Column("time_us", sa.BigInteger(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("record", sa.LargeBinary(), nullable=False),
        sa.Column("leaf_hash", sa.LargeBinary(length=32), nullable=False),
        sa.Column("request_body", sa.LargeBinary(), nullable=True),
        sa.Column("response_body", sa.LargeBinary(), nullable=True),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_exchange_log_records")),
    )
    op.create_index(op.f("ix_exchange_log_records_request_id"), "exchange_log_records", ["request_id"], unique=False)
    op.create_table(
        "exchange_log_tree_heads",
        sa.Column("tree_size", _SEQ, autoincrement=False, nullable=False),
        sa.Column("timestamp_ms", sa.BigInteger(), nullable=False),
        sa.Column("root_hash", sa.LargeBinary(length=32), nullable=False),
        sa.Column("signature", sa.LargeBinary(length=64), nullable=False),
        sa.Column("key_id", sa.String(length=64), nullable=False),
        sa.Column("frontier", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("tree_size", name=op.f("pk_exchange_log_tree_heads")),
    )
    op.create_table(
        "exchange_log_nodes",
        sa.Column("level", sa.SmallInteger(), autoincrement=False, nullable=False),
        sa.Column("idx", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("hash", sa.LargeBinary(length=32), nullable=False),
        sa.PrimaryKeyConstraint("level", "idx", name=op.f("pk_exchange_log_nodes")),
    )
    op.create_table(
        "exchange_log_keys",
        sa.Column("key_id", sa.String(length=64), nullable=False),
        sa.Column("public_key", sa.LargeBinary(length=32), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("key_id", name=op.f("pk_exchange_log_keys")),
    )


def downgrade() -> None:
    op.drop_table("exchange_log_keys")
    op.drop_table("exchange_log_nodes")
    op.drop_table("exchange_log_tree_heads")
    op.drop_index(op.f("ix_exchange_log_records_request_id"), table_name="exchange_log_records")
    op.drop_table("exchange_log_records")
