"""`jobqueue sales ...`: set up the Dynamics 365 Sales connection and its default
mappings and job-queue entries; read couplings, runs and errors."""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session, sessionmaker

import jobs.sales.job  # noqa: F401  (registers dataverse-sync)
from admin.arguments import checked, whole
from admin.tables import render_table
from domain.clock import utcnow
from domain.sales.defaults import CATEGORY, DEFAULTS
from domain.sales.integration import (
    Coupling,
    IntegrationTableMapping,
    PendingRecord,
    SyncError,
    SyncRun,
)
from jobs.dataverse.client import DataverseClient
from jobs.microsoft.identity import PUBLIC_AUTHORITY_HOST
from jobs.sales import matching, rerun
from jobs.sales.conflicts import resolve
from jobs.sales.connection import DataverseSetupError, connect, save_connection, set_switches
from jobs.sales.setup import setup_defaults
from runtime.secrets import Secret, SecretBox
from runtime.settings import Settings


def yes_or_no(text: str) -> bool:
    value = text.strip().lower()
    if value not in ("yes", "no", "true", "false", "on", "off", "1", "0"):
        raise ValueError(f"{text!r} is not yes or no")
    return value in ("yes", "true", "on", "1")


def _secret(env_name: str | None) -> Secret:
    if not env_name:
        raise DataverseSetupError("--client-secret-env names the variable holding the secret")
    value = os.environ.get(env_name)
    if not value:
        raise DataverseSetupError(f"environment variable {env_name} is empty or not set")
    return Secret(value)


