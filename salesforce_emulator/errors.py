"""Salesforce-shaped errors: one exception carrying status, errorCode, message and fields."""
from __future__ import annotations


class ApiError(Exception):
    """A failure Salesforce would report as `[{"message","errorCode","fields"}]`."""

    def __init__(self, code: str, message: str, fields: list[str] | tuple = (), status: int = 400):
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.fields = list(fields)
        self.status = status

    def body(self) -> list[dict]:
        """The body of a single-record or request-level error response."""
        return [{"message": self.message, "errorCode": self.code, "fields": self.fields}]

    def record_error(self) -> dict:
        """The entry of an `errors` list in a collection / save result."""
        return {"statusCode": self.code, "message": self.message, "fields": self.fields}


def not_found() -> ApiError:
    return ApiError("NOT_FOUND", "The requested resource does not exist", status=404)


def unsupported_type(name: str) -> ApiError:
    return ApiError(
        "INVALID_TYPE",
        f"sObject type '{name}' is not supported. If you are attempting to use a custom object, "
        "be sure to append the '__c' after the entity name. Please reference your WSDL or the "
        "describe call for the appropriate names.",
    )


def json_parser_error(detail: str) -> ApiError:
    return ApiError("JSON_PARSER_ERROR", detail)
