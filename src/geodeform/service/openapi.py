"""The OpenAPI document: OpenAPI 3.0.3 (what the ``oas30`` conformance class promises), with the responses
that happen, the bearer scheme, and links from a created job to its status, results and dismissal.

FastAPI writes OpenAPI 3.1 with a 422 response on every operation that has parameters (this service answers
400 instead). :func:`openapi_document` rewrites its document: JSON Schema 2020-12 constructs become their
OpenAPI 3.0 equivalents (``nullable``, ``enum`` for ``const``, boolean ``exclusiveMinimum``, ``items`` for
tuples, one ``example``), nested ``$defs`` move to ``components/schemas``, 422 goes, and 400 / 401 / 404 /
413 / 429 / 502 are listed where they can happen, each an OGC exception document.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

__all__ = ["OPENAPI_VERSION", "openapi_document", "to_openapi30"]

OPENAPI_VERSION = "3.0.3"

_EXCEPTION_SCHEMA = {
    "type": "object",
    "description": "OGC exception document (RFC 7807 problem details).",
    "required": ["type", "title", "status", "detail"],
    "properties": {
        "type": {"type": "string"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "problems": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {"input": {"type": "string"}, "problem": {"type": "string"}},
            },
        },
    },
}
_ERRORS = {
    400: "Bad request: every problem listed, each naming its parameter or input",
    401: "No token, or an invalid, expired or revoked one",
    404: "No such process, job, result or file (another user's job is answered alike)",
    413: "Request body too large",
    429: "Too many jobs queued or running for this user",
    502: "The catalogue searched on the user's behalf failed",
}
_JOB_LINKS = {
    "GetStatus": {"operationId": "getStatus", "parameters": {"jobId": "$response.body#/jobID"}},
    "GetResults": {"operationId": "getResult", "parameters": {"jobId": "$response.body#/jobID"}},
    "Dismiss": {"operationId": "dismiss", "parameters": {"jobId": "$response.body#/jobID"}},
}


def _ref_target(ref: str) -> str:
    return "#/components/schemas/" + ref.rsplit("/", 1)[-1]


def to_openapi30(node: Any, defs: dict[str, Any]) -> Any:
    """A JSON Schema (2020-12, as pydantic writes it) as an OpenAPI 3.0 schema object.

    ``defs`` collects the nested ``$defs`` (to put in ``components/schemas``); references to them are
    rewritten to ``#/components/schemas/NAME``.
    """
    if isinstance(node, list):
        return [to_openapi30(v, defs) for v in node]
    if not isinstance(node, Mapping):
        return node
    node = dict(node)
    for name, sub in node.pop("$defs", {}).items():
        defs[name] = to_openapi30(sub, defs)
    if isinstance(node.get("$ref"), str):
        return {"$ref": _ref_target(node["$ref"])}  # 3.0: siblings of $ref are ignored anyway
    out: dict[str, Any] = {}
    for key, value in node.items():
        out[key] = to_openapi30(value, defs)
    for key in ("anyOf", "oneOf"):
        alts = out.get(key)
        if isinstance(alts, list) and any(a == {"type": "null"} for a in alts):
            rest = [a for a in alts if a != {"type": "null"}]
            out.pop(key)
            if len(rest) == 1 and "$ref" not in rest[0]:
                out = {**rest[0], **out}
            else:
                out[key] = rest
            out["nullable"] = True
    if isinstance(out.get("type"), list):
        types = [t for t in out["type"] if t != "null"]
        if len(types) < len(out["type"]):
            out["nullable"] = True
        if len(types) == 1:
            out["type"] = types[0]
        else:
            out.pop("type")
            out["anyOf"] = [{"type": t} for t in types]
    if "const" in out:
        out["enum"] = [out.pop("const")]
    for bound, limit in (("exclusiveMinimum", "minimum"), ("exclusiveMaximum", "maximum")):
        if isinstance(out.get(bound), (int, float)) and not isinstance(out.get(bound), bool):
            out[limit], out[bound] = out[bound], True
    if "prefixItems" in out:
        prefix = out.pop("prefixItems")
        kinds = {str(p.get("type")) for p in prefix if isinstance(p, Mapping)}
        out["items"] = prefix[0] if len(kinds) == 1 else {"anyOf": prefix}
    if isinstance(out.get("examples"), list):
        examples = out.pop("examples")
        if examples:
            out["example"] = examples[0]
    for key in ("contentMediaType", "contentEncoding", "$schema"):
        out.pop(key, None)
    return out


def _add_errors(op: dict[str, Any], method: str, path: str) -> None:
    responses: dict[str, Any] = op.setdefault("responses", {})
    responses.pop("422", None)
    codes = set()
    if op.get("parameters") or "requestBody" in op:
        codes.add(400)
    if op.get("security"):
        codes.add(401)
    if "{" in path:
        codes.add(404)
    if method in ("post", "put"):
        codes.add(413)
    if path.endswith("/execution"):
        codes.add(429)
    if path.endswith("/scenes"):
        codes.add(502)
    for code in sorted(codes):
        responses.setdefault(
            str(code),
            {
                "description": _ERRORS[code],
                "content": {
                    "application/problem+json": {"schema": {"$ref": "#/components/schemas/Exception"}}
                },
            },
        )


def openapi_document(app: FastAPI) -> dict[str, Any]:
    """The app's OpenAPI 3.0.3 document (cached on the app)."""
    if app.openapi_schema:
        return app.openapi_schema
    doc = get_openapi(
        title=app.title,
        version=app.version,
        description=app.description,
        routes=app.routes,
        servers=app.servers or None,
    )
    doc = copy.deepcopy(doc)
    defs: dict[str, Any] = {}
    components = doc.setdefault("components", {})
    schemas = {name: to_openapi30(s, defs) for name, s in components.get("schemas", {}).items()}
    for name in ("HTTPValidationError", "ValidationError"):
        schemas.pop(name, None)
    for path, item in doc.get("paths", {}).items():
        for method, op in item.items():
            if not isinstance(op, dict):
                continue
            doc["paths"][path][method] = op = to_openapi30(op, defs)
            _add_errors(op, method, path)
            if op.get("operationId") == "execute":
                op["responses"]["201"]["links"] = copy.deepcopy(_JOB_LINKS)
    schemas.update({k: v for k, v in defs.items() if k not in schemas})
    schemas["Exception"] = _EXCEPTION_SCHEMA
    components["schemas"] = schemas
    doc["openapi"] = OPENAPI_VERSION
    app.openapi_schema = doc
    return doc
