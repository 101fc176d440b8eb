"""The API's JSON parser: orjson, with a size and a nesting limit.

DRF's stock parser hands the body to the standard library, whose recursive
decoder raises RecursionError (a 500) on a couple of kilobytes of `[[[[...`.
orjson parses without recursing on the C stack and stops at 1,024 levels by
itself; after parsing, an iterative walk refuses anything nested deeper than
any request of this API needs. Both limits answer 400 in the one error format.

A string holding NUL (`\\u0000`, as a key or a value) is refused too:
PostgreSQL cannot store it in text, so it would fail as a 500 deep in a query.

orjson is also strict where the standard library is lenient: NaN and
Infinity are not JSON and are refused; an integer beyond 64 bits becomes a
float, which every integer field then refuses with a field error.
"""

from typing import Any

import orjson
from django.conf import settings
from rest_framework.exceptions import ParseError
from rest_framework.parsers import BaseParser

# A body of this API nests objects and lists at most 3 deep (a list of names
# inside an object); 32 leaves room without letting a client build towers.
MAX_JSON_DEPTH = 32


def json_depth_exceeds(value: Any, *, limit: int) -> bool:
    """Whether `value` nests lists/objects more than `limit` deep, without recursion."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict):
            children = node.values()
        elif isinstance(node, list):
            children = node
        else:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
    return False


def json_has_nul(value: Any) -> bool:
    """Whether any key or string in `value` holds a NUL character, without recursion."""
    stack: list[Any] = [value]
    while stack:
        node = stack.pop()
        if isinstance(node, str):
            if "\x00" in node:
                return True
        elif isinstance(node, dict):
            stack.extend(node.keys())
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return False


class BoundedJSONParser(BaseParser):
    media_type = "application/json"

    def parse(self, stream, media_type=None, parser_context=None) -> Any:
        limit = settings.API_JSON_MAX_BYTES
        body = stream.read(limit + 1) if stream is not None else b""
        if len(body) > limit:
            raise ParseError(f"The JSON body is larger than {limit} bytes.")
        if not body:
            raise ParseError("JSON parse error - the body is empty.")
        try:
            data = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise ParseError(f"JSON parse error - {exc}") from exc
        if json_depth_exceeds(data, limit=MAX_JSON_DEPTH):
            raise ParseError(f"The JSON body is nested more than {MAX_JSON_DEPTH} levels deep.")
        if b"\\u0000" in body and json_has_nul(data):
            raise ParseError(
                "The JSON body holds a NUL character (\\u0000), which no field accepts."
            )
        return data
