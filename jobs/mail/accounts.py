"""Admin operations on email accounts, scenarios, default attachments and view policies.
Each validates before it writes; exactly one account is the default whenever any exists."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from domain.mail.kinds import (
    DEFAULT_RATE_LIMIT,
    Connector,
    SecureConnection,
    SenderType,
    SmtpAuthentication,
    ViewPolicy,
)
from domain.mail.models import (
    DefaultAttachment,
    EmailAccount,
    EmailScenario,
    EmailViewPolicy,
    GraphSettings,
    SmtpSettings,
    SubstituteSender,
)
from domain.mail.rules import MailRuleError, check_attachment_sizes, parse_address
from runtime.secrets import Secret, SecretBox


@dataclass(frozen=True)
class GraphOptions:
    tenant: str
    client_id: str
    client_secret: Secret
    graph_url: str = "https://graph.microsoft.com/v1.0"
    authority_host: str = "https://login.microsoftonline.com"


@dataclass(frozen=True)
class SmtpOptions:
    server: str
    port: int = 587
    secure_connection: SecureConnection = SecureConnection.STARTTLS
    authentication: SmtpAuthentication = SmtpAuthentication.BASIC
    user_name: str = ""
    password: Secret | None = None
    sender_type: SenderType = SenderType.SPECIFIC_USER


def get_account(session: Session, name: str) -> EmailAccount:
    account = session.execute(
        select(EmailAccount).where(EmailAccount.name == name)
    ).scalar_one_or_none()
    if account is None:
        raise MailRuleError(f"no email account named {name!r}")
    return account


def add_account(
    session: Session,
    name: str,
    address: str,
    connector: Connector,
    *,
    rate_limit: int | None = None,
    mailbox: str | None = None,
    smtp: SmtpOptions | None = None,
    graph: GraphOptions | None = None,
    secrets: SecretBox | None = None,
) -> EmailAccount:
    """The first account becomes the default."""
    if not name.strip():
        raise MailRuleError("an email account needs a name")
    if session.execute(select(EmailAccount.id).where(EmailAccount.name == name)).first():
        raise MailRuleError(f"an email account named {name!r} exists already")
    address = parse_address(address)
    limit = DEFAULT_RATE_LIMIT[connector] if rate_limit is None else rate_limit
    if limit < 0:
        raise MailRuleError("the rate limit is messages per minute, 0 or more (0 = no limit)")
    if connector == Connector.SMTP and smtp is None:
        raise MailRuleError("an SMTP account needs a server")
    if smtp is not None and smtp.authentication == SmtpAuthentication.OAUTH2:
        if graph is None:
            raise MailRuleError(
                "SMTP with OAuth 2.0 needs an app registration: tenant, client id and secret"
            )
        if not smtp.user_name:
            raise MailRuleError("SMTP with OAuth 2.0 needs the user name (mailbox) to sign in as")
    if connector != Connector.SMTP and graph is None:
        raise MailRuleError(f"a {connector.value} account needs a tenant, client id and secret")
    if connector == Connector.MICROSOFT_365:
        mailbox = parse_address(mailbox or address)
    first = not session.execute(select(func.count()).select_from(EmailAccount)).scalar_one()
    account = EmailAccount(
        name=name.strip(),
        address=address,
        connector=connector,
        rate_limit_per_minute=limit,
        is_default=first,
        mailbox=mailbox,
    )
    session.add(account)
    session.flush()
    if smtp is not None:
        _add_smtp(session, account, smtp, secrets)
    if graph is not None:
        if secrets is None:
            raise MailRuleError("no secret key to store the client secret with")
        if not (graph.tenant.strip() and graph.client_id.strip()):
            raise MailRuleError("a Microsoft 365 account needs a tenant and a client id")
        session.add(
            GraphSettings(
                account_id=account.id,
                tenant=graph.tenant.strip(),
                client_id=graph.client_id.strip(),
                client_secret_encrypted=secrets.encrypt(graph.client_secret),
                graph_url=graph.graph_url,
                authority_host=graph.authority_host,
            )
        )
    return account


def _add_smtp(
    session: Session, account: EmailAccount, smtp: SmtpOptions, secrets: SecretBox | None
) -> None:
    if not smtp.server.strip():
        raise MailRuleError("an SMTP account needs a server")
    if not 0 < smtp.port < 65536:
        raise MailRuleError(f"SMTP port must be 1 to 65535, got {smtp.port}")
    needs_password = smtp.authentication == SmtpAuthentication.BASIC
    if needs_password and (smtp.password is None or not smtp.user_name):
        raise MailRuleError("basic authentication needs a user name and a password")
    encrypted = None
    if smtp.password is not None:
        if secrets is None:
            raise MailRuleError("no secret key to store the password with")
        encrypted = secrets.encrypt(smtp.password)
    session.add(
        SmtpSettings(
            account_id=account.id,
            server=smtp.server.strip(),
            port=smtp.port,
            secure_connection=smtp.secure_connection,
            authentication=smtp.authentication,
            user_name=smtp.user_name,
            password_encrypted=encrypted,
            sender_type=smtp.sender_type,
        )
    )


def set_default(session: Session, name: str) -> EmailAccount:
    account = get_account(session, name)
    session.execute(update(EmailAccount).where(EmailAccount.is_default).values(is_default=False))
    session.flush()
    account.is_default = True
    return account


def default_account_id(session: Session) -> int | None:
    return session.execute(
        select(EmailAccount.id).where(EmailAccount.is_default)
    ).scalar_one_or_none()


def delete_account(session: Session, name: str) -> None:
    account = get_account(session, name)
    others = session.execute(select(func.count()).where(EmailAccount.id != account.id)).scalar_one()
    if account.is_default and others:
        raise MailRuleError(f"{name!r} is the default account; make another one the default first")
    session.delete(account)


def set_rate_limit(session: Session, name: str, per_minute: int) -> EmailAccount:
    if per_minute < 0:
        raise MailRuleError("the rate limit is messages per minute, 0 or more (0 = no limit)")
    account = get_account(session, name)
    account.rate_limit_per_minute = per_minute
    return account


def assign_scenario(session: Session, scenario: str, account_name: str) -> None:
    """A scenario belongs to one account at a time: assigning it again moves it."""
    scenario = scenario.strip()
    if not scenario:
        raise MailRuleError("a scenario needs a name")
    account = get_account(session, account_name)
    existing = session.get(EmailScenario, scenario)
    if existing is None:
        session.add(EmailScenario(scenario=scenario, account_id=account.id))
    else:
        existing.account_id = account.id


def unassign_scenario(session: Session, scenario: str) -> None:
    existing = session.get(EmailScenario, scenario)
    if existing is not None:
        session.delete(existing)


def scenario_assignments(session: Session) -> dict[str, int]:
    return dict(session.execute(select(EmailScenario.scenario, EmailScenario.account_id)).all())


def add_default_attachment(
    session: Session, scenario: str, filename: str, data: bytes, content_type: str
) -> DefaultAttachment:
    existing = session.execute(
        select(DefaultAttachment.filename, DefaultAttachment.size).where(
            DefaultAttachment.scenario == scenario
        )
    ).all()
    check_attachment_sizes([*((f, s) for f, s in existing), (filename, len(data))])
    attachment = DefaultAttachment(
        scenario=scenario, filename=filename, content_type=content_type, size=len(data), data=data
    )
    session.add(attachment)
    return attachment


def set_view_policy(session: Session, user_id: str, policy: ViewPolicy) -> None:
    """A blank user sets the policy of every user without one of their own."""
    existing = session.get(EmailViewPolicy, user_id)
    if existing is None:
        session.add(EmailViewPolicy(user_id=user_id, policy=policy))
    else:
        existing.policy = policy


def set_substitute_sender(session: Session, account_name: str, send_as: str) -> None:
    """Send As / Send on Behalf: one substitute account for all processes."""
    account = get_account(session, account_name)
    address = parse_address(send_as)
    existing = session.get(SubstituteSender, 1)
    if existing is None:
        session.add(SubstituteSender(id=1, account_id=account.id, send_as=address))
    else:
        existing.account_id, existing.send_as = account.id, address
