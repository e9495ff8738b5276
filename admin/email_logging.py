"""`jobqueue email-logging ...`, `interactions ...`, `contacts ...` and `salespersons ...`:
set up, switch and check email logging; read the interaction log; make opportunities."""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

import jobs.email_logging.job  # noqa: F401  (registers email-logging)
from admin.arguments import entry_number, entry_number_help, whole
from admin.tables import render_table
from domain.clock import utcnow
from domain.interactions.matching import BadMessage, address
from domain.interactions.models import (
    Contact,
    EwsAuthentication,
    Experience,
    InteractionLogEntry,
    Opportunity,
)
from domain.queue import entries as ops
from jobs.email_logging.mailbox import MailboxError
from jobs.email_logging.setup import (
    MAX_BATCH,
    EmailLoggingSetupError,
    SetupValues,
    ensure_entry,
    load_setup,
    mailbox_tokens,
    open_mailbox,
    save_setup,
)
from jobs.microsoft.identity import PUBLIC_AUTHORITY_HOST, SignInError
from jobs.sales.local import save
from runtime.secrets import Secret, SecretBox
from runtime.settings import Settings


def _secret(env_name: str) -> Secret:
    value = os.environ.get(env_name)
    if not value:
        raise EmailLoggingSetupError(f"environment variable {env_name} is empty or not set")
    return Secret(value)


def to_opportunity(session: Session, entry_no: int) -> Opportunity:
    """An opportunity from a logged message: one per entry."""
    entry = session.get(InteractionLogEntry, entry_no, with_for_update=True)
    if entry is None:
        raise ValueError(f"no interaction log entry {entry_no}")
    if entry.opportunity_no:
        raise ValueError(f"entry {entry_no} already made opportunity {entry.opportunity_no}")
    count = session.execute(select(func.count()).select_from(Opportunity)).scalar_one()
    opportunity = Opportunity(
        no=f"OP{count + 1:06d}",
        description=entry.subject or f"Email {entry.message_id}",
        contact_no=entry.contact_no,
        salesperson_code=entry.salesperson_code,
        created_at=utcnow(),
        interaction_entry_no=entry.entry_no,
    )
    session.add(opportunity)
    entry.opportunity_no = opportunity.no
    return opportunity


def setup_pairs(row: Any) -> list[tuple[str, str]]:
    """The setup as people see it (command line, console): the secret only as "set"."""
    pairs = [
        ("mailbox", row.mailbox),
        ("experience", row.experience.value),
        ("account", row.account),
        ("enabled", "yes" if row.enabled else "no"),
        ("tenant", row.tenant),
        ("client id", row.client_id),
        ("secret", "set" if row.secret_encrypted else "not set"),
        ("batch size", str(row.batch_size)),
        ("entry", row.entry_code),
    ]
    if row.experience is Experience.EWS:
        pairs += [
            ("EWS URL", row.ews_url),
            ("authentication", row.ews_authentication.value),
            ("queue folder", row.queue_folder),
            ("storage folder", row.storage_folder),
        ]
    return pairs


def switch(session: Session, enabled: bool, tz: Any) -> Any:
    """Enable (its entry Ready) or disable (its entry On Hold) email logging."""
    row = load_setup(session)
    row.enabled = enabled
    if enabled:
        ops.set_ready(session, row.entry_code, utcnow(), tz)
    else:
        ops.set_on_hold(session, row.entry_code)
    return row


def validate_setup(sessions: sessionmaker[Session], settings: Settings) -> tuple[str, list[str]]:
    """Signs in and opens the mailbox and its folders; (mailbox, what was checked)."""
    with sessions() as session:
        row = load_setup(session)
        session.expunge(row)
    mailbox = open_mailbox(row, SecretBox.from_env(), settings.verify)
    try:
        checked = mailbox.check()
    except MailboxError as exc:
        raise EmailLoggingSetupError(f"validation failed: {exc}") from None
    finally:
        mailbox.close()
    return str(row.mailbox), list(checked)


