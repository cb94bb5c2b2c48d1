"""Request bodies: read within a size limit, parsed as JSON, checked against a declared shape."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request

from bot.errors import BadRequest, PayloadTooLarge, Unprocessable

API_BODY_LIMIT = 1024 * 1024

_JSON_TYPES: dict[type, str] = {str: "string", bool: "boolean", int: "integer"}


async def read_body(request: Request, limit: int) -> bytes:
    """The raw body, refusing anything over `limit` bytes before reading it all."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"the request body is over {limit} bytes; send a smaller one")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise PayloadTooLarge(f"the request body is over {limit} bytes; send a smaller one")
    return bytes(body)


@dataclass(frozen=True)
class Field:
    name: str
    type: type
    required: bool = False
    default: Any = None
    nullable: bool = False
    max_length: int | None = None
    description: str = ""

    def schema(self) -> dict[str, Any]:
        kind: Any = _JSON_TYPES[self.type]
        out: dict[str, Any] = {"type": [kind, "null"] if self.nullable else kind}
        if self.max_length:
            out["maxLength"] = self.max_length
        if self.type is str and not self.nullable and self.required:
            out["minLength"] = 1
        if not self.required:
            out["default"] = self.default
        if self.description:
            out["description"] = self.description
        return out


class Body:
    """A JSON object body: its fields, checked strictly (unknown fields are refused too)."""

    def __init__(self, name: str, *fields: Field) -> None:
        self.name = name
        self.fields = {f.name: f for f in fields}

    def schema(self) -> dict[str, Any]:
        return {
            "type": "object",
            "properties": {name: f.schema() for name, f in self.fields.items()},
            "required": [name for name, f in self.fields.items() if f.required],
            "additionalProperties": False,
        }

    def check(self, data: Any) -> dict[str, Any]:
        if not isinstance(data, dict):
            raise Unprocessable(f"the body must be a JSON object with fields {self._names()}")
        unknown = sorted(set(data) - set(self.fields))
        if unknown:
            raise Unprocessable(
                f"unknown field{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown))};"
                f" the fields are {self._names()}"
            )
        values: dict[str, Any] = {}
        for name, f in self.fields.items():
            if name not in data:
                if f.required:
                    raise Unprocessable(f"field {name!r} is required")
                values[name] = f.default
                continue
            values[name] = self._value(f, data[name])
        return values

    def _value(self, f: Field, value: Any) -> Any:
        if value is None:
            if f.nullable:
                return None
            raise Unprocessable(f"field {f.name!r} must be a {_JSON_TYPES[f.type]}, not null")
        # bool is an int in Python; JSON keeps them apart, and so does the API.
        if not isinstance(value, f.type) or (f.type is not bool and isinstance(value, bool)):
            raise Unprocessable(
                f"field {f.name!r} must be a {_JSON_TYPES[f.type]}, got {type(value).__name__}"
                f" {json.dumps(value)[:60]}"
            )
        if f.type is str:
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                raise Unprocessable(
                    f"field {f.name!r} is not valid Unicode (it holds a lone surrogate)"
                ) from None
            if "\x00" in value:
                # No command line, environment variable or C string can carry it.
                raise Unprocessable(f"field {f.name!r} holds a NUL character (\\u0000)")
            if f.required and not f.nullable and not value.strip():
                raise Unprocessable(f"field {f.name!r} must not be empty")
            if f.max_length and len(value) > f.max_length:
                raise Unprocessable(f"field {f.name!r} is longer than {f.max_length} characters")
        return value

    def _names(self) -> str:
        return ", ".join(self.fields)

    async def read(self, request: Request, limit: int = API_BODY_LIMIT) -> dict[str, Any]:
        """Read, parse and check the request's body."""
        raw = await read_body(request, limit)
        if not raw.strip():
            raise BadRequest(f"the request has no body; send a JSON object with {self._names()}")
        try:
            data = json.loads(raw)
        except ValueError as exc:
            raise BadRequest(f"the body is not valid JSON ({exc}); send a JSON object") from None
        except RecursionError:
            raise BadRequest("the body's JSON is nested too deeply; send a flat object") from None
        return self.check(data)
