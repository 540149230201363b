"""Schemathesis checks of this server's own: every error is a FHIR OperationOutcome."""

import schemathesis


@schemathesis.check
def error_is_operation_outcome(ctx, response, case):
    """A 4xx or 5xx response carries an OperationOutcome, as FHIR requires of errors."""
    if response.status_code < 400:
        return None
    try:
        body = response.json()
    except Exception as error:  # noqa: BLE001 - any parse failure is the finding
        raise AssertionError(
            f"{response.status_code} response is not JSON: {response.text[:200]!r}"
        ) from error
    if not isinstance(body, dict) or body.get("resourceType") != "OperationOutcome":
        raise AssertionError(
            f"{response.status_code} response is not an OperationOutcome: {response.text[:200]!r}"
        )
    if not body.get("issue"):
        raise AssertionError(f"{response.status_code} OperationOutcome has no issue")
    return None