class SalesCommands:
    def __init__(self, settings: Settings, sessions: Callable[[], sessionmaker[Session]]) -> None:
        self.settings = settings
        self._sessions = sessions

    def setup(self, args: argparse.Namespace) -> None:
        with self._sessions().begin() as session:
            save_connection(
                session,
                SecretBox.from_env(),
                url=args.url,
                tenant=args.tenant,
                client_id=args.client_id,
                client_secret=_secret(args.client_secret_env),
                authority_host=args.authority_host,
            )
            codes = setup_defaults(session, utcnow(), self.settings.tz)
        print(f"connected to {args.url}; entries in category {CATEGORY}: {', '.join(codes)}")

    def mappings(self, _args: argparse.Namespace) -> None:
        with self._sessions()() as session:
            rows = session.execute(select(IntegrationTableMapping)).scalars().all()
            order = {s.name: i for i, s in enumerate(DEFAULTS)}
            rows = sorted(rows, key=lambda m: order.get(m.name, 99))
            print(
                render_table(
                    ("mapping", "local", "dataverse", "direction", "watermark"),
                    [
                        (
                            m.name,
                            m.local_table,
                            m.dataverse_table,
                            m.direction.value,
                            str(m.local_watermark or ""),
                        )
                        for m in rows
                    ],
                )
            )

    def couplings(self, args: argparse.Namespace) -> None:
        with self._sessions()() as session:
            stmt = select(Coupling).order_by(Coupling.local_table, Coupling.local_id)
            if args.table:
                stmt = stmt.where(Coupling.local_table == args.table)
            rows = session.execute(stmt).scalars().all()
            print(
                render_table(
                    ("local table", "local id", "dataverse", "id", "result"),
                    [
                        (
                            c.local_table,
                            c.local_id,
                            c.dataverse_table,
                            c.dataverse_id,
                            c.last_result.value,
                        )
                        for c in rows
                    ],
                )
            )

    def runs(self, args: argparse.Namespace) -> None:
        with self._sessions()() as session:
            stmt = select(SyncRun).order_by(SyncRun.id.desc()).limit(args.limit)
            rows = session.execute(stmt).scalars().all()
            print(
                render_table(
                    ("run", "mapping", "ins", "mod", "del", "same", "skip", "fail", "conflict"),
                    [
                        (
                            r.id,
                            r.mapping_name,
                            r.inserted,
                            r.modified,
                            r.deleted,
                            r.unchanged,
                            r.skipped,
                            r.failed,
                            r.conflicts,
                        )
                        for r in rows
                    ],
                )
            )

    def resolve(self, args: argparse.Namespace) -> None:
        with self._sessions().begin() as session:
            print(resolve(session, args.mapping, args.local_id, args.keep, utcnow()))

    @contextmanager
    def _dataverse(self) -> Iterator[tuple[Engine, DataverseClient]]:
        engine = self._sessions().kw["bind"]
        connected = connect(engine, SecretBox.from_env(), self.settings.verify)
        try:
            yield engine, connected.client
        finally:
            connected.client.close()

    def match(self, args: argparse.Namespace) -> None:
        """Preview match-based coupling; the plan is saved to be applied as it is."""
        on = [name.strip() for name in args.on.split(",") if name.strip()]
        with self._dataverse() as (engine, client):
            plan = matching.preview(engine, client, args.mapping, on)
        rows = [(p.local_id, p.row_id, ", ".join(p.values)) for p in plan.pairs]
        print(render_table(("record", "dataverse row", "matched on"), rows))
        print(f"{len(plan.pairs)} to couple, {len(plan.ambiguous)} ambiguous (left alone), "
              f"{plan.unmatched} without a match")  # fmt: skip
        if args.save:
            Path(args.save).write_text(plan.to_json(), encoding="utf-8")
            print(f"plan {plan.fingerprint} saved to {args.save}; couple exactly these with: "
                  f"jobqueue sales match-apply {args.save}")  # fmt: skip

    def match_apply(self, args: argparse.Namespace) -> None:
        try:
            text = Path(args.plan).read_text(encoding="utf-8")
        except OSError as exc:
            raise matching.CouplingError(f"{args.plan}: {exc.strerror or exc}") from None
        plan = matching.Plan.from_json(text)
        with self._dataverse() as (engine, client):
            left_out = matching.apply(engine, client, plan, utcnow())
        for line in left_out:
            print(f"left out: {line}")
        print(f"{len(plan.pairs) - len(left_out)} coupled (plan {plan.fingerprint}); "
              "the next run of the mapping synchronizes them")  # fmt: skip

    def couple(self, args: argparse.Namespace) -> None:
        with self._dataverse() as (engine, client):
            matching.couple(engine, client, args.mapping, args.local_id, args.row_id, utcnow())
        print(f"{args.local_id} coupled to {args.row_id}; the next run synchronizes it")

    def uncouple(self, args: argparse.Namespace) -> None:
        engine = self._sessions().kw["bind"]
        row_id = matching.uncouple(engine, args.mapping, args.local_id)
        print(f"{args.local_id} uncoupled from {row_id} (neither was deleted)")

    def sync_record(self, args: argparse.Namespace) -> None:
        with self._sessions().begin() as session:  # the CLI user acts
            code = rerun.sync_record(session, args.mapping, args.local_id, utcnow())
        print(f"{args.local_id} queued; entry {code} runs now")

    def retry(self, _args: argparse.Namespace) -> None:
        with self._sessions().begin() as session:  # the CLI user acts
            counts = rerun.retry_failed(session, utcnow())
        if not counts:
            print("no failed records")
        for name, count in sorted(counts.items()):
            print(f"{name}: {count} failed record(s) retried now")

    def full_sync(self, _args: argparse.Namespace) -> None:
        with self._sessions().begin() as session:  # the CLI user acts
            codes = rerun.full_sync(session, utcnow())
        print(f"full synchronization: {', '.join(codes)} run now, in this order; "
              "follow it with: jobqueue sales runs")  # fmt: skip

    def options(self, args: argparse.Namespace) -> None:
        """The sales order integration switches of the connection setup."""
        with self._sessions().begin() as session:  # the CLI user acts
            state = set_switches(
                session,
                self.settings.tz,
                sales_order_integration=args.sales_orders,
                auto_create_sales_orders=args.auto_create_orders,
                auto_process_quotes=args.auto_process_quotes,
            )
        for name, on in state.items():
            print(f"{name.replace('_', ' ')}: {'yes' if on else 'no'}")

    def errors(self, args: argparse.Namespace) -> None:
        with self._sessions()() as session:
            stmt = select(SyncError).order_by(SyncError.id.desc()).limit(args.limit)
            rows = session.execute(stmt).scalars().all()
            pending = session.execute(select(PendingRecord)).scalars().all()
            tz = self.settings.tz
            print(
                render_table(
                    ("at", "mapping", "record", "result", "message"),
                    [
                        (
                            e.at.astimezone(tz).strftime("%Y-%m-%d %H:%M:%S"),
                            e.mapping_name,
                            e.local_id or e.dataverse_id,
                            e.result.value,
                            e.message,
                        )
                        for e in rows
                    ],
                )
            )
            print(f"{len(pending)} record(s) waiting to be retried")


