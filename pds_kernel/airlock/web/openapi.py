"""The OpenAPI 3 document of the JSON API (served at ``/api/openapi.json``).

Written by hand next to the handlers it describes; ``tests/airlock/test_web_api.py`` fuzzes the
running service against it with schemathesis (no 5xx, answers conforming to this document, invalid
inputs refused). Every operation may answer 400 (a malformed body, an unknown field or query
parameter), those with a body 413 (over the limit) and 415 (another media type).
"""

from __future__ import annotations

from ...registry.names import PROJECT_ID
from ..listing import DEFAULT_PER_PAGE, MAX_PER_PAGE, SCOPES
from ..states import State
from .bodies import MAX_JSON_FIELD, MAX_TEXT

_ID = {"name": "request_id", "in": "path", "required": True,
       "schema": {"type": "string", "pattern": "^[a-f0-9]{32}$"}}
_INDEX = {"name": "index", "in": "path", "required": True,
          "schema": {"type": "integer", "minimum": 0, "maximum": 999999}}
_ERR = {"description": "error", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
_VIEW = {"description": "the request as the caller may see it",
         "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Request"}}}}
_FILE = {"description": "file bytes", "content": {"application/octet-stream": {"schema": {"type": "string",
                                                                                      "format": "binary"}}}}


def _errors(*codes: int) -> dict:
    return {str(c): _ERR for c in codes}


_BODY_ERRORS = (400, 401, 403, 404, 409, 413, 415)


def _reason_body() -> dict:
    return {"required": False, "content": {"application/json": {"schema": {
        "type": "object", "properties": {"reason": {"type": "string", "maxLength": MAX_TEXT}},
        "additionalProperties": False}}}}


def _empty_body() -> dict:
    return {"required": False, "content": {"application/json": {"schema": {
        "type": "object", "additionalProperties": False}}}}


