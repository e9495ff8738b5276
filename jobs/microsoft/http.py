"""The one httpx client factory for Microsoft services: TLS verified against the system
store or a CA file (JOBQUEUE_CA_FILE, used by the sandbox), one timeout, keep-alive."""

from __future__ import annotations

import ssl
from collections.abc import Mapping

import httpx

DEFAULT_TIMEOUT = 60.0


def tls(verify: str | bool) -> ssl.SSLContext | bool:
    """A CA file path becomes a context trusting that file; True/False pass through."""
    return ssl.create_default_context(cafile=verify) if isinstance(verify, str) else verify


def http_client(
    *,
    verify: str | bool = True,
    timeout: float = DEFAULT_TIMEOUT,
    base_url: str = "",
    headers: Mapping[str, str] | None = None,
) -> httpx.Client:
    return httpx.Client(
        base_url=base_url, verify=tls(verify), timeout=timeout, headers=dict(headers or {})
    )
