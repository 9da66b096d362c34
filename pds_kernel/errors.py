"""The error hierarchy of PDS Workspace.

Every error a user can cause is a :class:`PdsError`. Messages address the user (one line, what went
wrong and what to do); the CLI and the web services map the class to an exit code or HTTP status.
Never swallow one of these, and never return ``None`` to mean failure.
"""

from __future__ import annotations


class PdsError(Exception):
    """Base class: a failure the user can understand and act on."""

    exit_code = 1
    http_status = 400


class InvalidInput(PdsError):
    """Input at a boundary (file, spec, option, form field) is malformed or not allowed."""

    exit_code = 2
    http_status = 400


class NotFound(PdsError):
    """A named object (project, user, request, table, file) does not exist."""

    exit_code = 3
    http_status = 404


class PermissionDenied(PdsError):
    """The actor may not do this (role, membership, expiry, closed project, self-review...)."""

    exit_code = 4
    http_status = 403


class InvalidTransition(PdsError):
    """An action is not allowed from the current state of an object."""

    exit_code = 5
    http_status = 409


class DisclosureRisk(PdsError):
    """An output or extract would disclose more than the rules allow."""

    exit_code = 6
    http_status = 422


class IntegrityError(PdsError):
    """Stored data does not match what was recorded (hash mismatch, broken audit chain...)."""

    exit_code = 7
    http_status = 409


class Unavailable(PdsError):
    """A platform service the operation needs did not answer or failed (a Kubernetes Job, an API
    server): nothing was done; try again later or ask an administrator."""

    exit_code = 8
    http_status = 503


class BodyTooLarge(InvalidInput):
    """A request body over the limit of the operation it was sent to."""

    http_status = 413


class UnsupportedBody(InvalidInput):
    """A request body of a media type (or encoding) the operation does not take."""

    http_status = 415
