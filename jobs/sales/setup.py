"""Set up Dynamics 365 Sales synchronization: the default mappings, and one recurring
job-queue entry per mapping in their category (through the queue's own operations)."""

from __future__ import annotations

from datetime import datetime, tzinfo
from typing import Any

from sqlalchemy import delete
from sqlalchemy.orm import Session

import jobs.sales.job  # noqa: F401  (registers dataverse-sync, the job its entries run)
from domain.queue import entries as ops
from domain.queue.models import JobQueueCategory
from domain.sales.defaults import CATEGORY, DEFAULTS, MappingDef
from domain.sales.integration import IntegrationFieldMapping, IntegrationTableMapping
from jobs.registry import registry
from jobs.sales.connection import follow_switches, switches


def install_mapping(session: Session, spec: MappingDef) -> None:
    """Writes a mapping and its field mappings as the defaults have them. Running setup
    again keeps what the mapping has synced: its watermarks, record states and pending
    records stay."""
    session.execute(
        delete(IntegrationFieldMapping).where(IntegrationFieldMapping.mapping_name == spec.name)
    )
    mapping = session.get(IntegrationTableMapping, spec.name) or IntegrationTableMapping(
        name=spec.name
    )
    mapping.local_table = spec.local_table
    mapping.dataverse_table = spec.dataverse_table
    mapping.direction = spec.direction
    mapping.local_filter = dict(spec.local_filter)
    mapping.dataverse_filter = spec.dataverse_filter
    mapping.only_coupled = spec.only_coupled
    mapping.dependencies = list(spec.dependencies)
    mapping.update_conflict = spec.update_conflict
    mapping.deletion_conflict = spec.deletion_conflict
    session.add(mapping)
    session.flush()
    for position, f in enumerate(spec.fields):
        session.add(
            IntegrationFieldMapping(
                mapping_name=spec.name,
                position=position,
                local_field=f.local_field,
                dataverse_attribute=f.attribute,
                direction=f.direction,
                constant=f.constant,
                transform=f.transform,
                validate=f.validate,
            )
        )


def setup_defaults(session: Session, now: datetime, tz: tzinfo) -> list[str]:
    """The default mappings and one recurring entry each, in one category, in dependency
    order: an earlier mapping has the higher priority, so within the category it runs
    first whenever several are due."""
    if session.get(JobQueueCategory, CATEGORY) is None:
        ops.add_category(session, CATEGORY, "Dynamics 365 Sales synchronization")
    codes = []
    for position, spec in enumerate(DEFAULTS):
        install_mapping(session, spec)
        changes: dict[str, Any] = {
            "description": f"{spec.description} - Dynamics 365 Sales synchronization job",
            "parameter_string": f"mapping={spec.name}",
            "recurring": True,
            "minutes_between_runs": spec.minutes_between_runs,
            "inactivity_timeout_minutes": spec.inactivity_timeout,
            "category_code": CATEGORY,
            "priority": 1000 - position * 10,
            "maximum_attempts": 3,
            "rerun_delay_seconds": 60,
        }
        ops.put_entry(session, spec.entry_code, "dataverse-sync", changes, registry, now, tz)
        codes.append(spec.entry_code)
    session.flush()
    follow_switches(session, switches(session), tz)  # sales order integration: if on
    return codes
