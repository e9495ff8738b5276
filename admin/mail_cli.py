"""`jobqueue email ...`: accounts, scenarios, default attachments, view policies, the
outbox and sent emails. Passwords are read from stdin or an environment variable, never
from the command line, and are stored encrypted."""

from __future__ import annotations

import argparse
import mimetypes
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from admin.arguments import readable_file, whole
from admin.tables import render_table
from domain.clock import utcnow
from domain.mail.kinds import (
    Connector,
    OutboxStatus,
    SecureConnection,
    SmtpAuthentication,
    ViewPolicy,
)
from domain.mail.models import EmailAccount, EmailScenario, OutboxMessage
from domain.mail.rules import MailRuleError, RelatedRecord
from jobs.mail import accounts
from jobs.mail.compose import Attachment, compose, retry
from jobs.mail.connectors import connector_factory
from jobs.mail.dispatch import MailDispatcher
from jobs.mail.views import visible_sent_emails
from runtime.secrets import Secret, SecretBox
from runtime.settings import Settings

CONNECTORS = {
    "microsoft365": Connector.MICROSOFT_365,
    "current-user": Connector.CURRENT_USER,
    "smtp": Connector.SMTP,
}
SECURE = {
    "none": SecureConnection.NONE,
    "starttls": SecureConnection.STARTTLS,
    "ssl": SecureConnection.SSL,
}
AUTH = {
    "anonymous": SmtpAuthentication.ANONYMOUS,
    "basic": SmtpAuthentication.BASIC,
    "oauth2": SmtpAuthentication.OAUTH2,
}
POLICIES = {
    "own": ViewPolicy.OWN,
    "all": ViewPolicy.ALL,
    "all-related": ViewPolicy.ALL_RELATED,
    "any-related": ViewPolicy.ANY_RELATED,
}


def _password(args: argparse.Namespace) -> Secret | None:
    if args.password_env:
        value = os.environ.get(args.password_env)
        if not value:
            raise MailRuleError(f"environment variable {args.password_env} is empty or not set")
        return Secret(value)
    if args.password_stdin:
        return Secret(sys.stdin.readline().rstrip("\n"))
    return None


def no_record_access(_user: str, _record: RelatedRecord) -> bool:
    """The command line has no permission model: related-record policies show own emails."""
    return False