class EmailLoggingCommands:
    def __init__(self, settings: Settings, sessions: Callable[[], sessionmaker[Session]]) -> None:
        self.settings = settings
        self._sessions = sessions

    def setup(self, args: argparse.Namespace) -> None:
        values = SetupValues(
            mailbox=args.mailbox,
            experience=Experience(args.experience),
            account=args.account,
            secret=_secret(args.secret_env),
            tenant=args.tenant or "",
            client_id=args.client_id or "",
            ews_url=args.ews_url or "",
            ews_authentication=EwsAuthentication(args.ews_auth),
            queue_folder=args.queue_folder,
            storage_folder=args.storage_folder,
            batch_size=args.batch_size,
            authority_host=args.authority_host,
            graph_url=args.graph_url,
        )
        with self._sessions().begin() as session:
            row = save_setup(session, SecretBox.from_env(), values)
            session.flush()
            ensure_entry(session, row, args.every, args.inactivity, self.settings.tz)
            state = "enabled" if row.enabled else "disabled until `email-logging enable`"
            print(
                f"email logging of {row.mailbox} via {row.experience.value}: {state}; "
                f"entry {row.entry_code}"
            )

    def _switch(self, enabled: bool) -> None:
        with self._sessions().begin() as session:
            row = switch(session, enabled, self.settings.tz)
            print(
                f"email logging {'enabled' if enabled else 'disabled'}; entry {row.entry_code} "
                f"{'ready' if enabled else 'on hold'}"
            )

    def enable(self, _args: argparse.Namespace) -> None:
        self._switch(True)

    def disable(self, _args: argparse.Namespace) -> None:
        self._switch(False)

    def validate(self, _args: argparse.Namespace) -> None:
        mailbox, checked = validate_setup(self._sessions(), self.settings)
        for line in checked:
            print(f"ok  {line}")
        print(f"email logging of {mailbox} is set up correctly")

    def renew_token(self, _args: argparse.Namespace) -> None:
        with self._sessions()() as session:
            row = load_setup(session)
            session.expunge(row)
        if row.experience is Experience.EWS and row.ews_authentication is EwsAuthentication.BASIC:
            raise EmailLoggingSetupError("basic authentication has no token to renew")
        try:
            mailbox_tokens(row, SecretBox.from_env(), self.settings.verify).token(refresh=True)
        except SignInError as exc:
            raise EmailLoggingSetupError(str(exc)) from None
        print(f"a new token was issued for {row.account}")

    def change_user(self, args: argparse.Namespace) -> None:
        with self._sessions().begin() as session:
            row = load_setup(session)
            try:
                row.account = address(args.account, "account")
            except BadMessage as exc:
                raise EmailLoggingSetupError(str(exc)) from None
            if args.secret_env:
                row.secret_encrypted = SecretBox.from_env().encrypt(_secret(args.secret_env))
            restarted = row.enabled
            if restarted:
                ops.set_ready(session, row.entry_code, utcnow(), self.settings.tz)
        print(
            f"email logging now signs in as {row.account}"
            + (f"; entry {row.entry_code} restarted" if restarted else "")
        )

    def show(self, _args: argparse.Namespace) -> None:
        with self._sessions()() as session:
            pairs = setup_pairs(load_setup(session))
        print(render_table(["setting", "value"], [list(p) for p in pairs]))

    # -- interactions, contacts, salespersons -----------------------------------------------
    def interactions_list(self, args: argparse.Namespace) -> None:
        query = select(InteractionLogEntry).order_by(InteractionLogEntry.entry_no.desc())
        if args.contact:
            query = query.where(InteractionLogEntry.contact_no == args.contact)
        with self._sessions()() as session:
            rows = [
                [
                    str(e.entry_no),
                    e.contact_no,
                    e.salesperson_code,
                    e.information_flow.value,
                    e.occurred_at.astimezone(self.settings.tz).strftime("%Y-%m-%d %H:%M"),
                    e.subject,
                    "yes" if e.attachments else "",
                    e.opportunity_no or "",
                ]
                for e in session.execute(query.limit(args.limit)).scalars()
            ]
        print(
            render_table(
                [
                    "entry",
                    "contact",
                    "salesperson",
                    "flow",
                    "date",
                    "subject",
                    "attachments",
                    "opportunity",
                ],
                rows,
            )
        )

    def to_opportunity(self, args: argparse.Namespace) -> None:
        with self._sessions().begin() as session:
            opportunity = to_opportunity(session, args.entry)
            print(
                f"opportunity {opportunity.no} for contact {opportunity.contact_no}, "
                f"salesperson {opportunity.salesperson_code}: {opportunity.description}"
            )

    def contacts_add(self, args: argparse.Namespace) -> None:
        email = _optional_address(args.email)
        with self._sessions().begin() as session:
            contact = session.get(Contact, args.no) or Contact(no=args.no)
            contact.name, contact.email, contact.company_name = args.name, email, args.company
            session.add(contact)
        print(f"contact {args.no} saved")

    def contacts_list(self, _args: argparse.Namespace) -> None:
        with self._sessions()() as session:
            rows = [
                [c.no, c.name, c.email, c.company_name]
                for c in session.execute(select(Contact).order_by(Contact.no)).scalars()
            ]
        print(render_table(["no", "name", "email", "company"], rows))

    def salespersons_add(self, args: argparse.Namespace) -> None:
        email = _optional_address(args.email)
        with self._sessions().begin() as session:
            save(
                session,
                "salespersons",
                {"code": args.code, "name": args.name, "email": email},
                user="admin",
                tz=self.settings.tz,
            )
        print(f"salesperson {args.code} saved")


