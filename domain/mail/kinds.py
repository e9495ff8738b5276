"""The choices of outbound email, spelled as Business Central shows them."""

from __future__ import annotations

from enum import StrEnum


class Connector(StrEnum):
    MICROSOFT_365 = "Microsoft 365"
    CURRENT_USER = "Current User"
    SMTP = "SMTP"


class SecureConnection(StrEnum):
    NONE = "None"
    STARTTLS = "STARTTLS"
    SSL = "SSL/TLS"


class SmtpAuthentication(StrEnum):
    ANONYMOUS = "Anonymous"
    BASIC = "Basic"
    OAUTH2 = "OAuth 2.0"


class SenderType(StrEnum):
    SPECIFIC_USER = "Specific User"
    CURRENT_USER = "Current User"


class OutboxStatus(StrEnum):
    DRAFT = "Draft"
    QUEUED = "Queued"
    PROCESSING = "Processing"
    FAILED = "Failed"


class ViewPolicy(StrEnum):
    OWN = "View own emails"
    ALL = "View all emails"
    ALL_RELATED = "View if access to all related records"
    ANY_RELATED = "View if access to any related records"


# Exchange Online's limit, Business Central's default for these connectors; 0 = no limit.
DEFAULT_RATE_LIMIT = {Connector.MICROSOFT_365: 30, Connector.CURRENT_USER: 30, Connector.SMTP: 0}