class MailCommands:
    def __init__(self, settings: Settings, sessions: Callable[[], sessionmaker[Session]]) -> None:
        self.settings = settings
        self._sessions = sessions

    @property
    def sessions(self) -> sessionmaker[Session]:
        return self._sessions()

    def accounts_add(self, args: argparse.Namespace) -> None:
        connector = CONNECTORS[args.connector]
        smtp = graph = None
        oauth = connector != Connector.SMTP or AUTH[args.auth] == SmtpAuthentication.OAUTH2
        if oauth:
            if not (args.tenant and args.client_id and args.client_secret_env):
                raise MailRuleError(
                    "a Microsoft 365 or Current User account, or SMTP with OAuth 2.0, needs "
                    "--tenant, --client-id and --client-secret-env"
                )
            secret = os.environ.get(args.client_secret_env)
            if not secret:
                raise MailRuleError(f"environment variable {args.client_secret_env} is empty")
            graph = accounts.GraphOptions(
                args.tenant,
                args.client_id,
                Secret(secret),
                graph_url=args.graph_url,
                authority_host=args.authority_host,
            )
        if connector == Connector.SMTP:
            if not args.server:
                raise MailRuleError("an SMTP account needs --server")
            smtp = accounts.SmtpOptions(
                server=args.server,
                port=args.port,
                secure_connection=SECURE[args.secure],
                authentication=AUTH[args.auth],
                user_name=args.user or "",
                password=_password(args),
            )
        with self.sessions.begin() as session:
            account = accounts.add_account(
                session,
                args.name,
                args.address,
                connector,
                rate_limit=args.rate_limit,
                mailbox=args.mailbox,
                smtp=smtp,
                graph=graph,
                secrets=SecretBox.from_env(),
            )
            print(
                f"added {account.name} ({account.connector.value}, "
                f"{account.rate_limit_per_minute or 'no'} per minute)"
                f"{', default' if account.is_default else ''}"
            )

    def accounts_list(self, _args: argparse.Namespace) -> None:
        with self.sessions() as session:
            rows = session.execute(select(EmailAccount).order_by(EmailAccount.name)).scalars()
            table = [
                (
                    a.name,
                    a.address,
                    a.connector.value,
                    a.rate_limit_per_minute or "none",
                    "yes" if a.is_default else "",
                )
                for a in rows
            ]
        print(render_table(("account", "address", "connector", "per minute", "default"), table))

    def accounts_default(self, args: argparse.Namespace) -> None:
        with self.sessions.begin() as session:
            accounts.set_default(session, args.name)
        print(f"{args.name} is the default account")

    def accounts_rate_limit(self, args: argparse.Namespace) -> None:
        with self.sessions.begin() as session:
            accounts.set_rate_limit(session, args.name, args.per_minute)
        print(f"{args.name}: {args.per_minute or 'no'} messages per minute")

    def scenarios_assign(self, args: argparse.Namespace) -> None:
        with self.sessions.begin() as session:
            accounts.assign_scenario(session, args.scenario, args.account)
        print(f"{args.scenario} -> {args.account}")

    def scenarios_list(self, _args: argparse.Namespace) -> None:
        with self.sessions() as session:
            rows = session.execute(
                select(EmailScenario.scenario, EmailAccount.name)
                .join(EmailAccount, EmailAccount.id == EmailScenario.account_id)
                .order_by(EmailScenario.scenario)
            ).all()
        print(render_table(("scenario", "account"), [tuple(r) for r in rows]))

    def attachments_add(self, args: argparse.Namespace) -> None:
        path: Path = args.file
        content_type = (
            args.content_type or mimetypes.guess_type(path.name)[0] or ("application/octet-stream")
        )
        with self.sessions.begin() as session:
            accounts.add_default_attachment(
                session, args.scenario, path.name, path.read_bytes(), content_type
            )
        print(f"{args.scenario}: default attachment {path.name}")

    def policy_set(self, args: argparse.Namespace) -> None:
        with self.sessions.begin() as session:
            accounts.set_view_policy(session, args.user or "", POLICIES[args.policy])
        print(f"{args.user or 'all users'}: {POLICIES[args.policy].value}")

    def send(self, args: argparse.Namespace) -> None:
        body = _read_text(args.body_file) if args.body_file else (args.body or "")
        files = [
            Attachment(
                path.name,
                _read_bytes(path),
                mimetypes.guess_type(path.name)[0] or "application/octet-stream",
            )
            for path in args.attach or []
        ]
        with self.sessions.begin() as session:
            message = compose(
                session,
                created_by=args.as_user,
                scenario=args.scenario,
                to=args.to or "",
                cc=args.cc or "",
                bcc=args.bcc or "",
                subject=args.subject,
                body=body,
                attachments=files,
                now=utcnow(),
                queue=not args.draft,
                tz=self.settings.tz,
            )
            print(f"{message.status.value}: {message.id}")

    def outbox_list(self, _args: argparse.Namespace) -> None:
        with self.sessions() as session:
            rows = session.execute(select(OutboxMessage).order_by(OutboxMessage.created_at))
            table = [
                (
                    m.id,
                    m.status.value,
                    m.scenario,
                    ", ".join(m.envelope_to or m.to_addresses)[:40],
                    m.attempts,
                    (m.last_error or "")[:60],
                )
                for m in rows.scalars()
            ]
        # After a refusal for now, "to" shows the recipients still waiting.
        print(render_table(("id", "status", "scenario", "to", "attempts", "last error"), table))

    def outbox_retry(self, args: argparse.Namespace) -> None:
        with self.sessions.begin() as session:
            retry(session, args.id, utcnow())
        print(f"{args.id}: {OutboxStatus.QUEUED.value}")

    def sent_list(self, args: argparse.Namespace) -> None:
        with self.sessions() as session:
            rows = visible_sent_emails(session, args.as_user, no_record_access, args.limit)
            table = [
                (
                    e.sent_at.strftime("%Y-%m-%d %H:%M"),
                    e.created_by,
                    e.account_name,
                    e.scenario,
                    e.subject[:40],
                    ", ".join(e.to_addresses)[:40],
                    _notes(e),
                )
                for e in rows
            ]
        columns = ("sent", "by", "account", "scenario", "subject", "to", "notes")
        print(render_table(columns, table))

    def test(self, args: argparse.Namespace) -> None:
        """Compose a test message on the account and send it now, outside the job queue."""
        with self.sessions.begin() as session:
            message = compose(
                session,
                created_by=args.as_user,
                scenario="Test",
                to=args.to,
                subject="Test email from bc-jobqueue",
                body="This is a test email.",
                now=utcnow(),
                tz=self.settings.tz,
                account_name=args.account,
            )
            outbox_id = message.id
        engine = self.sessions.kw["bind"]
        connectors = connector_factory(engine, SecretBox.from_env(), ca_file=self.settings.ca_file)
        counters = MailDispatcher(engine, connectors).run(
            max_seconds=120, only=outbox_id, wait_for_window=True
        )
        if not counters.sent:
            with self.sessions() as session:
                failed = session.get(OutboxMessage, outbox_id)
                reason = failed.last_error if failed else "unknown"
            raise MailRuleError(f"the test email was not sent: {reason}")
        print(f"test email sent through {args.account} to {args.to}")


