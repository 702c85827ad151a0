"""The HTTP API (api.py, docs/api.md) as an OpenAPI 3.1 document, served at
`PREFIX/api/openapi.json`: for client generators, and for schemathesis, which CI runs against
a live server to prove no request makes it fail (5xx)."""

from __future__ import annotations

from typing import Any

from wsapp.realtime.engines.base import STATUSES

USER = {"type": "string", "pattern": "^[A-Za-z0-9_.@-]{1,64}$"}
CHANNEL = {"type": "string", "pattern": "^[a-z][a-z0-9_-]{0,31}:[A-Za-z0-9_.:@-]+$",
           "maxLength": 128}
REASON = {"type": "string", "maxLength": 100}
KEY = {"type": "string", "minLength": 1, "maxLength": 200}
TTL = {"type": "number", "exclusiveMinimum": 0, "maximum": 366 * 86400}


def _error(description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": {
        "$ref": "#/components/schemas/Error"}}}}


def _ok(description: str, properties: dict[str, Any] | None = None) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "object"}
    if properties:
        schema["properties"] = properties
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _body(properties: dict[str, Any], required: list[str]) -> dict[str, Any]:
    return {"required": True, "content": {"application/json": {"schema": {
        "type": "object", "properties": properties, "required": required}}}}


ERRORS = {"400": _error("a field is missing or wrong (`reason` says which)"),
          "401": _error("missing or wrong API key"),
          "413": _error("the body or its data is too large"),
          "503": _error("the store is unreachable: retry later")}


def _post(summary: str, properties: dict[str, Any], required: list[str],
          answer: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"post": {"summary": summary, "requestBody": _body(properties, required),
                     "responses": {"200": answer, **ERRORS, **extra}}}


def document(prefix: str) -> dict[str, Any]:
    """The OpenAPI document of the API mounted under `prefix`/api."""
    records = {"type": "array", "items": {"type": "object"}}
    paths: dict[str, Any] = {
        "/tokens": _post("mint a token for a user (the API key, unless demo mode)",
                         {"user": USER, "ttl": {**TTL, "maximum": 30 * 86400}}, ["user"],
                         _ok("a JWT", {"token": {"type": "string"}})),
        "/config": {"get": {"summary": "demo mode and where the JS client is",
                            "security": [], "responses": {"200": _ok("the server's mode")}}},
        "/publish": _post("publish to a channel",
                          {"channel": CHANNEL, "data": {}, "key": KEY}, ["channel", "data"],
                          _ok("stored and delivered", {"offset": {"type": ["integer", "null"]}})),
        "/push": _post("push a personal message to a user",
                       {"user": USER, "data": {}, "category": {"type": "string"},
                        "ttl": TTL, "key": KEY}, ["user", "data"],
                       _ok("delivered or stored"), **{"429": _ok("suppressed by a quota")}),
        "/history": {"get": {"summary": "a channel's stored messages after an offset",
                             "parameters": [
                                 {"name": "channel", "in": "query", "required": True,
                                  "schema": CHANNEL},
                                 {"name": "since", "in": "query",
                                  "schema": {"type": "integer", "minimum": 0}},
                                 {"name": "limit", "in": "query",
                                  "schema": {"type": "integer", "minimum": 1, "maximum": 1000}}],
                             "responses": {"200": _ok("messages, oldest first"), **ERRORS}}},
        "/users/{user}/messages": {"get": {
            "summary": "a user's push records, newest first",
            "parameters": [{"name": "user", "in": "path", "required": True, "schema": USER},
                           {"name": "status", "in": "query",
                            "schema": {"type": "string", "enum": list(STATUSES)}},
                           {"name": "limit", "in": "query",
                            "schema": {"type": "integer", "minimum": 1, "maximum": 1000}}],
            "responses": {"200": _ok("records", {"messages": records}), **ERRORS}}},
        "/users/{user}/revoke": {"post": {
            "summary": "refuse the user's current tokens and close their connections",
            "parameters": [{"name": "user", "in": "path", "required": True, "schema": USER}],
            "responses": {"200": _ok("revoked"), **ERRORS}}},
        "/presence": {"get": {"summary": "who is in a channel",
                              "parameters": [{"name": "channel", "in": "query",
                                              "required": True, "schema": CHANNEL}],
                              "responses": {"200": _ok("members"), **ERRORS}}},
        "/subscribe": _post("subscribe a user's connections to a channel",
                            {"user": USER, "channel": CHANNEL}, ["user", "channel"], _ok("asked")),
        "/unsubscribe": _post("unsubscribe a user's connections from a channel",
                              {"user": USER, "channel": CHANNEL, "reason": REASON},
                              ["user", "channel"], _ok("asked")),
        "/close_channel": _post("unsubscribe everybody from a channel",
                                {"channel": CHANNEL, "reason": REASON}, ["channel"], _ok("asked")),
        "/disconnect": _post("close a user's connections",
                             {"user": USER, "reason": REASON,
                              "code": {"type": "integer", "minimum": 4000, "maximum": 4999}},
                             ["user"], _ok("asked")),
    }
    return {
        "openapi": "3.1.0",
        "info": {"title": "wsapp HTTP API", "version": "1",
                 "description": "Publish, push, history, push records, presence, tokens and "
                                "operations on connections (docs/api.md)."},
        "servers": [{"url": f"{prefix}/api"}],
        "security": [{"apiKey": []}],
        "paths": paths,
        "components": {
            "securitySchemes": {"apiKey": {"type": "http", "scheme": "bearer",
                                           "description": "WSAPP_API_KEY (none in demo mode)"}},
            "schemas": {"Error": {"type": "object", "required": ["error", "reason"],
                                  "properties": {"error": {"type": "string"},
                                                 "reason": {"type": "string"}}}},
        },
    }
