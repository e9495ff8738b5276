"""dynamics 365 sales tables

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23 00:45:50.091534
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from domain.base import UTCDateTime

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "customer_price_groups",
        sa.Column("code", sa.String(length=10), nullable=False),
        sa.Column("description", sa.String(length=100), nullable=False),
        sa.Column("modified_at", UTCDateTime(timezone=True), nullable=False),
        sa.Column("modified_by", sa.String(length=50), nullable=False),
        sa.PrimaryKeyConstraint("code"),
    )
    op.create_index(
        "ix_customer_price_groups_modified_at",
        "customer_price_groups",
        ["modified_at"],
        unique=False,
    )
    op.create_table(
        "customers",
        sa.Column("no", sa.String(length=20), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("email", sa.String(length=80), nullable=False),
        sa.Column("phone_no", sa.String(length=30), nullable=False),
        sa.Column("city", sa.String(length=30), nullable=False),
        sa.Column("salesperson_code", sa.String(length=20), nullable=False),
        sa.Column("customer_price_group", sa.String(length=10), nullable=False),
        sa.Column("credit_limit", sa.Numeric(precision=18, scale=4), nullable=False),
        sa.Column("balance", sa.Numeric(precision=18, scale=4), nullable=False),
        sa.Column("outstanding_orders", sa.Numeric(precision=18, scale=4), nullable=False),
        sa.Column("shipped_not_invoiced", sa.Numeric(precision=18, scale=4), nullable=False),
        sa.Column("total_sales", sa.Numeric(precision=18, scale=4), nullable=False),
        sa.Column("statistics_modified_at", UTCDateTime(timezone=True), nullable=True),
        sa.Column("modified_at", UTCDateTime(timezone=True), nullable=False),
        sa.Column("modified_by", sa.String(length=50), nullable=False),
        sa.PrimaryKeyConstraint("no"),
    )
    op.create_index("ix_customers_modified_at", "customers", ["modified_at"], unique=False)
    op.create_table(
        "dataverse_connection",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("url", sa.String(length=250), nullable=False),
        sa.Column("tenant", sa.String(length=250), nullable=False),
        sa.Column("client_id", sa.String(length=100), nullable=False),
        sa.Column("client_secret_encrypted", sa.Text(), nullable=False),
        sa.Column("authority_host", sa.String(length=250), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("integration_user_id", sa.String(length=36), nullable=True),
        sa.Column("default_price_list_id", sa.String(length=36), nullable=True),
        sa.CheckConstraint("id = 1", name="ck_dataverse_connection_single_row"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "integration_couplings",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("local_table", sa.String(length=60), nullable=False),
        sa.Column("local_id", sa.String(length=60), nullable=False),
        sa.Column("dataverse_table", sa.String(length=60), nullable=False),
        sa.Column("dataverse_id", sa.String(length=36), nullable=False),
        sa.Column("dataverse_etag", sa.String(length=60), nullable=True),
        sa.Column(
            "last_result",
            sa.Enum(
                "Creating",
                "Success",
                "Skipped",
                "Failed",
                "Conflict",
                name="integration_result",
                native_enum=False,
                length=60,
            ),
            nullable=False,
        ),
        sa.Column("last_synced_at", UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("dataverse_table", "dataverse_id", name="uq_coupling_dataverse"),
        sa.UniqueConstraint("local_table", "local_id", "dataverse_table", name="uq_coupling_local"),
    )
    op.create_table(
        "integration_sync_runs",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("mapping_name", sa.String(length=40), nullable=False),
        sa.Column("job_run_id", sa.String(length=60), nullable=False),
        sa.Column("started_at", UTCDateTime(timezone=True), nullable=False),
        sa.Column("finished_at", UTCDateTime(timezone=True), nullable=True),
        sa.Column("inserted", sa.Integer(), nullable=False),
        sa.Column("modified", sa.Integer(), nullable=False),
        sa.Column("deleted", sa.Integer(), nullable=False),
        sa.Column("unchanged", sa.Integer(), nullable=False),
        sa.Column("skipped", sa.Integer(), nullable=False),
        sa.Column("failed", sa.Integer(), nullable=False),
        sa.Column("conflicts", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        "ix_integration_sync_runs_mapping",
        "integration_sync_runs",
        ["mapping_name", "id"],
        unique=False,
    )
    op.create_table(
        "integration_table_mappings",
        sa.Column("name", sa.String(length=40), nullable=False),
        sa.Column("local_table", sa.String(length=60), nullable=False),
        sa.Column("dataverse_table", sa.String(length=60), nullable=False),
        sa.Column(
            "direction",
            sa.Enum(
                "ToIntegrationTable",
                "FromIntegrationTable",
                "Bidirectional",
                name="integration_direction",
                native_enum=False,
                length=60,
            ),
            nullable=False,
        ),
        sa.Column("local_filter", sa.JSON(), nullable=False),
        sa.Column("dataverse_filter", sa.Text(), nullable=False),
        sa.Column("only_coupled", sa.Boolean(), nullable=False),
        sa.Column("dependencies", sa.JSON(), nullable=False),
        sa.Column(
            "update_conflict",
            sa.Enum(
                "None",
                "Send data update to integration table",
                "Get data update from integration table",
                name="integration_update_conflict",
                native_enum=False,
                length=60,
            ),
            nullable=False,
        ),
        sa.Column(
            "deletion_conflict",
            sa.Enum(
                "None",
                "Remove coupling",
                "Restore records",
                name="integration_deletion_conflict",
                native_enum=False,
                length=60,
            ),
            nullable=False,
        ),
        sa.Column("local_watermark", UTCDateTime(timezone=True), nullable=True),
        sa.Column("dataverse_watermark", UTCDateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("name"),
    )
    op.create_table(
        "items",
        sa.Column("no", sa.String(length=20), nullable=False),
        sa.Column("description", sa.String(length=100), nullable=False),
        sa.Column("base_unit_of_measure", sa.String(length=10), nullable=False),
        sa.Column("unit_price", sa.Numeric(precision=18, scale=4), nullable=False),
        sa.Column("blocked", sa.Boolean(), nullable=False),
        sa.Column("modified_at", UTCDateTime(timezone=True), nullable=False),
        sa.Column("modified_by", sa.String(length=50), nullable=False),
        sa.PrimaryKeyConstraint("no"),
    )
    op.create_index("ix_items_modified_at", "items", ["modified_at"], unique=False)
    op.create_table(
        "resources",
        sa.Column("no", sa.String(length=20), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("base_unit_of_measure", sa.String(length=10), nullable=False),
        sa.Column("unit_price", sa.Numeric(precision=18, scale=4), nullable=False),
        sa.Column("blocked", sa.Boolean(), nullable=False),
        sa.Column("modified_at", UTCDateTime(timezone=True), nullable=False),
        sa.Column("modified_by", sa.String(length=50), nullable=False),
        sa.PrimaryKeyConstraint("no"),
    )
    op.create_index("ix_resources_modified_at", "resources", ["modified_at"], unique=False)
    op.create_table(
        "sales_invoice_headers",
        sa.Column("no", sa.String(length=20), nullable=False),
        sa.Column("customer_no", sa.String(length=20), nullable=False),
        sa.Column("salesperson_code", sa.String(length=20), nullable=False),
        sa.Column("customer_price_group", sa.String(length=10), nullable=False),
        sa.Column("posting_date", sa.Date(), nullable=False),
        sa.Column("due_date", sa.Date(), nullable=True),
        sa.Column("currency_code", sa.String(length=10), nullable=False),
        sa.Column("amount", sa.Numeric(precision=18, scale=4), nullable=False),
        sa.Column("amount_including_vat", sa.Numeric(precision=18, scale=4), nullable=False),
        sa.Column("modified_at", UTCDateTime(timezone=True), nullable=False),
        sa.Column("modified_by", sa.String(length=50), nullable=False),
        sa.PrimaryKeyConstraint("no"),
    )
    op.create_index(
        "ix_sales_invoice_headers_modified_at",
        "sales_invoice_headers",
        ["modified_at"],
        unique=False,
    )
    op.create_table(
        "sales_prices",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("sales_type", sa.String(length=30), nullable=False),
        sa.Column("sales_code", sa.String(length=20), nullable=False),
        sa.Column("item_no", sa.String(length=20), nullable=False),
        sa.Column("unit_of_measure_code", sa.String(length=10), nullable=False),
        sa.Column("minimum_quantity", sa.Numeric(precision=18, scale=4), nullable=False),
        sa.Column("unit_price", sa.Numeric(precision=18, scale=4), nullable=False),
        sa.Column("starting_date", sa.Date(), nullable=True),
        sa.Column("ending_date", sa.Date(), nullable=True),
        sa.Column("modified_at", UTCDateTime(timezone=True), nullable=False),
        sa.Column("modified_by", sa.String(length=50), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint(
            "sales_type",
            "sales_code",
            "item_no",
            "unit_of_measure_code",
            "minimum_quantity",
            "starting_date",
            name="uq_sales_prices_key",
        ),
    )
    op.create_index("ix_sales_prices_modified_at", "sales_prices", ["modified_at"], unique=False)
    op.create_table(
        "salespersons",
        sa.Column("code", sa.String(length=20), nullable=False),
        sa.Column("name", sa.String(length=50), nullable=False),
        sa.Column("email", sa.String(length=80), nullable=False),
        sa.Column("modified_at", UTCDateTime(timezone=True), nullable=False),
        sa.Column("modified_by", sa.String(length=50), nullable=False),
        sa.PrimaryKeyConstraint("code"),
    )
    op.create_index("ix_salespersons_modified_at", "salespersons", ["modified_at"], unique=False)
    op.create_table(
        "units_of_measure",
        sa.Column("code", sa.String(length=10), nullable=False),
        sa.Column("description", sa.String(length=50), nullable=False),
        sa.Column("modified_at", UTCDateTime(timezone=True), nullable=False),
        sa.Column("modified_by", sa.String(length=50), nullable=False),
        sa.PrimaryKeyConstraint("code"),
    )
    op.create_index(
        "ix_units_of_measure_modified_at", "units_of_measure", ["modified_at"], unique=False
    )
    op.create_table(
        "integration_field_mappings",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("mapping_name", sa.String(length=40), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("local_field", sa.String(length=60), nullable=False),
        sa.Column("dataverse_attribute", sa.String(length=100), nullable=False),
        sa.Column(
            "direction",
            sa.Enum(
                "ToIntegrationTable",
                "FromIntegrationTable",
                "Bidirectional",
                name="integration_field_direction",
                native_enum=False,
                length=60,
            ),
            nullable=False,
        ),
        sa.Column("constant", sa.String(length=250), nullable=True),
        sa.Column("transform", sa.String(length=100), nullable=True),
        sa.Column("validate", sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(
            ["mapping_name"], ["integration_table_mappings.name"], ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        "ix_integration_field_mappings_mapping",
        "integration_field_mappings",
        ["mapping_name", "position"],
        unique=False,
    )
    op.create_table(
        "integration_pending",
        sa.Column("mapping_name", sa.String(length=40), nullable=False),
        sa.Column("local_id", sa.String(length=60), nullable=False),
        sa.Column(
            "result",
            sa.Enum(
                "Creating",
                "Success",
                "Skipped",
                "Failed",
                "Conflict",
                name="integration_pending_result",
                native_enum=False,
                length=60,
            ),
            nullable=False,
        ),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("since", UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["mapping_name"], ["integration_table_mappings.name"], ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("mapping_name", "local_id"),
    )
    op.create_table(
        "integration_record_states",
        sa.Column("mapping_name", sa.String(length=40), nullable=False),
        sa.Column("local_id", sa.String(length=60), nullable=False),
        sa.Column("last_local_modified", UTCDateTime(timezone=True), nullable=True),
        sa.Column("last_dataverse_modified", UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["mapping_name"], ["integration_table_mappings.name"], ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("mapping_name", "local_id"),
    )
    op.create_table(
        "integration_sync_errors",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("mapping_name", sa.String(length=40), nullable=False),
        sa.Column("local_id", sa.String(length=60), nullable=False),
        sa.Column("dataverse_id", sa.String(length=36), nullable=False),
        sa.Column(
            "result",
            sa.Enum(
                "Creating",
                "Success",
                "Skipped",
                "Failed",
                "Conflict",
                name="integration_error_result",
                native_enum=False,
                length=60,
            ),
            nullable=False,
        ),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("at", UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["run_id"], ["integration_sync_runs.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        "ix_integration_sync_errors_run", "integration_sync_errors", ["run_id"], unique=False
    )
    op.create_table(
        "sales_invoice_lines",
        sa.Column("document_no", sa.String(length=20), nullable=False),
        sa.Column("line_no", sa.Integer(), nullable=False),
        sa.Column("type", sa.String(length=20), nullable=False),
        sa.Column("no", sa.String(length=20), nullable=False),
        sa.Column("description", sa.String(length=100), nullable=False),
        sa.Column("quantity", sa.Numeric(precision=18, scale=4), nullable=False),
        sa.Column("unit_of_measure_code", sa.String(length=10), nullable=False),
        sa.Column("unit_price", sa.Numeric(precision=18, scale=4), nullable=False),
        sa.Column("line_amount", sa.Numeric(precision=18, scale=4), nullable=False),
        sa.ForeignKeyConstraint(["document_no"], ["sales_invoice_headers.no"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("document_no", "line_no"),
    )


def downgrade() -> None:
    op.drop_table("sales_invoice_lines")
    op.drop_index("ix_integration_sync_errors_run", table_name="integration_sync_errors")
    op.drop_table("integration_sync_errors")
    op.drop_table("integration_record_states")
    op.drop_table("integration_pending")
    op.drop_index("ix_integration_field_mappings_mapping", table_name="integration_field_mappings")
    op.drop_table("integration_field_mappings")
    op.drop_index("ix_units_of_measure_modified_at", table_name="units_of_measure")
    op.drop_table("units_of_measure")
    op.drop_index("ix_salespersons_modified_at", table_name="salespersons")
    op.drop_table("salespersons")
    op.drop_index("ix_sales_prices_modified_at", table_name="sales_prices")
    op.drop_table("sales_prices")
    op.drop_index("ix_sales_invoice_headers_modified_at", table_name="sales_invoice_headers")
    op.drop_table("sales_invoice_headers")
    op.drop_index("ix_resources_modified_at", table_name="resources")
    op.drop_table("resources")
    op.drop_index("ix_items_modified_at", table_name="items")
    op.drop_table("items")
    op.drop_table("integration_table_mappings")
    op.drop_index("ix_integration_sync_runs_mapping", table_name="integration_sync_runs")
    op.drop_table("integration_sync_runs")
    op.drop_table("integration_couplings")
    op.drop_table("dataverse_connection")
    op.drop_index("ix_customers_modified_at", table_name="customers")
    op.drop_table("customers")
    op.drop_index("ix_customer_price_groups_modified_at", table_name="customer_price_groups")
    op.drop_table("customer_price_groups")