def add_mail_commands(
    sub: Any,
    settings: Settings,
    sessions: Callable[[], sessionmaker[Session]],
    parser_class: type[argparse.ArgumentParser],
) -> None:
    m = MailCommands(settings, sessions)
    email = sub.add_parser("email", help="outbound email").add_subparsers(
        dest="email_command", required=True, parser_class=parser_class
    )

    def cmd(
        parent: Any, name: str, handler: Callable[[argparse.Namespace], None], help_: str
    ) -> argparse.ArgumentParser:
        p: argparse.ArgumentParser = parent.add_parser(name, help=help_)
        p.set_defaults(handler=handler, command_name=name)
        return p

    acc = email.add_parser("accounts", help="email accounts").add_subparsers(
        dest="accounts_command", required=True, parser_class=parser_class
    )
    p = cmd(acc, "add", m.accounts_add, "add an account (the first one is the default)")
    p.add_argument("name")
    p.add_argument("--address", required=True)
    p.add_argument("--connector", choices=sorted(CONNECTORS), required=True)
    p.add_argument(
        "--rate-limit", type=whole("rate limit", 0, 100_000), help="messages per minute; 0 = none"
    )
    p.add_argument("--mailbox", help="Microsoft 365: the shared mailbox")
    p.add_argument("--server")
    p.add_argument("--port", type=whole("port", 1, 65535), default=587, help="1 to 65535")
    p.add_argument("--secure", choices=sorted(SECURE), default="starttls")
    p.add_argument("--auth", choices=sorted(AUTH), default="basic")
    p.add_argument("--user")
    p.add_argument("--password-env", help="read the password from this environment variable")
    p.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    p.add_argument("--tenant", help="Microsoft 365 or SMTP OAuth 2.0: the Entra tenant")
    p.add_argument("--client-id", help="the app registration's client id (Entra ID)")
    p.add_argument("--client-secret-env", help="environment variable holding the client secret")
    p.add_argument("--graph-url", default="https://graph.microsoft.com/v1.0")
    p.add_argument("--authority-host", default="https://login.microsoftonline.com")
    cmd(acc, "list", m.accounts_list, "list accounts")
    cmd(acc, "default", m.accounts_default, "make an account the default").add_argument("name")
    p = cmd(acc, "rate-limit", m.accounts_rate_limit, "messages per minute")
    p.add_argument("name")
    p.add_argument(
        "per_minute", type=whole("per minute", 0, 100_000), help="messages per minute; 0 = none"
    )

    sc = email.add_parser("scenarios", help="scenario assignment").add_subparsers(
        dest="scenarios_command", required=True, parser_class=parser_class
    )
    p = cmd(sc, "assign", m.scenarios_assign, "assign a scenario to an account")
    p.add_argument("scenario")
    p.add_argument("account")
    cmd(sc, "list", m.scenarios_list, "list assignments")
    p = cmd(email, "attach-default", m.attachments_add, "add a default attachment to a scenario")
    p.add_argument("scenario")
    p.add_argument("file", type=readable_file)
    p.add_argument("--content-type")
    p = cmd(email, "policy", m.policy_set, "set a view policy (blank user: all users)")
    p.add_argument("policy", choices=sorted(POLICIES))
    p.add_argument("--user")
    p = cmd(email, "send", m.send, "compose into the outbox")
    p.add_argument("--scenario", default="Default")
    p.add_argument("--to")
    p.add_argument("--cc")
    p.add_argument("--bcc")
    p.add_argument("--subject", required=True)
    p.add_argument("--body")
    p.add_argument("--body-file", type=readable_file, help="the body, UTF-8 text")
    p.add_argument("--attach", action="append", type=readable_file, help="a file to attach")
    p.add_argument("--as", dest="as_user", default="admin")
    p.add_argument("--draft", action="store_true")
    p = cmd(email, "test", m.test, "send a test message through an account now")
    p.add_argument("account")
    p.add_argument("--to", required=True)
    p.add_argument("--as", dest="as_user", default="admin")
    ob = email.add_parser("outbox", help="the outbox").add_subparsers(
        dest="outbox_command", required=True, parser_class=parser_class
    )
    cmd(ob, "list", m.outbox_list, "list the outbox")
    cmd(ob, "retry", m.outbox_retry, "send a Failed message again").add_argument("id")
    st = email.add_parser("sent", help="sent emails").add_subparsers(
        dest="sent_command", required=True, parser_class=parser_class
    )
    p = cmd(st, "list", m.sent_list, "sent emails the user may see")
    p.add_argument("--as", dest="as_user", required=True)
    p.add_argument("--limit", type=whole("limit", 1, 10_000), default=50)


def _notes(sent: Any) -> str:
    """What an admin should know of a sent email: refused recipients, a possible duplicate."""
    notes = [f"refused {a} ({why})" for a, why in (sent.refused_recipients or {}).items()]
    if sent.possible_duplicate:
        notes.append("possible duplicate")
    return "; ".join(notes)[:80]


def _read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:  # gone or unreadable since the arguments were checked
        raise MailRuleError(f"cannot read {str(path)!r}: {exc.strerror}") from None


def _read_text(path: Path) -> str:
    try:
        return _read_bytes(path).decode("utf-8")
    except UnicodeDecodeError:
        raise MailRuleError(f"the body file {str(path)!r} is not UTF-8 text") from None
