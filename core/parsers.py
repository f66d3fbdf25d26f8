"""The request body parser of every /api view (REST_FRAMEWORK's DEFAULT_PARSER_CLASSES). Kept
apart from ``core.drf`` because DRF imports it while its own views module is loading."""

from typing import Any

import orjson
from rest_framework import exceptions
from rest_framework.parsers import BaseParser

MAX_JSON_DEPTH = 32  # far beyond any management API body; keeps every later walk shallow


class JSONParser(BaseParser):
    """Request bodies as JSON (UTF-8), parsed by orjson: NaN and Infinity are refused, and so is
    nesting deeper than MAX_JSON_DEPTH (json.loads would raise RecursionError, a 500, on a body
    of ten thousand brackets)."""

    media_type = "application/json"

    def parse(self, stream, media_type=None, parser_context=None):
        raw = stream.read() if stream is not None else b""
        too_deep = exceptions.ParseError(f"nested more than {MAX_JSON_DEPTH} levels deep")
        try:
            data = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise (
                too_deep if "depth limit" in str(exc) else exceptions.ParseError(str(exc))
            ) from None
        if _depth_exceeds(data, MAX_JSON_DEPTH):
            raise too_deep
        return data


def _depth_exceeds(data: Any, limit: int) -> bool:
    """Whether arrays and objects in ``data`` nest more than ``limit`` deep (level by level,
    without recursion)."""
    level = [data] if isinstance(data, (dict, list)) else []
    depth = 0
    while level:
        depth += 1
        if depth > limit:
            return True
        level = [
            child
            for value in level
            for child in (value.values() if isinstance(value, dict) else value)
            if isinstance(child, (dict, list))
        ]
    return False