def _optional_address(value: str) -> str:
    if not value.strip():
        return ""
    try:
        return address(value, "email")
    except BadMessage as exc:
        raise ValueError(str(exc)) from None


def add_email_logging_commands(
    sub: Any,
    settings: Settings,
    sessions: Callable[[], sessionmaker[Session]],
    parser_class: type[argparse.ArgumentParser],
) -> None:
    c = EmailLoggingCommands(settings, sessions)
    group = sub.add_parser("email-logging", help="log a shared mailbox as interactions")
    logging_ = group.add_subparsers(
        dest="email_logging_command", required=True, parser_class=parser_class
    )
    p = logging_.add_parser("setup", help="write the setup and its job-queue entry")
    p.set_defaults(handler=c.setup)
    p.add_argument("--mailbox", required=True, help="the shared mailbox address")
    p.add_argument("--experience", choices=[e.value for e in Experience], default="graph")
    p.add_argument("--account", required=True, help="the account the job signs in as")
    p.add_argument(
        "--secret-env",
        required=True,
        help="variable holding the client secret (or the EWS basic password)",
    )
    p.add_argument("--tenant")
    p.add_argument("--client-id")
    p.add_argument("--ews-url", help="https://outlook.office365.com/EWS/Exchange.asmx")
    p.add_argument("--ews-auth", choices=[a.value for a in EwsAuthentication], default="oauth2")
    p.add_argument("--queue-folder", default="Inbox")
    p.add_argument("--storage-folder", default="Archive")
    p.add_argument(
        "--batch-size", type=whole("batch size", 1, MAX_BATCH), default=100, help="1 to 1000"
    )
    p.add_argument("--authority-host", default=PUBLIC_AUTHORITY_HOST)
    p.add_argument("--graph-url", default="https://graph.microsoft.com/v1.0")
    p.add_argument(
        "--every",
        type=entry_number("minutes_between_runs"),
        default=5,
        help=f"minutes between runs, {entry_number_help('minutes_between_runs')}",
    )
    p.add_argument(
        "--inactivity",
        type=entry_number("inactivity_timeout_minutes"),
        default=30,
        help="inactivity timeout (an empty Inbox lets the entry sleep), "
        + entry_number_help("inactivity_timeout_minutes"),
    )
    for name, handler, help_text in (
        ("enable", c.enable, "start logging (the entry becomes ready)"),
        ("disable", c.disable, "stop logging (the entry goes on hold)"),
        ("validate", c.validate, "check sign-in, mailbox access and the folders"),
        ("renew-token", c.renew_token, "get a fresh access token now"),
        ("show", c.show, "the setup, secrets left out"),
    ):
        logging_.add_parser(name, help=help_text).set_defaults(handler=handler)
    p = logging_.add_parser("change-user", help="sign in as another account; restarts the entry")
    p.set_defaults(handler=c.change_user)
    p.add_argument("--account", required=True)
    p.add_argument("--secret-env", help="variable holding the new account's secret, if it changed")

    inter = sub.add_parser("interactions", help="the interaction log").add_subparsers(
        dest="interactions_command", required=True, parser_class=parser_class
    )
    p = inter.add_parser("list", help="logged interactions, newest first")
    p.set_defaults(handler=c.interactions_list)
    p.add_argument("--contact")
    p.add_argument("--limit", type=whole("limit", 1, 10_000), default=50)
    p = inter.add_parser("to-opportunity", help="make an opportunity of a logged message")
    p.set_defaults(handler=c.to_opportunity)
    p.add_argument("entry", type=whole("entry", 1))

    contacts = sub.add_parser("contacts", help="contacts").add_subparsers(
        dest="contacts_command", required=True, parser_class=parser_class
    )
    p = contacts.add_parser("add", help="add or change a contact")
    p.set_defaults(handler=c.contacts_add)
    p.add_argument("no")
    p.add_argument("--name", default="")
    p.add_argument("--email", default="")
    p.add_argument("--company", default="")
    contacts.add_parser("list", help="all contacts").set_defaults(handler=c.contacts_list)
    people = sub.add_parser("salespersons", help="salespeople").add_subparsers(
        dest="salespersons_command", required=True, parser_class=parser_class
    )
    p = people.add_parser("add", help="add or change a salesperson")
    p.set_defaults(handler=c.salespersons_add)
    p.add_argument("code")
    p.add_argument("--name", default="")
    p.add_argument("--email", default="")
