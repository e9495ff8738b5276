"""A local Exchange Web Services endpoint over HTTPS: SOAP requests in, the responses
Exchange documents out, for the operations email logging uses (GetFolder, FindFolder,
FindItem, GetItem, MoveItem). Authentication is a bearer token the identity emulator
issued for Exchange, or basic credentials (Exchange on-premises). Faults: ErrorServerBusy
with BackOffMilliseconds (the EWS throttling answer), 401, 500.
"""

from __future__ import annotations

import base64
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from html import escape
from pathlib import Path
from typing import Any
from urllib.parse import quote

from lxml import etree
from werkzeug.routing import Map, Rule

from sandbox.https import HttpsEmulator, Request, Response

S = "http://schemas.xmlsoap.org/soap/envelope/"
M = "http://schemas.microsoft.com/exchange/services/2006/messages"
T = "http://schemas.microsoft.com/exchange/services/2006/types"
NS = {"s": S, "m": M, "t": T}
DISTINGUISHED = {
    "root": "Root",
    "msgfolderroot": "Top of Information Store",
    "inbox": "Inbox",
    "junkemail": "Junk Email",
    "sentitems": "Sent Items",
    "deleteditems": "Deleted Items",
}


def _id() -> str:
    return base64.b64encode(b"AAMk" + secrets.token_bytes(30)).decode()


@dataclass
class EwsFolder:
    id: str
    name: str
    parent: str | None
    distinguished: str | None = None
    items: dict[str, dict[str, Any]] = field(default_factory=dict)


@dataclass
class EwsMailbox:
    address: str
    delegates: set[str]
    folders: dict[str, EwsFolder] = field(default_factory=dict)

    def __post_init__(self) -> None:
        root = self.add("Root", None, "root")
        top = self.add(DISTINGUISHED["msgfolderroot"], root.id, "msgfolderroot")
        for key in ("inbox", "junkemail", "sentitems", "deleteditems"):
            self.add(DISTINGUISHED[key], top.id, key)

    def add(self, name: str, parent: str | None, distinguished: str | None = None) -> EwsFolder:
        folder = EwsFolder(_id(), name, parent, distinguished)
        self.folders[folder.id] = folder
        return folder

    def by_distinguished(self, key: str) -> EwsFolder | None:
        return next((f for f in self.folders.values() if f.distinguished == key), None)

    def path(self, path: str) -> EwsFolder:
        """Creates the folders of a path under the top of the information store."""
        folder = self.by_distinguished("msgfolderroot")
        assert folder is not None
        for name in [n for n in path.strip("/").split("/") if n]:
            child = next(
                (
                    f
                    for f in self.folders.values()
                    if f.parent == folder.id and f.name.lower() == name.lower()
                ),
                None,
            )
            folder = child or self.add(name, folder.id)
        return folder

    def find_item(self, item_id: str) -> tuple[EwsFolder, dict[str, Any]] | None:
        for folder in self.folders.values():
            if item_id in folder.items:
                return folder, folder.items[item_id]
        return None


def _kids(op: Any, path: str) -> list[Any]:
    found = op.find(path, NS)
    return list(found) if found is not None else []


def _mailbox_xml(tag: str, address: str | None) -> str:
    if address is None:
        return ""
    return (
        f"<t:{tag}><t:Mailbox><t:Name>{escape(address.split('@')[0])}</t:Name>"
        f"<t:EmailAddress>{escape(address)}</t:EmailAddress><t:RoutingType>SMTP</t:RoutingType>"
        f"<t:MailboxType>OneOff</t:MailboxType></t:Mailbox></t:{tag}>"
    )


def _recipients_xml(tag: str, addresses: Sequence[str]) -> str:
    if not addresses:
        return ""
    inner = "".join(
        f"<t:Mailbox><t:Name>{escape(a.split('@')[0])}</t:Name><t:EmailAddress>{escape(a)}"
        "</t:EmailAddress><t:RoutingType>SMTP</t:RoutingType></t:Mailbox>"
        for a in addresses
    )
    return f"<t:{tag}>{inner}</t:{tag}>"


