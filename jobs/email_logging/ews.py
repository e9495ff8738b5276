"""The shared mailbox through Exchange Web Services (the current experience), with
exchangelib: Exchange Online (OAuth 2.0 app-only token from MSAL) or Exchange
on-premises (basic authentication).

Only the queue folder is read (FindItem + GetItem, oldest first, one page per batch);
read messages move to the storage folder (one MoveItem per batch), and their links are
read from the moved items (`WebClientReadFormQueryString`), because EWS ids change on
a move. Server-busy answers are waited out by exchangelib's fault-tolerant retry policy;
a refused token is renewed once.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar

import requests
import requests.adapters
from exchangelib import (
    BASIC,
    DELEGATE,
    IMPERSONATION,
    OAUTH2,
    Account,
    Configuration,
    Credentials,
    Identity,
    OAuth2Credentials,
    Version,
)
from exchangelib.errors import (
    ErrorServerBusy,
    EWSError,
    TransportError,
    UnauthorizedError,
)
from exchangelib.folders import SHALLOW, BaseFolder, SingleFolderQuerySet
from exchangelib.protocol import BaseProtocol
from exchangelib.version import EXCHANGE_2013
from oauthlib.oauth2 import OAuth2Token

from domain.interactions.matching import BadMessage, message
from jobs.email_logging.mailbox import Fetched, MailboxError, Moved
from jobs.microsoft.identity import ClientCredentialsTokens, SignInError
from runtime.logs import get_logger
from runtime.secrets import Secret

FIELDS = (
    "message_id",
    "subject",
    "author",
    "sender",
    "to_recipients",
    "cc_recipients",
    "bcc_recipients",
    "datetime_received",
    "has_attachments",
    "web_client_read_form_query_string",
)
MAX_WAIT_SECONDS = 120.0
MAX_TRIES = 5
log = get_logger("email_logging.ews")
T = TypeVar("T")


class _MsalCredentials(OAuth2Credentials):  # type: ignore[misc]
    """exchangelib's OAuth 2.0 credentials fed by our MSAL token cache (exchangelib would
    otherwise fetch tokens from the public cloud itself)."""

    def __init__(self, tokens: ClientCredentialsTokens, identity: Identity) -> None:
        super().__init__(client_id="msal", client_secret=None, identity=identity)
        self._tokens = tokens

    def session_params(self) -> dict[str, Any]:
        with self.lock:
            if self.access_token is None:
                self.renew(refresh=False)
            return {"token": self.access_token}

    def renew(self, refresh: bool = True) -> None:
        token = self._tokens.token(refresh=refresh).reveal()
        self.access_token = OAuth2Token({"access_token": token, "token_type": "Bearer"})


class EwsSharedMailbox:
    def __init__(
        self,
        mailbox: str,
        *,
        ews_url: str,
        account: str,
        tokens: ClientCredentialsTokens | None,
        password: Secret | None,
        queue_folder: str = "Inbox",
        storage_folder: str = "Archive",
        verify: str | bool = True,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.sleep = sleep
        self.mailbox, self.queue_path, self.storage_path = mailbox, queue_folder, storage_folder
        self.credentials: _MsalCredentials | Credentials
        if tokens is not None:
            self.credentials = _MsalCredentials(tokens, Identity(primary_smtp_address=mailbox))
            auth = OAUTH2
        elif password is not None:
            self.credentials = Credentials(account, password.reveal())
            auth = BASIC
        else:
            raise MailboxError("EWS needs a token source or a password")
        self.config = Configuration(
            service_endpoint=ews_url,
            credentials=self.credentials,
            auth_type=auth,
            version=Version(build=EXCHANGE_2013),
        )
        _trust(verify)
        self._account: Account | None = None
        self._queue: BaseFolder | None = None
        self._storage: BaseFolder | None = None
        self._changekeys: dict[str, str | None] = {}

    # -- the folders -------------------------------------------------------------------------
    @property
    def account(self) -> Account:
        if self._account is None:
            # An app-only token acts only by impersonating the mailbox ("Authenticate an EWS
            # application by using OAuth"): the ExchangeImpersonation header and
            # X-AnchorMailbox on every request. A signed-in account (basic) is a delegate.
            app_only = isinstance(self.credentials, _MsalCredentials)
            self._account = Account(
                primary_smtp_address=self.mailbox,
                config=self.config,
                autodiscover=False,
                access_type=IMPERSONATION if app_only else DELEGATE,
            )
        return self._account

    def _resolve(self, path: str) -> BaseFolder:
        names = [n for n in path.strip("/").split("/") if n]
        if names[0].lower() == "inbox":
            folder: BaseFolder = self.account.inbox  # by its distinguished id: any language
            names = names[1:]
        else:
            folder = self.account.msg_folder_root
        for name in names:
            found = list(
                SingleFolderQuerySet(account=self.account, folder=folder)
                .depth(SHALLOW)
                .only("name")
                .filter(name=name)
            )
            if not found or isinstance(found[0], Exception):
                raise MailboxError(f"folder {path!r} not found in {self.mailbox}")
            folder = found[0]
        return folder

    @property
    def queue(self) -> BaseFolder:
        if self._queue is None:
            self._queue = self._call(lambda: self._resolve(self.queue_path))
        return self._queue

    @property
    def storage(self) -> BaseFolder:
        if self._storage is None:
            self._storage = self._call(lambda: self._resolve(self.storage_path))
        return self._storage

    # -- SharedMailbox -----------------------------------------------------------------------
    def check(self) -> list[str]:
        queue, storage = self.queue, self.storage
        return [
            f"signed in to {self.config.service_endpoint}",
            f"queue folder {self.queue_path}: {self._call(queue.all().count)} items",
            f"storage folder {self.storage_path} found ({storage.name})",
        ]

    def pages(self, size: int) -> Iterator[list[Fetched]]:
        """FindItem pages by offset (IndexedPageItemView), which is how EWS pages; the
        folder does not change while it is read (moves come after)."""
        query = self.queue.all().order_by("datetime_received").only(*FIELDS)
        offset = 0
        while True:
            page = query[offset : offset + size]
            items: list[Any] = self._call(lambda: list(page))  # noqa: B023 (called at once)
            if not items:
                return
            fetched = [self._fetched(item) for item in items]
            self._changekeys.update(
                {
                    f.item_id: getattr(i, "changekey", None)
                    for f, i in zip(fetched, items, strict=True)
                }
            )
            yield fetched
            if len(items) < size:
                return
            offset += len(items)

    def move(self, item_ids: Sequence[str]) -> Moved:
        moved = Moved()
        if not item_ids:
            return moved
        storage = self.storage
        ids = [(i, self._changekeys.get(i)) for i in item_ids]
        results = self._call(lambda: self.account.bulk_move(ids=ids, to_folder=storage))
        new_ids: dict[str, tuple[str, str]] = {}
        for item_id, result in zip(item_ids, results, strict=True):
            if isinstance(result, Exception):
                moved.failed[item_id] = f"{type(result).__name__}: {result}"
            else:
                new_ids[item_id] = result
        links: dict[str, str] = {}
        if new_ids:
            fetched = self._call(
                lambda: list(
                    self.account.fetch(
                        ids=list(new_ids.values()),
                        folder=storage,
                        only_fields=["web_client_read_form_query_string"],
                    )
                )
            )
            for old, item in zip(new_ids, fetched, strict=True):
                link = "" if isinstance(item, Exception) else item.web_client_read_form_query_string
                links[old] = link or ""
        for old in new_ids:
            moved.links[old] = links.get(old, "") or "moved"
            self._changekeys.pop(old, None)
        return moved

    def close(self) -> None:
        if self._account is not None:
            self._account.protocol.close()

    # -- helpers -----------------------------------------------------------------------------
    @staticmethod
    def _fetched(item: Any) -> Fetched:
        if isinstance(item, Exception):
            return Fetched("", error=f"{type(item).__name__}: {item}")
        item_id = str(item.id or "")
        try:
            author = item.author or item.sender
            return Fetched(
                item_id,
                message(
                    item_id=item_id,
                    message_id=item.message_id,
                    sender=author.email_address if author is not None else None,
                    to=[m.email_address for m in item.to_recipients or []],
                    cc=[m.email_address for m in item.cc_recipients or []],
                    bcc=[m.email_address for m in item.bcc_recipients or []],
                    subject=item.subject,
                    received_at=item.datetime_received,
                    has_attachments=bool(item.has_attachments),
                    link=item.web_client_read_form_query_string or "",
                ),
            )
        except BadMessage as exc:
            return Fetched(item_id, error=str(exc))

    def _call(self, operation: Callable[[], T]) -> T:
        """Runs an EWS operation: a refused token is renewed once, ErrorServerBusy waited
        out for the back-off EWS asks; other errors become MailboxError."""
        renewed = False
        for attempt in range(1, MAX_TRIES + 1):
            try:
                return operation()
            except UnauthorizedError:
                if renewed or not isinstance(self.credentials, _MsalCredentials):
                    raise MailboxError(f"EWS refused the credentials for {self.mailbox}") from None
                renewed = True
                try:
                    self.credentials.renew()
                except SignInError as exc:
                    raise MailboxError(str(exc)) from None
                self.account.protocol.close()
            except ErrorServerBusy as exc:
                wait = min(float(exc.back_off or 2.0**attempt), MAX_WAIT_SECONDS)
                log.warning("ews.server_busy", back_off=wait, attempt=attempt)
                if attempt == MAX_TRIES:
                    raise MailboxError(f"EWS stayed busy: {exc}") from None
                self.sleep(wait)
            except SignInError as exc:
                raise MailboxError(str(exc)) from None
            except (EWSError, TransportError) as exc:
                raise MailboxError(f"EWS: {type(exc).__name__}: {exc}") from None
        raise MailboxError("EWS kept refusing the request")


class _TrustingAdapter(requests.adapters.HTTPAdapter):
    """exchangelib builds its own sessions; this adapter makes them verify TLS against
    the configured CA file (JOBQUEUE_CA_FILE), whatever REQUESTS_CA_BUNDLE says."""

    verify: str | bool = True

    def send(self, request: Any, *args: Any, **kwargs: Any) -> requests.Response:
        if self.verify is not True:
            kwargs["verify"] = self.verify
        return super().send(request, *args, **kwargs)


def _trust(verify: str | bool) -> None:
    _TrustingAdapter.verify = verify
    BaseProtocol.HTTP_ADAPTER_CLS = _TrustingAdapter
