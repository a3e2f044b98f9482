"""Errors a user can cause. Each carries one message that says what to fix; the CLI exits with code 2."""


class UserError(Exception):
    """A mistake the user can fix (bad spec field, missing input, unreachable service)."""

    exit_code = 2


class SpecError(UserError):
    """A spec field is wrong; the message starts with the field's dotted path."""


class InputError(UserError):
    """An input file or folder is missing or unreadable; the message names it."""


class ServiceError(UserError):
    """A service (tracking server, object store) cannot be reached; the message names its address.

    `cause` keeps the client library's own error (raised `from None`, so the user sees one line) for a caller that
    words the message for another setting, as `factory lineage` does for a URI the user typed."""

    def __init__(self, message: str, cause: BaseException | None = None) -> None:
        super().__init__(message)
        self.cause = cause