def add_sales_commands(
    sub: Any,
    settings: Settings,
    sessions: Callable[[], sessionmaker[Session]],
    parser_class: type[argparse.ArgumentParser],
) -> None:
    s = SalesCommands(settings, sessions)
    sales = sub.add_parser("sales", help="Dynamics 365 Sales synchronization").add_subparsers(
        dest="sales_command", required=True, parser_class=parser_class
    )
    p = sales.add_parser("setup", help="connect and create the default mappings and entries")
    p.set_defaults(handler=s.setup)
    p.add_argument("--url", required=True, help="the environment, https://<org>.crm.dynamics.com")
    p.add_argument("--tenant", required=True)
    p.add_argument("--client-id", required=True)
    p.add_argument("--client-secret-env", required=True, help="variable holding the secret")
    p.add_argument("--authority-host", default=PUBLIC_AUTHORITY_HOST)
    sales.add_parser("mappings", help="the integration table mappings").set_defaults(
        handler=s.mappings
    )
    p = sales.add_parser("couplings", help="coupled records")
    p.set_defaults(handler=s.couplings)
    p.add_argument("--table")
    p = sales.add_parser("match", help="preview match-based coupling (and save the plan)")
    p.set_defaults(handler=s.match)
    p.add_argument("mapping")
    p.add_argument("--on", required=True, help="local fields to match on: name or no,city")
    p.add_argument("--save", help="write the plan here, for match-apply")
    p = sales.add_parser("match-apply", help="couple exactly the pairs of a saved plan")
    p.set_defaults(handler=s.match_apply)
    p.add_argument("plan")
    p = sales.add_parser("couple", help="couple a record to an existing Dataverse row")
    p.set_defaults(handler=s.couple)
    p.add_argument("mapping")
    p.add_argument("local_id")
    p.add_argument("row_id")
    p = sales.add_parser("uncouple", help="remove a record's coupling")
    p.set_defaults(handler=s.uncouple)
    p.add_argument("mapping")
    p.add_argument("local_id")
    p = sales.add_parser("sync", help="synchronize one record now (through its entry)")
    p.set_defaults(handler=s.sync_record)
    p.add_argument("mapping")
    p.add_argument("local_id")
    sales.add_parser("retry", help="retry every failed record now").set_defaults(handler=s.retry)
    sales.add_parser(
        "full-sync", help="every mapping reads and compares all records, in dependency order"
    ).set_defaults(handler=s.full_sync)
    p = sales.add_parser("options", help="sales order integration switches (show or set)")
    p.set_defaults(handler=s.options)
    for flag, dest, what in (
        ("--sales-orders", "sales_orders", "sales order integration"),
        ("--auto-create-orders", "auto_create_orders", "orders submitted in Sales made here"),
        ("--auto-process-quotes", "auto_process_quotes", "quotes activated in Sales made here"),
    ):
        p.add_argument(flag, dest=dest, type=checked(yes_or_no), help=f"yes or no: {what}")
    p = sales.add_parser("resolve", help="settle a recorded update conflict")
    p.set_defaults(handler=s.resolve)
    p.add_argument("mapping")
    p.add_argument("local_id")
    p.add_argument("--keep", required=True, choices=("local", "dataverse"))
    for name, func, help_text in (
        ("runs", s.runs, "the last synchronization runs and their counters"),
        ("errors", s.errors, "failed, skipped and conflicting records"),
    ):
        p = sales.add_parser(name, help=help_text)
        p.set_defaults(handler=func)
        p.add_argument("--limit", type=whole("limit", 1, 10_000), default=30)
