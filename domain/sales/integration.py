"""The integration model: how local tables map to Dataverse tables, which records are
coupled, what each synchronization run did. The client secret is stored encrypted."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from domain.base import Base, UTCDateTime, enum_type


class Direction(StrEnum):
    TO_DATAVERSE = "ToIntegrationTable"
    FROM_DATAVERSE = "FromIntegrationTable"
    BIDIRECTIONAL = "Bidirectional"


class UpdateConflict(StrEnum):
    """Both sides changed since the last sync."""

    NONE = "None"  # record the conflict, overwrite nothing
    SEND_LOCAL = "Send data update to integration table"
    GET_DATAVERSE = "Get data update from integration table"


class DeletionConflict(StrEnum):
    """The coupled row is gone on the other side."""

    NONE = "None"  # record it as failed, leave the coupling
    REMOVE_COUPLING = "Remove coupling"
    RESTORE = "Restore records"


class SyncResult(StrEnum):
    CREATING = "Creating"  # its Dataverse id is reserved; the create may or may not have landed
    SUCCESS = "Success"
    SKIPPED = "Skipped"
    FAILED = "Failed"
    CONFLICT = "Conflict"


class DataverseConnection(Base):
    """One connection (one row): the environment URL and the app registration."""

    __tablename__ = "dataverse_connection"
    __table_args__ = (CheckConstraint("id = 1", name="ck_dataverse_connection_single_row"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, default=1)
    url: Mapped[str] = mapped_column(String(250))
    tenant: Mapped[str] = mapped_column(String(250))
    client_id: Mapped[str] = mapped_column(String(100))
    client_secret_encrypted: Mapped[str] = mapped_column(Text)
    authority_host: Mapped[str] = mapped_column(
        String(250), default="https://login.microsoftonline.com"
    )
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    # The application user the jobs act as (WhoAmI); its changes are never synced back.
    integration_user_id: Mapped[str | None] = mapped_column(String(36), nullable=True)
    # The price list item sync keeps in Dataverse (not to be edited by hand there).
    default_price_list_id: Mapped[str | None] = mapped_column(String(36), nullable=True)
    # Sales order integration (the connection setup's switches): orders submitted in
    # Sales become sales orders here, automatically; activated quotes become quotes.
    sales_order_integration: Mapped[bool] = mapped_column(Boolean, default=False)
    auto_create_sales_orders: Mapped[bool] = mapped_column(Boolean, default=False)
    auto_process_quotes: Mapped[bool] = mapped_column(Boolean, default=False)


class IntegrationTableMapping(Base):
    __tablename__ = "integration_table_mappings"

    name: Mapped[str] = mapped_column(String(40), primary_key=True)
    local_table: Mapped[str] = mapped_column(String(60))
    dataverse_table: Mapped[str] = mapped_column(String(60))  # the Web API entity set
    direction: Mapped[Direction] = mapped_column(enum_type(Direction, "integration_direction"))
    local_filter: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    dataverse_filter: Mapped[str] = mapped_column(Text, default="")
    only_coupled: Mapped[bool] = mapped_column(Boolean, default=False)
    dependencies: Mapped[list[str]] = mapped_column(JSON, default=list)
    update_conflict: Mapped[UpdateConflict] = mapped_column(
        enum_type(UpdateConflict, "integration_update_conflict"), default=UpdateConflict.NONE
    )
    deletion_conflict: Mapped[DeletionConflict] = mapped_column(
        enum_type(DeletionConflict, "integration_deletion_conflict"), default=DeletionConflict.NONE
    )
    # Watermarks: the newest modification read on each side by the last run.
    local_watermark: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    dataverse_watermark: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    # Change tracking: the @odata.deltaLink of the last read (NULL: none yet; "": the
    # table does not track changes, the watermark is used).
    dataverse_delta_link: Mapped[str | None] = mapped_column(Text, nullable=True)


class IntegrationFieldMapping(Base):
    __tablename__ = "integration_field_mappings"
    __table_args__ = (Index("ix_integration_field_mappings_mapping", "mapping_name", "position"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    mapping_name: Mapped[str] = mapped_column(
        ForeignKey("integration_table_mappings.name", ondelete="CASCADE")
    )
    position: Mapped[int] = mapped_column(Integer, default=0)
    local_field: Mapped[str] = mapped_column(String(60), default="")
    dataverse_attribute: Mapped[str] = mapped_column(String(100))
    direction: Mapped[Direction] = mapped_column(
        enum_type(Direction, "integration_field_direction"), default=Direction.BIDIRECTIONAL
    )
    constant: Mapped[str | None] = mapped_column(String(250), nullable=True)
    transform: Mapped[str | None] = mapped_column(String(100), nullable=True)
    validate: Mapped[bool] = mapped_column(Boolean, default=False)  # must not be blank


class Coupling(Base):
    """A local record linked to a Dataverse row: each side is coupled at most once."""

    __tablename__ = "integration_couplings"
    __table_args__ = (
        UniqueConstraint("local_table", "local_id", "dataverse_table", name="uq_coupling_local"),
        UniqueConstraint("dataverse_table", "dataverse_id", name="uq_coupling_dataverse"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    local_table: Mapped[str] = mapped_column(String(60))
    local_id: Mapped[str] = mapped_column(String(60))
    dataverse_table: Mapped[str] = mapped_column(String(60))
    dataverse_id: Mapped[str] = mapped_column(String(36))
    dataverse_etag: Mapped[str | None] = mapped_column(String(60), nullable=True)
    last_result: Mapped[SyncResult] = mapped_column(enum_type(SyncResult, "integration_result"))
    last_synced_at: Mapped[datetime] = mapped_column(UTCDateTime)


class RecordSyncState(Base):
    """Per mapping and record: the modification times of both sides at the last sync."""

    __tablename__ = "integration_record_states"

    mapping_name: Mapped[str] = mapped_column(
        ForeignKey("integration_table_mappings.name", ondelete="CASCADE"), primary_key=True
    )
    local_id: Mapped[str] = mapped_column(String(60), primary_key=True)
    last_local_modified: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    last_dataverse_modified: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class PendingRecord(Base):
    """A record skipped (dependency not coupled yet) or failed: retried by the next runs."""

    __tablename__ = "integration_pending"

    mapping_name: Mapped[str] = mapped_column(
        ForeignKey("integration_table_mappings.name", ondelete="CASCADE"), primary_key=True
    )
    local_id: Mapped[str] = mapped_column(String(60), primary_key=True)
    result: Mapped[SyncResult] = mapped_column(enum_type(SyncResult, "integration_pending_result"))
    reason: Mapped[str] = mapped_column(Text)
    since: Mapped[datetime] = mapped_column(UTCDateTime)


class PendingRow(Base):
    """A row read from Dataverse that could not come in (a reference not coupled here, a
    value that does not fit): read again by the next runs until it does, or until it is
    deleted or filtered out in Dataverse."""

    __tablename__ = "integration_pending_rows"

    mapping_name: Mapped[str] = mapped_column(
        ForeignKey("integration_table_mappings.name", ondelete="CASCADE"), primary_key=True
    )
    dataverse_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    reason: Mapped[str] = mapped_column(Text)
    since: Mapped[datetime] = mapped_column(UTCDateTime)


class SyncRun(Base):
    __tablename__ = "integration_sync_runs"
    __table_args__ = (Index("ix_integration_sync_runs_mapping", "mapping_name", "id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    mapping_name: Mapped[str] = mapped_column(String(40))
    job_run_id: Mapped[str] = mapped_column(String(60), default="")
    started_at: Mapped[datetime] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    inserted: Mapped[int] = mapped_column(Integer, default=0)
    modified: Mapped[int] = mapped_column(Integer, default=0)
    deleted: Mapped[int] = mapped_column(Integer, default=0)
    unchanged: Mapped[int] = mapped_column(Integer, default=0)
    skipped: Mapped[int] = mapped_column(Integer, default=0)
    failed: Mapped[int] = mapped_column(Integer, default=0)
    conflicts: Mapped[int] = mapped_column(Integer, default=0)


class SyncError(Base):
    """One row per failed, skipped or conflicting record of a run, with the reason."""

    __tablename__ = "integration_sync_errors"
    __table_args__ = (Index("ix_integration_sync_errors_run", "run_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("integration_sync_runs.id", ondelete="CASCADE"))
    mapping_name: Mapped[str] = mapped_column(String(40))
    local_id: Mapped[str] = mapped_column(String(60), default="")
    dataverse_id: Mapped[str] = mapped_column(String(36), default="")
    result: Mapped[SyncResult] = mapped_column(enum_type(SyncResult, "integration_error_result"))
    message: Mapped[str] = mapped_column(Text)
    at: Mapped[datetime] = mapped_column(UTCDateTime)
