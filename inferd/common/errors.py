"""The one exception tree of inferd. Domain errors know nothing of HTTP.

    InferdError
    ├── ConfigError            a setting has a bad value (start-up stops)
    ├── StoreError             the state directory cannot be used
    │   └── CorruptStateError  a file in it is not what inferd wrote
    ├── SourceError            the model source could not resolve or fetch a model
    ├── ModelLoadError         a slot's model could not be loaded or failed its smoke test
    ├── NoModelError           no model is published yet
    ├── ServiceUnavailableError  this worker could not open the state directory
    ├── ForbiddenError         an admin request without the admin token
    ├── BadRequestError        a prediction request is malformed
    │   ├── PayloadTooLargeError
    │   ├── UnsupportedMediaTypeError
    │   └── RequestTimeoutError  the client sent its body too slowly (INFERD_READ_TIMEOUT)
    ├── ReloadBusyError        another reload holds the lock for too long
    │   └── AdminBusyError     this worker already spends its share of threads on admin calls
    ├── ReloadProcessError     the reload's child process overran its time or died
    ├── ReloadFailedError      an admin reload or rollback failed (wraps the cause)
    └── NoPreviousSlotError    rollback has nothing to go back to

The HTTP status of each lives in one table, `inferd.web.errors`; the CLI's exit
codes live in `inferd.commands.cli`.
"""

from __future__ import annotations


class InferdError(Exception):
    """Base of every error inferd raises on purpose."""


class ConfigError(InferdError):
    """A setting has a value inferd cannot use; the message names variable and value."""


class StoreError(InferdError):
    """The state directory or a file in it cannot be used."""


class CorruptStateError(StoreError):
    """A file in the state directory is not in the format inferd writes."""


class SourceError(InferdError):
    """The configured model source could not resolve or fetch a model."""


class ModelLoadError(InferdError):
    """A slot's model could not be loaded, or its smoke prediction failed."""


class NoModelError(InferdError):
    """No slot has been published yet, so there is nothing to predict with."""


class BadRequestError(InferdError):
    """A prediction request cannot be understood; the message says what was wrong."""


class PayloadTooLargeError(BadRequestError):
    """The request body is larger than INFERD_MAX_BODY_BYTES."""


class UnsupportedMediaTypeError(BadRequestError):
    """The request's Content-Type is not one the protocol reads."""


class RequestTimeoutError(BadRequestError):
    """The request body did not arrive within INFERD_READ_TIMEOUT seconds."""


class ReloadBusyError(InferdError):
    """Another reload kept the reload lock longer than this one was willing to wait."""


class AdminBusyError(ReloadBusyError):
    """This worker already holds as many admin calls as it may (inferd.reloading.coalesce):
    the caller is told to come back rather than take a thread predictions need."""


class ReloadProcessError(InferdError):
    """The child process running a reload did not answer within INFERD_RELOAD_TIMEOUT
    (it was killed) or exited without an answer."""


class NoPreviousSlotError(InferdError):
    """Rollback was asked for but no earlier slot with a different model is kept."""


class ServiceUnavailableError(InferdError):
    """This worker could not open the state directory at start, so it has no model
    manager: it can neither predict nor reload (see the worker's log for why)."""

    MESSAGE = "Model manager unavailable"

    def __init__(self) -> None:
        super().__init__(self.MESSAGE)


class ForbiddenError(InferdError):
    """An admin request came without the admin token, or with a wrong one."""


class ReloadFailedError(InferdError):
    """An admin reload or rollback failed; the message says why, the old model serves.
    Raised by the admin use case around the cause (`raise ... from cause`)."""
