"""`jobqueue users add|list|token` and `jobqueue web`."""

from __future__ import annotations

import argparse
import getpass
import os
import sys
from collections.abc import Callable
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from admin.arguments import checked, whole
from admin.tables import render_table
from domain.clock import utcnow
from domain.users.accounts import (
    AccountError,
    add_user,
    change_web_service_key,
    check_role,
    create_token,
    set_email,
)
from domain.users.models import User
from runtime.settings import Settings

DEFAULT_WEB_PORT = 8000


def cli_user() -> str:
    """Who the command line acts as, for the audit trail."""
    return os.environ.get("JOBQUEUE_USER") or getpass.getuser()


def _password(args: argparse.Namespace) -> str:
    if args.password_stdin:
        return sys.stdin.readline().rstrip("\n")
    if not sys.stdin.isatty():
        raise AccountError("password: give it with --password-stdin, or run in a terminal")
    first = getpass.getpass("Password: ")
    if getpass.getpass("Again: ") != first:
        raise AccountError("password: the two entries differ")
    return first


def web_port(env: dict[str, str] | None = None) -> int:
    text = (env if env is not None else os.environ).get("JOBQUEUE_WEB_PORT", "")
    if not text.strip():
        return DEFAULT_WEB_PORT
    try:
        return whole("JOBQUEUE_WEB_PORT", 1, 65535)(text)
    except argparse.ArgumentTypeError as exc:
        raise AccountError(str(exc)) from None


def add_user_commands(
    sub: Any, settings: Settings, sessions: Callable[[], sessionmaker[Session]], parser_class: Any
) -> None:
    users = sub.add_parser("users", help="console and API users").add_subparsers(
        dest="users_command", required=True, parser_class=parser_class
    )

    def add(args: argparse.Namespace) -> None:
        password = _password(args)
        with sessions().begin() as session:
            add_user(session, args.name, args.role, password, utcnow(), email=args.email)
        print(f"user {args.name} added ({args.role.value})")

    def email(args: argparse.Namespace) -> None:
        with sessions().begin() as session:
            user = set_email(session, args.name, args.email)
        print(f"user {user.name}: notifications go to {user.email or 'nobody (cleared)'}")

    def listing(_args: argparse.Namespace) -> None:
        with sessions()() as session:
            rows = session.execute(select(User).order_by(User.name)).scalars().all()
            table = [[u.name, u.role.value, u.email or "", u.created_at.isoformat()] for u in rows]
            print(render_table(["name", "role", "email", "created"], table))

    def token(args: argparse.Namespace) -> None:
        with sessions().begin() as session:
            value = create_token(session, args.name, utcnow())
        print(value)
        print("(shown once: only its hash is stored)", file=sys.stderr)

    p = users.add_parser("add", help="add a user")
    p.add_argument("name")
    p.add_argument(
        "--role", type=checked(check_role), required=True, help="viewer, operator or admin"
    )
    p.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    p.add_argument("--email", help="where the job queue's notifications reach this user")
    p.set_defaults(handler=add, command_name="add")
    p = users.add_parser("email", help="set (or with none, clear) a user's email address")
    p.add_argument("name")
    p.add_argument("email")
    p.set_defaults(handler=email, command_name="email")
    p = users.add_parser("list", help="list users")
    p.set_defaults(handler=listing, command_name="list")

    def web_service_key(args: argparse.Namespace) -> None:
        with sessions().begin() as session:
            key = change_web_service_key(session, args.name)
        print(key)
        print(f"(shown once: only its hash is stored; {args.name}'s previous key no longer "
              "works)", file=sys.stderr)  # fmt: skip

    p = users.add_parser(
        "web-service-key",
        help="Change Web Service Key: a new access key for the item availability web service",
    )
    p.add_argument("name")
    p.set_defaults(handler=web_service_key, command_name="web-service-key")
    p = users.add_parser("token", help="create an API token for a user (printed once)")
    p.add_argument("name")
    p.set_defaults(handler=token, command_name="token")

    def web(_args: argparse.Namespace) -> None:
        from admin.processes import run_web

        run_web(settings, web_port())

    p = sub.add_parser("web", help="the browser console and the HTTP API (JOBQUEUE_WEB_PORT)")
    p.set_defaults(handler=web, command_name="web")

    def item_availability(args: argparse.Namespace) -> None:
        import uvicorn

        from admin.web.odata import odata_app

        app = odata_app(sessions())
        uvicorn.run(app, host=os.environ.get("JOBQUEUE_WEB_HOST", "127.0.0.1"), port=args.port,
                    log_config=None)  # fmt: skip

    p = sub.add_parser(
        "item-availability",
        help="the item availability web service alone (the web process serves it too)",
    )
    p.add_argument("--port", type=whole("port", 1, 65535), default=7048)
    p.set_defaults(handler=item_availability, command_name="item-availability")