def build_openapi(prefix: str = "/") -> dict:
    """The document, with ``servers`` pointing at ``prefix`` (the JupyterHub service prefix)."""
    return {
        "openapi": "3.0.3",
        "info": {"title": "PDS Workspace airlock", "version": "1",
                 "description": "Export requests out of PDS workspaces: submit, review, release, download. "
                                "Authenticate with a JupyterHub API token: `Authorization: token <token>`."},
        "servers": [{"url": prefix.rstrip("/") or "/"}],
        "security": [{"hubToken": []}],
        "components": {
            "securitySchemes": {"hubToken": {"type": "apiKey", "in": "header", "name": "Authorization",
                                             "description": "`token <JupyterHub API token>`"}},
            "schemas": {
                "Error": {"type": "object", "required": ["error"], "properties": {"error": {"type": "string"}}},
                "File": {"type": "object", "properties": {
                    "index": {"type": "integer"}, "name": {"type": "string"},
                    "sha256": {"type": "string", "description": "empty before release for whoever may not read "
                               "the contents (a hash confirms a guess of the bytes)"},
                    "size": {"type": "integer"}, "kind": {"type": "string"},
                    "check_status": {"type": "string", "enum": ["pass", "review", "fail"]},
                    "check": {"type": "object"}}},
                "Review": {"type": "object", "properties": {
                    "reviewer": {"type": "string"}, "file_index": {"type": "integer"},
                    "file_sha256": {"type": "string"}, "decision": {"type": "string"},
                    "comment": {"type": "string"}, "round": {"type": "integer"},
                    "created_at": {"type": "string"}, "valid": {"type": "boolean"}}},
                "Request": {"type": "object", "required": ["id", "project", "author", "state", "files"], "properties": {
                    "id": {"type": "string"}, "project": {"type": "string"}, "author": {"type": "string"},
                    "state": {"type": "string", "enum": [s.value for s in State]},
                    "justification": {"type": "string"}, "context": {"type": "object"},
                    "reviews_required": {"type": "integer"}, "min_cell": {"type": "integer"},
                    "round": {"type": "integer"}, "created_at": {"type": "string"},
                    "updated_at": {"type": "string"}, "released_at": {"type": "string", "nullable": True},
                    "files": {"type": "array", "items": {"$ref": "#/components/schemas/File"}},
                    "check_status": {"type": "string"}, "complete_reviews": {"type": "integer"},
                    "reviews": {"type": "array", "items": {"$ref": "#/components/schemas/Review"}},
                    "reviews_hidden": {"type": "boolean"}, "reviewed_by_me": {"type": "boolean"},
                    "actions": {"type": "array", "items": {"type": "string"}},
                    "contents_visible": {"type": "boolean", "description":
                                         "false: a redacted view (no justification or context, check "
                                         "findings as rule, status and location only)"}}},
                "PackageRequest": {"type": "object", "properties": {
                    "id": {"type": "string"}, "name": {"type": "string"}, "version": {"type": "string"},
                    "project": {"type": "string"}, "requested_by": {"type": "string"},
                    "justification": {"type": "string"},
                    "state": {"type": "string", "enum": ["requested", "approved", "refused"]},
                    "created_at": {"type": "string"}, "decided_by": {"type": "string", "nullable": True},
                    "decision": {"type": "string"}}},
                "Summary": {"type": "object", "properties": {
                    "id": {"type": "string"}, "project": {"type": "string"}, "author": {"type": "string"},
                    "state": {"type": "string"}, "check_status": {"type": "string"}, "files": {"type": "integer"},
                    "created_at": {"type": "string"}, "updated_at": {"type": "string"}}},
            },
        },
        "paths": {
            "/api/me": {"get": {"operationId": "me", "summary": "Who the token belongs to",
                                "responses": {"200": {"description": "the caller", "content": {"application/json": {
                                    "schema": {"type": "object", "properties": {"name": {"type": "string"}}}}}},
                                              **_errors(400, 401)}}},
            "/api/requests": {
                "get": {"operationId": "listRequests", "summary": "Requests the caller may see (a workspace's token: its user's own, scope mine)",
                        "parameters": [
                            {"name": "scope", "in": "query", "schema": {"type": "string", "enum": list(SCOPES)}},
                            {"name": "project", "in": "query", "schema": {"type": "string",
                                                                          "pattern": PROJECT_ID.pattern}},
                            {"name": "state", "in": "query", "schema": {"type": "string",
                                                                        "enum": [s.value for s in State]}},
                            {"name": "author", "in": "query", "schema": {"type": "string"}},
                            {"name": "page", "in": "query", "schema": {"type": "integer", "minimum": 1, "default": 1}},
                            {"name": "per_page", "in": "query", "schema": {
                                "type": "integer", "minimum": 1, "maximum": MAX_PER_PAGE, "default": DEFAULT_PER_PAGE}}],
                        "responses": {"200": {"description": "one page of summaries, newest first", "content": {
                            "application/json": {"schema": {"type": "object", "properties": {
                                "requests": {"type": "array", "items": {"$ref": "#/components/schemas/Summary"}},
                                "total": {"type": "integer"}, "page": {"type": "integer"},
                                "per_page": {"type": "integer"}, "pages": {"type": "integer"}}}}}},
                                      **_errors(400, 401)}},
                "post": {"operationId": "createRequest", "summary": "Stage files, check them, submit",
                         "requestBody": {"required": True, "content": {"multipart/form-data": {"schema": {
                             "type": "object", "required": ["project", "justification", "files"], "properties": {
                                 "project": {"type": "string"},
                                 "justification": {"type": "string", "maxLength": MAX_TEXT},
                                 "context": {"type": "string", "maxLength": MAX_JSON_FIELD,
                                             "description": "JSON object"},
                                 "author": {"type": "string", "description": "admins only: submit for this user"},
                                 "submit": {"type": "string", "enum": ["true", "false"]},
                                 "files": {"type": "array", "items": {"type": "string", "format": "binary"}}}}}}},
                         "responses": {"201": _VIEW, **_errors(*_BODY_ERRORS)}}},
            "/api/imports": {"post": {
                "operationId": "createImport",
                "summary": "Upload files into a project (from a browser or a user's token, never a workspace): "
                           "scan, link a cohort list, submit for review",
                "requestBody": {"required": True, "content": {"multipart/form-data": {"schema": {
                    "type": "object", "required": ["project", "justification", "files"], "properties": {
                        "project": {"type": "string"},
                        "justification": {"type": "string", "maxLength": MAX_TEXT},
                        "kind": {"type": "string", "enum": ["files", "cohort"]},
                        "files": {"type": "array", "items": {"type": "string", "format": "binary"}}}}}}},
                "responses": {"201": _VIEW, **_errors(*_BODY_ERRORS, 503)}}},
            "/api/requests/{request_id}": {"get": {
                "operationId": "getRequest", "parameters": [_ID],
                "responses": {"200": _VIEW, **_errors(400, 401, 403, 404)}}},
            "/api/requests/{request_id}/submit": {"post": {
                "operationId": "submitRequest", "parameters": [_ID], "requestBody": _empty_body(),
                "responses": {"200": _VIEW, **_errors(*_BODY_ERRORS)}}},
            "/api/requests/{request_id}/resubmit": {"post": {
                "operationId": "resubmitRequest", "summary": "Answer a request for changes and submit again",
                "parameters": [_ID],
                "requestBody": {"required": False, "content": {"multipart/form-data": {"schema": {
                    "type": "object", "properties": {
                        "justification": {"type": "string", "maxLength": MAX_TEXT},
                        "acro": {"type": "string", "maxLength": MAX_JSON_FIELD,
                                 "description": "JSON object: file name -> ACRO record"},
                        "remove": {"type": "array", "items": {"type": "string"}},
                        "files": {"type": "array", "items": {"type": "string", "format": "binary"}}}}}}},
                "responses": {"200": _VIEW, **_errors(*_BODY_ERRORS)}}},
            "/api/requests/{request_id}/withdraw": {"post": {
                "operationId": "withdrawRequest", "parameters": [_ID], "requestBody": _reason_body(),
                "responses": {"200": _VIEW, **_errors(*_BODY_ERRORS)}}},
            "/api/requests/{request_id}/revoke": {"post": {
                "operationId": "revokeRequest", "parameters": [_ID], "requestBody": _reason_body(),
                "responses": {"200": _VIEW, **_errors(*_BODY_ERRORS)}}},
            "/api/requests/{request_id}/release": {"post": {
                "operationId": "releaseRequest", "parameters": [_ID], "requestBody": _empty_body(),
                "responses": {"200": _VIEW, **_errors(*_BODY_ERRORS)}}},
            "/api/requests/{request_id}/reviews": {"post": {
                "operationId": "reviewRequest", "parameters": [_ID],
                "requestBody": {"required": True, "content": {"application/json": {"schema": {
                    "type": "object", "required": ["verdicts"], "additionalProperties": False, "properties": {
                        "verdicts": {"type": "object", "minProperties": 1,
                                     "propertyNames": {"pattern": "^[0-9]{1,6}$"}, "additionalProperties": {
                            "type": "object", "required": ["decision", "sha256"], "additionalProperties": False, "properties": {
                                "decision": {"type": "string", "enum": ["approve", "request_changes", "reject"]},
                                "comment": {"type": "string", "maxLength": MAX_TEXT},
                                "sha256": {"type": "string", "pattern": "^[0-9a-f]{64}$"}}}}}}}}},
                "responses": {"200": _VIEW, **_errors(*_BODY_ERRORS)}}},
            "/api/requests/{request_id}/files/{index}": {"get": {
                "operationId": "getStagedFile",
                "summary": "A staged file, for output checkers of the project only (never its author)",
                "parameters": [_ID, _INDEX], "responses": {"200": _FILE, **_errors(400, 401, 403, 404)}}},
            "/api/requests/{request_id}/download/{index}": {"get": {
                "operationId": "downloadReleasedFile", "summary": "A released file, for its author",
                "parameters": [_ID, _INDEX], "responses": {"200": _FILE, **_errors(400, 401, 403, 404, 409)}}},
            "/api/packages/requests": {
                "get": {"operationId": "listPackageRequests", "summary": "Package requests the caller may see",
                        "responses": {"200": {"description": "requests", "content": {"application/json": {
                            "schema": {"type": "object", "properties": {"requests": {
                                "type": "array", "items": {"$ref": "#/components/schemas/PackageRequest"}}}}}}},
                                      **_errors(400, 401)}},
                "post": {"operationId": "requestPackage",
                         "summary": "Ask for a Python package (an admin approves it with pds packages approve)",
                         "requestBody": {"required": True, "content": {"application/json": {"schema": {
                             "type": "object", "required": ["project", "package"], "additionalProperties": False,
                             "properties": {
                                 "project": {"type": "string"},
                                 "package": {"type": "string", "description": "NAME or NAME==VERSION"},
                                 "justification": {"type": "string", "maxLength": MAX_TEXT}}}}}},
                         "responses": {"201": {"description": "the request", "content": {"application/json": {
                             "schema": {"$ref": "#/components/schemas/PackageRequest"}}}},
                                       **_errors(400, 401, 403, 409, 413, 415)}}},
        },
    }


