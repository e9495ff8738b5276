"""The `dataverse-sync` job: runs one integration table mapping (`mapping=NAME`).

It reports no activity when nothing was inserted, modified, deleted, newly failed or
in conflict (a record that only failed again, unchanged, is no news), so its entry
sleeps with its inactivity timeout and retries such records when it wakes. A change to the mapping's
local table wakes it, and so does a new coupling of a table it depends on (the run
that couples a customer wakes the invoice entry that skipped the customer's invoices).
"""

from __future__ import annotations

from domain.sales.defaults import BY_NAME
from jobs.registry import JobContext, JobOutcome, JobParameterError, parse_parameters, registry
from jobs.sales.connection import connect
from jobs.sales.engine import SyncEngine
from runtime.secrets import SecretBox


def _mapping(text: str) -> str:
    params = parse_parameters(text)
    unknown = sorted(set(params) - {"mapping", "watch"})
    if unknown:
        raise JobParameterError(f"unknown parameter {unknown[0]!r} (allowed: mapping, watch)")
    name = params.get("mapping", "").strip()
    if not name:
        raise JobParameterError("mapping=NAME is required (an integration table mapping)")
    return name


def _validate(text: str) -> None:
    _mapping(text)


def watches(text: str) -> frozenset[str]:
    params = parse_parameters(text)
    kinds = {k.strip() for k in params.get("watch", "").split(",") if k.strip()}
    spec = BY_NAME.get(params.get("mapping", "").strip())
    if spec is not None:
        kinds.add(spec.local_table)
        kinds |= {f"coupled:{t}" for t in spec.dependency_tables}
        if spec.name == "POSTEDSALESINV-INV":  # lines refer to items and resources too
            kinds |= {"coupled:items", "coupled:resources", "coupled:units_of_measure"}
    return frozenset(kinds)


@registry.register("dataverse-sync", watches=watches, validate=_validate)
def dataverse_sync(parameters: str, ctx: JobContext) -> JobOutcome:
    """Synchronizes one integration table mapping with Dataverse."""
    engine = ctx.engine
    connected = connect(engine, SecretBox.from_env(), ctx.settings.verify)
    try:
        counters = SyncEngine(
            engine,
            connected.client,
            connected.integration_user_id,
            tz=ctx.settings.tz,
            cancelled=ctx.cancelled.is_set,
        ).run(_mapping(parameters), ctx.run_id)
    finally:
        connected.client.close()
    return JobOutcome(activity=counters.activity, counters=counters.as_dict())
