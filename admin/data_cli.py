"""`jobqueue data import TABLE FILE`: the back office's records into the local tables."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from admin.users_cli import cli_user
from domain.sales.records import IMPORTABLE
from jobs.sales.data_import import FORMATS, ImportRefused, import_rows, rows_of_file
from runtime.settings import Settings

EXIT_USAGE = 2


def add_data_commands(
    sub: Any, settings: Settings, sessions: Callable[[], sessionmaker[Session]], parser_class: Any
) -> None:
    data = sub.add_parser("data", help="the back office's records").add_subparsers(
        dest="data_command", required=True, parser_class=parser_class
    )

    def run_import(args: argparse.Namespace) -> None:
        try:
            with sessions().begin() as session:  # marked with the CLI user who acts
                saved = import_rows(
                    session,
                    args.table,
                    rows_of_file(Path(args.file), args.format),
                    user=cli_user()[:50],
                    tz=settings.tz,
                )
        except ImportRefused as refused:
            for line in refused.errors:
                sys.stderr.write(f"jobqueue: error: {line}\n")
            sys.stderr.write("jobqueue: nothing was imported\n")
            raise SystemExit(EXIT_USAGE) from None
        print(f"{args.table}: {saved.inserted} added, {saved.updated} updated")

    p = data.add_parser(
        "import",
        help="add or update records from a CSV file (header row) or JSON lines, by their key",
    )
    p.add_argument("table", choices=sorted(IMPORTABLE), metavar="TABLE",
                   help=f"one of {', '.join(sorted(IMPORTABLE))}")  # fmt: skip
    p.add_argument("file")
    p.add_argument("--format", choices=FORMATS, help="default: from the file's suffix")
    p.set_defaults(handler=run_import, command_name="import")
