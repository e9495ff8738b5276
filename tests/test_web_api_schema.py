"""Issue 16: the API against its own OpenAPI document (schemathesis generates requests
for every operation, valid and not): no answer is a server error."""

from __future__ import annotations

from typing import Any

import hypothesis
import schemathesis
from schemathesis.checks import not_a_server_error

from domain.clock import utcnow
from domain.users.accounts import add_user, create_token
from domain.users.models import Role
from runtime.settings import Settings
from tests.helpers import add


def test_no_request_makes_a_server_error(settings: Settings, engine: Any, sessions: Any) -> None:
    from admin.web.app import create_web_app

    with sessions.begin() as session:
        add_user(session, "ada", Role.ADMIN, "correct horse battery", utcnow())
        token = create_token(session, "ada", utcnow())
    add(sessions, settings, "HOURLY", "noop", description="every hour")
    schema = schemathesis.openapi.from_asgi("/api/openapi.json", create_web_app(settings, engine))
    headers = {"Authorization": f"Bearer {token}"}
    checked = 0
    for result in schema.get_all_operations():
        operation = result.ok()

        @hypothesis.given(case=operation.as_strategy())
        @hypothesis.settings(max_examples=30, deadline=None, database=None,
                             suppress_health_check=list(hypothesis.HealthCheck))  # fmt: skip
        def no_server_error(case: Any) -> None:
            case.call_and_validate(headers=headers, checks=[not_a_server_error])

        no_server_error()
        checked += 1
    assert checked >= 6  # every operation of the document was exercised