class EwsEmulator(HttpsEmulator):
    def __init__(
        self,
        folder: Path,
        *,
        token_valid: Callable[[str], bool] = lambda _t: False,
        users: dict[str, str] | None = None,
    ) -> None:
        super().__init__(folder, "ews")
        self.token_valid = token_valid
        self.users = dict(users or {})  # basic authentication: user -> password
        self.mailboxes: dict[str, EwsMailbox] = {}
        self.url = f"{self.base}/EWS/Exchange.asmx"
        self.operations: list[str] = []
        self.busy = 0  # answer the next N requests with ErrorServerBusy

    def __enter__(self) -> EwsEmulator:
        super().__enter__()
        return self

    def add_mailbox(self, address: str, delegates: Sequence[str] = ()) -> EwsMailbox:
        box = EwsMailbox(address.lower(), {d.lower() for d in delegates})
        self.mailboxes[box.address] = box
        return box

    def deliver(
        self,
        mailbox: str,
        *,
        sender: str | None,
        to: Sequence[str] = (),
        cc: Sequence[str] = (),
        bcc: Sequence[str] = (),
        subject: str = "",
        received: datetime | None = None,
        folder: str = "Inbox",
        internet_message_id: str | None = None,
        has_attachments: bool = False,
    ) -> dict[str, Any]:
        box = self.mailboxes[mailbox.lower()]
        target = box.by_distinguished(folder.lower()) or box.path(folder)
        item_id = _id()
        item: dict[str, Any] = {
            "id": item_id,
            "changekey": secrets.token_hex(8),
            "subject": subject,
            "received": (received or datetime.now(UTC)).astimezone(UTC),
            "sender": sender,
            "to": list(to),
            "cc": list(cc),
            "bcc": list(bcc),
            "message_id": internet_message_id
            if internet_message_id is not None
            else f"<{secrets.token_hex(12)}@contoso.example>",
            "has_attachments": has_attachments,
        }
        with self.lock:
            target.items[item_id] = item
        return item

    # -- HTTP --------------------------------------------------------------------------------
    routes = Map(
        [
            Rule("/EWS/Exchange.asmx", endpoint="soap", methods=["POST"]),
            Rule("/ews/exchange.asmx", endpoint="soap", methods=["POST"]),
        ]
    )

    def unrouted(self, request: Request, status: int) -> Response:
        return status, {}, b""

    def soap(self, request: Request) -> Response:
        user = self._authenticated(str(request.headers.get("Authorization", "")))
        if user is None:
            return 401, {"WWW-Authenticate": 'Bearer realm="", Basic realm=""'}, b""
        with self.lock:
            if self.busy > 0:
                self.busy -= 1
                return self._server_busy()
        try:
            envelope = etree.fromstring(request.body)
        except etree.XMLSyntaxError:
            return self._fault("ErrorSchemaValidation", "The request failed schema validation.")
        if user == "app":
            impersonated = self._impersonated(envelope, request)
            if impersonated is None:
                # "Authenticate an EWS application by using OAuth": an app-only token acts
                # only through impersonation (the SOAP header and X-AnchorMailbox).
                return self._fault(
                    "ErrorInvalidExchangeImpersonationHeaderData",
                    "ExchangeImpersonation SOAP header must be present for this type of "
                    "OAuth token.",
                )
            user = impersonated
        body = envelope.find("s:Body", NS)
        operation = body[0] if body is not None and len(body) else None
        if operation is None:
            return self._fault("ErrorInvalidRequest", "The request is invalid.")
        name = etree.QName(operation).localname
        with self.lock:
            self.operations.append(name)
            handler = {
                "GetFolder": self._get_folder,
                "FindFolder": self._find_folder,
                "FindItem": self._find_item,
                "GetItem": self._get_item,
                "MoveItem": self._move_item,
            }.get(name)
            if handler is None:
                return self._fault("ErrorInvalidRequest", f"{name} is not supported here.")
            return self._envelope(handler(operation, user))

    @staticmethod
    def _impersonated(envelope: Any, request: Request) -> str | None:
        """The mailbox an app-only request impersonates, if it says so both ways."""
        address = envelope.findtext(
            "s:Header/t:ExchangeImpersonation/t:ConnectingSID/t:PrimarySmtpAddress", None, NS
        ) or envelope.findtext(
            "s:Header/t:ExchangeImpersonation/t:ConnectingSID/t:SmtpAddress", None, NS
        )
        anchor = str(request.headers.get("X-AnchorMailbox", ""))
        if not address or anchor.lower() != address.lower():
            return None
        return str(address).lower()

    def _authenticated(self, header: str) -> str | None:
        scheme, _, value = header.partition(" ")
        if scheme.lower() == "bearer" and self.token_valid(value):
            return "app"
        if scheme.lower() == "basic":
            try:
                user, _, password = base64.b64decode(value).decode().partition(":")
            except ValueError:
                return None
            if self.users.get(user.lower()) == password:
                return user.lower()
        return None

    def _envelope(self, body: str) -> Response:
        xml = (
            '<?xml version="1.0" encoding="utf-8"?>'
            f'<s:Envelope xmlns:s="{S}"><s:Header>'
            '<h:ServerVersionInfo MajorVersion="15" MinorVersion="20" MajorBuildNumber="7452" '
            f'MinorBuildNumber="28" Version="V2018_01_08" xmlns:h="{T}" xmlns="{T}"/>'
            f'</s:Header><s:Body xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" '
            f'xmlns:xsd="http://www.w3.org/2001/XMLSchema">{body}</s:Body></s:Envelope>'
        )
        return 200, {"Content-Type": "text/xml; charset=utf-8"}, xml.encode()

    def _fault(self, code: str, text: str, status: int = 500, detail: str = "") -> Response:
        xml = (
            '<?xml version="1.0" encoding="utf-8"?>'
            f'<s:Envelope xmlns:s="{S}"><s:Body><s:Fault>'
            f'<faultcode xmlns:a="{T}">a:{code}</faultcode>'
            f'<faultstring xml:lang="en-US">{escape(text)}</faultstring>'
            '<detail><e:ResponseCode xmlns:e="http://schemas.microsoft.com/exchange/services/'
            f'2006/errors">{code}</e:ResponseCode><e:Message xmlns:e="http://schemas.microsoft'
            f'.com/exchange/services/2006/errors">{escape(text)}</e:Message>{detail}</detail>'
            "</s:Fault></s:Body></s:Envelope>"
        )
        return status, {"Content-Type": "text/xml; charset=utf-8"}, xml.encode()

    def _server_busy(self) -> Response:
        return self._fault(
            "ErrorServerBusy",
            "The server cannot service this request right now. Try again later.",
            detail=f'<t:MessageXml xmlns:t="{T}"><t:Value Name="BackOffMilliseconds">200'
            "</t:Value></t:MessageXml>",
        )

    # -- operations ----------------------------------------------------------------------------
    @staticmethod
    def _wrap(operation: str, messages: list[str]) -> str:
        return (
            f'<m:{operation}Response xmlns:m="{M}" xmlns:t="{T}"><m:ResponseMessages>'
            + "".join(messages)
            + f"</m:ResponseMessages></m:{operation}Response>"
        )

    @staticmethod
    def _error(operation: str, code: str, text: str, inner: str = "") -> str:
        return (
            f'<m:{operation}ResponseMessage ResponseClass="Error"><m:MessageText>{escape(text)}'
            f"</m:MessageText><m:ResponseCode>{code}</m:ResponseCode>"
            f"<m:DescriptiveLinkKey>0</m:DescriptiveLinkKey>{inner}</m:{operation}ResponseMessage>"
        )

    def _box(self, address: str | None, user: str) -> EwsMailbox | str:
        box = self.mailboxes.get((address or "").lower())
        if box is None:
            return "ErrorNonExistentMailbox"
        if user != "app" and user not in box.delegates and user != box.address:
            return "ErrorAccessDenied"
        return box

    def _folders_of(self, ids: Any, user: str) -> list[tuple[EwsMailbox, EwsFolder] | str]:
        found: list[tuple[EwsMailbox, EwsFolder] | str] = []
        for element in ids:
            tag = etree.QName(element).localname
            if tag == "DistinguishedFolderId":
                box = self._box(element.findtext("t:Mailbox/t:EmailAddress", None, NS), user)
                if isinstance(box, str):
                    found.append(box)
                    continue
                folder = box.by_distinguished(element.get("Id", ""))
                found.append((box, folder) if folder else "ErrorFolderNotFound")
            elif tag == "FolderId":
                hit = next(
                    (
                        (b, b.folders[element.get("Id")])
                        for b in self.mailboxes.values()
                        if element.get("Id") in b.folders
                    ),
                    None,
                )
                if hit is None:
                    found.append("ErrorFolderNotFound")
                elif isinstance(self._box(hit[0].address, user), str):
                    found.append("ErrorAccessDenied")
                else:
                    found.append(hit)
        return found

    @staticmethod
    def _folder_xml(box: EwsMailbox, folder: EwsFolder) -> str:
        children = sum(1 for f in box.folders.values() if f.parent == folder.id)
        parent = (
            f'<t:ParentFolderId Id="{folder.parent}" ChangeKey="AQAAAA=="/>'
            if folder.parent
            else ""
        )
        return (
            f'<t:Folder><t:FolderId Id="{folder.id}" ChangeKey="AQAAAA=="/>{parent}'
            f"<t:FolderClass>IPF.Note</t:FolderClass><t:DisplayName>{escape(folder.name)}"
            f"</t:DisplayName><t:TotalCount>{len(folder.items)}</t:TotalCount>"
            f"<t:ChildFolderCount>{children}</t:ChildFolderCount><t:UnreadCount>0"
            "</t:UnreadCount></t:Folder>"
        )

    def _get_folder(self, op: Any, user: str) -> str:
        messages = []
        for hit in self._folders_of(_kids(op, "m:FolderIds"), user):
            if isinstance(hit, str):
                messages.append(self._error("GetFolder", hit, "The folder could not be opened."))
            else:
                messages.append(
                    '<m:GetFolderResponseMessage ResponseClass="Success"><m:ResponseCode>NoError'
                    f"</m:ResponseCode><m:Folders>{self._folder_xml(*hit)}</m:Folders>"
                    "</m:GetFolderResponseMessage>"
                )
        return self._wrap("GetFolder", messages)

    def _find_folder(self, op: Any, user: str) -> str:
        constant = op.find("m:Restriction//t:Constant", NS)  # DisplayName IsEqualTo
        wanted = constant.get("Value") if constant is not None else None
        messages = []
        for hit in self._folders_of(_kids(op, "m:ParentFolderIds"), user):
            if isinstance(hit, str):
                messages.append(self._error("FindFolder", hit, "The folder could not be opened."))
                continue
            box, parent = hit
            children = [
                f
                for f in box.folders.values()
                if f.parent == parent.id and (wanted is None or f.name.lower() == wanted.lower())
            ]
            messages.append(
                '<m:FindFolderResponseMessage ResponseClass="Success"><m:ResponseCode>NoError'
                f'</m:ResponseCode><m:RootFolder IndexedPagingOffset="{len(children)}" '
                f'TotalItemsInView="{len(children)}" IncludesLastItemInRange="true"><t:Folders>'
                + "".join(self._folder_xml(box, f) for f in children)
                + "</t:Folders></m:RootFolder></m:FindFolderResponseMessage>"
            )
        return self._wrap("FindFolder", messages)

    def _item_xml(self, item: dict[str, Any], folder: EwsFolder, full: bool) -> str:
        head = f'<t:ItemId Id="{item["id"]}" ChangeKey="{item["changekey"]}"/>'
        if not full:
            return f"<t:Message>{head}</t:Message>"
        link = (
            f"{self.base}/owa/?ItemID={quote(item['id'], safe='')}"
            "&exvsurl=1&viewmodel=ReadMessageItem"
        )
        received = item["received"].strftime("%Y-%m-%dT%H:%M:%SZ")
        return (
            f'<t:Message>{head}<t:ParentFolderId Id="{folder.id}" ChangeKey="AQAAAA=="/>'
            f"<t:ItemClass>IPM.Note</t:ItemClass><t:Subject>{escape(item['subject'])}</t:Subject>"
            f"<t:DateTimeReceived>{received}</t:DateTimeReceived>"
            f"<t:HasAttachments>{str(item['has_attachments']).lower()}</t:HasAttachments>"
            f"<t:WebClientReadFormQueryString>{escape(link)}</t:WebClientReadFormQueryString>"
            + _mailbox_xml("Sender", item["sender"])
            + _recipients_xml("ToRecipients", item["to"])
            + _recipients_xml("CcRecipients", item["cc"])
            + _recipients_xml("BccRecipients", item["bcc"])
            + _mailbox_xml("From", item["sender"])
            + (
                f"<t:InternetMessageId>{escape(item['message_id'])}</t:InternetMessageId>"
                if item["message_id"]
                else ""
            )
            + "</t:Message>"
        )

    def _find_item(self, op: Any, user: str) -> str:
        view = op.find("m:IndexedPageItemView", NS)
        offset = int(view.get("Offset", "0")) if view is not None else 0
        limit = int(view.get("MaxEntriesReturned", "1000")) if view is not None else 1000
        order = op.find("m:SortOrder/t:FieldOrder", NS)
        descending = order is not None and order.get("Order") == "Descending"
        messages = []
        for hit in self._folders_of(_kids(op, "m:ParentFolderIds"), user):
            if isinstance(hit, str):
                messages.append(self._error("FindItem", hit, "The folder could not be opened."))
                continue
            _, folder = hit
            ordered = sorted(folder.items.values(), key=lambda i: i["received"], reverse=descending)
            page = ordered[offset : offset + limit]
            last = offset + len(page) >= len(ordered)
            messages.append(
                '<m:FindItemResponseMessage ResponseClass="Success"><m:ResponseCode>NoError'
                f'</m:ResponseCode><m:RootFolder IndexedPagingOffset="{offset + len(page)}" '
                f'TotalItemsInView="{len(ordered)}" IncludesLastItemInRange="{str(last).lower()}">'
                "<t:Items>"
                + "".join(self._item_xml(i, folder, full=False) for i in page)
                + "</t:Items></m:RootFolder></m:FindItemResponseMessage>"
            )
        return self._wrap("FindItem", messages)

    def _items(self, op: Any, user: str) -> list[tuple[EwsFolder, dict[str, Any]] | str]:
        found: list[tuple[EwsFolder, dict[str, Any]] | str] = []
        for element in _kids(op, "m:ItemIds"):
            hit = None
            for box in self.mailboxes.values():
                hit = box.find_item(element.get("Id", ""))
                if hit is not None:
                    if isinstance(self._box(box.address, user), str):
                        hit = None
                    break
            found.append(hit or "ErrorItemNotFound")
        return found

    def _get_item(self, op: Any, user: str) -> str:
        messages = []
        for hit in self._items(op, user):
            if isinstance(hit, str):
                messages.append(
                    self._error(
                        "GetItem",
                        hit,
                        "The specified object was not found in the store.",
                        "<m:Items/>",
                    )
                )
                continue
            folder, item = hit
            messages.append(
                '<m:GetItemResponseMessage ResponseClass="Success"><m:ResponseCode>NoError'
                f"</m:ResponseCode><m:Items>{self._item_xml(item, folder, full=True)}</m:Items>"
                "</m:GetItemResponseMessage>"
            )
        return self._wrap("GetItem", messages)

    def _move_item(self, op: Any, user: str) -> str:
        targets = self._folders_of(_kids(op, "m:ToFolderId"), user)
        if not targets or isinstance(targets[0], str):
            code = targets[0] if targets and isinstance(targets[0], str) else "ErrorFolderNotFound"
            count = len(_kids(op, "m:ItemIds"))
            return self._wrap(
                "MoveItem",
                [
                    self._error(
                        "MoveItem", str(code), "The target folder was not found.", "<m:Items/>"
                    )
                ]
                * count,
            )
        _, destination = targets[0]
        messages = []
        for hit in self._items(op, user):
            if isinstance(hit, str):
                messages.append(
                    self._error(
                        "MoveItem",
                        hit,
                        "The specified object was not found in the store.",
                        "<m:Items/>",
                    )
                )
                continue
            source, item = hit
            del source.items[item["id"]]
            moved = {**item, "id": _id(), "changekey": secrets.token_hex(8)}
            destination.items[moved["id"]] = moved
            messages.append(
                '<m:MoveItemResponseMessage ResponseClass="Success"><m:ResponseCode>NoError'
                f"</m:ResponseCode><m:Items>{self._item_xml(moved, destination, full=False)}"
                "</m:Items></m:MoveItemResponseMessage>"
            )
        return self._wrap("MoveItem", messages)