#: Who may call each operation (enforced by the service, :mod:`..permissions`).
WHO = {
    "me": "anyone with a token",
    "listRequests": "anyone: each sees the requests they may see (`queue`: checkers of the project)",
    "createRequest": "a researcher of the project (an admin on behalf of one)",
    "createImport": "a researcher of the project, for themselves, never from a workspace",
    "getRequest": "author, admins: redacted view; output checkers of the project: full (from a workspace: "
                  "its user's own requests only)",
    "submitRequest": "the author",
    "resubmitRequest": "the author",
    "withdrawRequest": "the author",
    "revokeRequest": "an output checker of the project (approved), an admin (released)",
    "releaseRequest": "an output checker of the project, never the author",
    "reviewRequest": "an output checker of the project, never the author",
    "getStagedFile": "output checkers of the project only (never the author, never an admin as such, never "
                     "from a workspace)",
    "downloadReleasedFile": "the author, once released (never from a workspace)",
    "listPackageRequests": "anyone: the package requests of the projects they are a member of (admins: all)",
    "requestPackage": "a researcher of the project (from a workspace: its own project only)",
}


def render_reference(prefix: str = "/services/airlock/") -> str:
    """docs/reference/gate-api.md, generated from :func:`build_openapi` (a test keeps it in step)."""
    doc = build_openapi(prefix)
    lines = ["# The gate's JSON API", "",
             "Generated from `pds_kernel/airlock/web/openapi.py` by "
             "`python -m pds_kernel.airlock.web.openapi > docs/reference/gate-api.md`; do not edit.",
             "", f"Base URL: `{prefix}` on the gate's own host, `airlock--service.<hub>` "
             f"(pds_kernel.hub.origins); the document itself: `{prefix}api/openapi.json`. "
             "Authenticate with `Authorization: token <JupyterHub API token>`. What each caller sees and "
             "what the gate accepts: [output checking](../output-checking.md#who-sees-what).", "",
             "| operation | method and path | body | who | answers |", "| --- | --- | --- | --- | --- |"]
    for path, methods in doc["paths"].items():
        for method, op in methods.items():
            body = op.get("requestBody", {}).get("content", {})
            kinds = ", ".join(f"`{k}`" for k in body) or "none"
            if body and not op["requestBody"].get("required"):
                kinds += " (optional)"
            answers = ", ".join(sorted(op["responses"]))
            lines.append(f"| `{op['operationId']}` | `{method.upper()} {path}` | {kinds} | "
                         f"{WHO[op['operationId']]} | {answers} |")
    lines += ["", "Errors are `{\"error\": \"<what went wrong and what to do>\"}`. 400: malformed body, unknown "
              "field or query parameter, wrong type, nesting too deep; 401: no valid token; 403: not "
              "allowed (audited); 404: no such request, file or operation; 409: not in this state; "
              "413: body over the limit (1 MiB, uploads: the request limit + 1 MiB); 415: another media "
              "type or a compressed body.", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    print(render_reference(), end="")
