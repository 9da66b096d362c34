"""What the web service accepts in a request, checked before anything else reads it: pure
functions over bytes, headers and parsed values, raising :class:`InvalidInput` (400) or
:class:`BodyTooLarge` (413), :class:`UnsupportedBody` (415) with a message that says what to send.

Limits: a JSON body or a page form at most :data:`MAX_SMALL_BODY` bytes, an upload (multipart) at
most the gate's total upload limit plus :data:`MULTIPART_OVERHEAD`; JSON nested at most
:data:`MAX_JSON_DEPTH` deep; only the fields each operation documents (unknown ones are refused).
"""

from __future__ import annotations

import json

from ...errors import BodyTooLarge, InvalidInput, UnsupportedBody
from ...validate import is_digits
from ..inputs import MAX_DEPTH, check_text, depth_within

MAX_SMALL_BODY = 1024 * 1024
MULTIPART_OVERHEAD = 1024 * 1024
#: Deepest JSON body of an action (reviews: body -> verdicts -> file -> field).
MAX_JSON_DEPTH = 4
MAX_TEXT = 10_000
#: Form fields holding JSON (the context, ACRO records) and their size limit (the service's too).
JSON_FIELDS = {"context", "acro"}
MAX_JSON_FIELD = 1_000_000
DECISIONS = ("approve", "request_changes", "reject")
JSON_TYPES = {"application/json"}
FORM_TYPES = {"multipart/form-data", "application/x-www-form-urlencoded"}


def media_type(content_type: str) -> str:
    return content_type.split(";", 1)[0].strip().lower()


def check_declared_size(content_length: str | None, limit: int) -> None:
    """Refuse from the headers alone, before a byte of the body is read."""
    if content_length is None:
        return
    try:
        size = int(content_length)
    except ValueError:
        raise InvalidInput("Content-Length is not a number") from None
    if size < 0:
        raise InvalidInput("Content-Length is negative")
    if size > limit:
        raise BodyTooLarge(f"the body is {size} bytes: this operation accepts at most {limit}")


def check_media_type(content_type: str, body: bytes, allowed: set[str]) -> None:
    """An empty body needs no type; any other must declare one of ``allowed``."""
    if not body:
        return
    if media_type(content_type) not in allowed:
        raise UnsupportedBody(f"send the body as {' or '.join(sorted(allowed))}, not "
                              f"{media_type(content_type) or 'an undeclared type'}")


def check_encoding(content_encoding: str | None) -> None:
    if content_encoding and content_encoding.strip().lower() not in {"identity"}:
        raise UnsupportedBody("compressed bodies are not accepted: send it uncompressed")


def parse_json_object(body: bytes, what: str = "the request body") -> dict:
    """A JSON object from ``body`` (empty -> ``{}``); 400 for anything else, never a crash."""
    if not body.strip():
        return {}
    try:
        data = json.loads(body)
    except RecursionError:
        raise InvalidInput(f"{what} nests deeper than {MAX_JSON_DEPTH} levels") from None
    except (ValueError, UnicodeDecodeError):
        raise InvalidInput(f"{what} is not JSON") from None
    if not isinstance(data, dict):
        raise InvalidInput(f"{what} must be a JSON object")
    if not depth_within(data, MAX_JSON_DEPTH):
        raise InvalidInput(f"{what} nests deeper than {MAX_JSON_DEPTH} levels")
    return data


def parse_json_field(raw: str, name: str) -> dict:
    """A form field holding a JSON object (the context, ACRO records); empty -> ``{}``."""
    if not raw:
        return {}
    try:
        value = json.loads(raw)
    except RecursionError:
        raise InvalidInput(f"{name} nests deeper than {MAX_DEPTH} levels") from None
    except ValueError:
        raise InvalidInput(f"{name} must be a JSON object") from None
    if not isinstance(value, dict):
        raise InvalidInput(f"{name} must be a JSON object")
    if not depth_within(value, MAX_DEPTH):
        raise InvalidInput(f"{name} nests deeper than {MAX_DEPTH} levels")
    return value


def _some(names: list[str], most: int = 3) -> str:
    """At most ``most`` of ``names`` (a refusal is logged and may be audited: it quotes little)."""
    return ", ".join(names[:most]) + (f" and {len(names) - most} more" if len(names) > most else "")


def check_fields(data: dict, allowed: set[str], what: str = "the request body") -> None:
    unknown = sorted(str(k)[:40] for k in set(data) - allowed)
    if unknown:
        raise InvalidInput(f"{what} has unknown field(s) {_some(unknown)}; allowed: "
                           f"{', '.join(sorted(allowed)) or 'none'}")


def check_sha256(value: object, what: str) -> str:
    """A SHA-256 as the gate shows them: 64 lowercase hexadecimal characters."""
    if not (isinstance(value, str) and len(value) == 64 and value.isascii()
            and all(c in "0123456789abcdef" for c in value)):
        raise InvalidInput(f"{what} must be 64 lowercase hexadecimal characters")
    return value


def reason_of(data: dict) -> str:
    """``{"reason": text}`` (optional) of withdraw and revoke."""
    check_fields(data, {"reason"})
    return check_text(data.get("reason", ""), "reason", MAX_TEXT)


def verdicts_of(data: dict) -> dict[int, dict[str, str]]:
    """``{"verdicts": {file index: {"decision", "comment"?, "sha256"}}}`` of a review: every verdict
    names the bytes the reviewer read (a file resubmitted since is refused by the service)."""
    check_fields(data, {"verdicts"})
    verdicts = data.get("verdicts")
    if not isinstance(verdicts, dict) or not verdicts:
        raise InvalidInput('send {"verdicts": {file index: {"decision": ..., "comment": ..., "sha256": ...}}}')
    out: dict[int, dict[str, str]] = {}
    for key, verdict in verdicts.items():
        if not (isinstance(key, str) and is_digits(key, 6)):
            raise InvalidInput(f"file index {key[:20]!r} is not a whole number from 0")
        if not isinstance(verdict, dict):
            raise InvalidInput(f"the verdict on file {key} must be an object {{decision, comment, sha256}}")
        check_fields(verdict, {"decision", "comment", "sha256"}, f"the verdict on file {key}")
        decision = verdict.get("decision")
        if decision not in DECISIONS:
            raise InvalidInput(f"decision on file {key} must be one of {', '.join(DECISIONS)}")
        sha = verdict.get("sha256")
        if sha is None:
            raise InvalidInput(f"the verdict on file {key} needs the sha256 of the bytes you reviewed (the "
                               "request's files[].sha256 where you read them): a verdict binds to those bytes")
        check_sha256(sha, f"sha256 of file {key}")
        out[int(key)] = {"decision": decision, "sha256": sha,
                         "comment": check_text(verdict.get("comment", ""), f"comment on file {key}", MAX_TEXT)}
    return out


def check_query(arguments: dict[str, list[bytes]], allowed: set[str]) -> None:
    """Only documented query parameters, each at most once."""
    unknown = sorted(k[:40] for k in set(arguments) - allowed)
    if unknown:
        raise InvalidInput(f"unknown query parameter(s) {_some(unknown)}; allowed: "
                           f"{', '.join(sorted(allowed)) or 'none'}")
    repeated = sorted(k for k, v in arguments.items() if len(v) > 1)
    if repeated:
        raise InvalidInput(f"query parameter(s) given twice: {', '.join(repeated)}")
