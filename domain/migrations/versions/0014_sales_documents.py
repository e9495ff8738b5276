"""sales documents: quotes and orders with their lines (those that come from Sales keep
its id, unique), and the connection's sales order integration switches

Revision ID: 0014
Revises: 0013
Create Date: 2026-11-23 19:20:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from domain.base import UTCDateTime

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None

MONEY = sa.Numeric(precision=18, scale=4)


def upgrade() -> None:
    op.create_table(
        "sales_headers",
        sa.Column("document_type", sa.String(10), nullable=False),
        sa.Column("no", sa.String(20), nullable=False),
        sa.Column("customer_no", sa.String(20), nullable=False),
        sa.Column("salesperson_code", sa.String(20), nullable=False),
        sa.Column("order_date", sa.Date(), nullable=True),
        sa.Column("currency_code", sa.String(10), nullable=False),
        sa.Column("status", sa.String(10), nullable=False),
        sa.Column("your_reference", sa.String(100), nullable=False),
        sa.Column("dataverse_id", sa.String(36), nullable=True),
        sa.Column("modified_at", UTCDateTime(timezone=True), nullable=False),
        sa.Column("modified_by", sa.String(50), nullable=False),
        sa.PrimaryKeyConstraint("document_type", "no"),
        sa.UniqueConstraint("document_type", "dataverse_id", name="uq_sales_headers_dataverse"),
    )
    op.create_index("ix_sales_headers_modified_at", "sales_headers", ["modified_at"])
    op.create_table(
        "sales_lines",
        sa.Column("document_type", sa.String(10), nullable=False),
        sa.Column("document_no", sa.String(20), nullable=False),
        sa.Column("line_no", sa.Integer(), nullable=False),
        sa.Column("type", sa.String(20), nullable=False),
        sa.Column("no", sa.String(20), nullable=False),
        sa.Column("description", sa.String(100), nullable=False),
        sa.Column("quantity", MONEY, nullable=False),
        sa.Column("unit_of_measure_code", sa.String(10), nullable=False),
        sa.Column("unit_price", MONEY, nullable=False),
        sa.Column("line_amount", MONEY, nullable=False),
        sa.PrimaryKeyConstraint("document_type", "document_no", "line_no"),
        sa.ForeignKeyConstraint(
            ["document_type", "document_no"],
            ["sales_headers.document_type", "sales_headers.no"],
            ondelete="CASCADE",
        ),
    )
    op.create_table(
        "sales_notes",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("document_type", sa.String(10), nullable=False),
        sa.Column("document_no", sa.String(20), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("created_by", sa.String(50), nullable=False),
        sa.Column("created_at", UTCDateTime(timezone=True), nullable=False),
        sa.Column("dataverse_id", sa.String(36), nullable=True),
        sa.Column("in_dataverse_at", UTCDateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("dataverse_id"),
        sa.ForeignKeyConstraint(
            ["document_type", "document_no"],
            ["sales_headers.document_type", "sales_headers.no"],
            ondelete="CASCADE",
        ),
    )
    for column in ("sales_order_integration", "auto_create_sales_orders", "auto_process_quotes"):
        op.add_column(
            "dataverse_connection",
            sa.Column(column, sa.Boolean(), nullable=False, server_default=sa.false()),
        )


def downgrade() -> None:
    with op.batch_alter_table("dataverse_connection") as batch:
        for column in (
            "auto_process_quotes",
            "auto_create_sales_orders",
            "sales_order_integration",
        ):
            batch.drop_column(column)
    op.drop_table("sales_notes")
    op.drop_table("sales_lines")
    op.drop_index("ix_sales_headers_modified_at", table_name="sales_headers")
    op.drop_table("sales_headers")
