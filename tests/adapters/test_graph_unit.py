"""Graph failures mapped to project errors: retryable or not, and a fix naming the permission."""

from __future__ import annotations

import httpx
from msgraph.generated.models.o_data_errors.main_error import MainError
from msgraph.generated.models.o_data_errors.o_data_error import ODataError

from onboarding.adapters.graph import ASSIGN_PERMISSION, NewPassword, graph_error
from onboarding.errors import InvalidRequestError, NotFoundError, PermissionDeniedError, TransientError


def odata(
    status: int, code: str = "", message: str = "", headers: dict[str, str] | None = None
) -> ODataError:
    error = ODataError(error=MainError(code=code, message=message))
    error.response_status_code = status
    error.response_headers = httpx.Headers(headers or {})
    return error


def test_throttling_carries_retry_after() -> None:
    error = graph_error(odata(429, "TooManyRequests", headers={"Retry-After": "7"}), "read the app")
    assert isinstance(error, TransientError) and error.retry_after == 7
    assert isinstance(graph_error(odata(503), "read the app"), TransientError)
    assert isinstance(graph_error(httpx.ConnectError("refused"), "read the app"), TransientError)


def test_forbidden_names_the_permission_to_grant() -> None:
    error = graph_error(
        odata(403, "Authorization_RequestDenied", "Insufficient privileges"),
        "assign",
        permission=ASSIGN_PERMISSION,
    )
    assert isinstance(error, PermissionDeniedError)
    assert "AppRoleAssignment.ReadWrite.All" in error.fix


def test_not_found_and_bad_requests_state_the_projects_words_and_keep_graphs_for_classifying() -> None:
    assert isinstance(
        graph_error(odata(404, "Request_ResourceNotFound", "Resource 'x' does not exist"), "read"),
        NotFoundError,
    )
    token = "eyJhbGciOiJSUzI1NiJ9.eyJhdWQiOiJodHRwcyJ9.c2lnbmF0dXJl"
    bad = graph_error(odata(400, "Request_BadRequest", f"Invalid value {token}"), "update the app")
    assert isinstance(bad, InvalidRequestError)
    assert str(bad) == "Microsoft Graph refused to update the app (HTTP 400)."
    assert bad.code == "Request_BadRequest"
    # Graph's words stay on the exception for the adapter's own classification, redacted.
    assert "Invalid value" in bad.upstream and token not in bad.upstream
    prose = graph_error(odata(400, "Graph said <b>click here</b>", "x"), "update the app")
    assert "click" not in prose.code  # a "code" that is prose is not kept either


def test_new_password_repr_hides_the_secret() -> None:
    from datetime import UTC, datetime

    new = NewPassword("key", "s3cr3t-value", datetime(2027, 1, 1, tzinfo=UTC))
    assert "s3cr3t-value" not in repr(new)


def test_no_backing_application_object_is_classified_by_its_code_not_its_words() -> None:
    from msgraph.generated.models.o_data_errors.error_details import ErrorDetails

    from onboarding.adapters.graph import NO_BACKING_APPLICATION

    error = ODataError(
        error=MainError(
            code="Request_BadRequest",
            message="worded differently tomorrow",
            details=[ErrorDetails(code="NoBackingApplicationObject", message="", target="appId")],
        )
    )
    error.response_status_code = 400
    mapped = graph_error(error, "create the app's service principal")
    assert isinstance(mapped, InvalidRequestError) and mapped.code == NO_BACKING_APPLICATION
