"""OpenAI chat messages in and out: the text of a message's content, image and file parts,
tool-call arguments, and the ``chat.completion`` body an adapter answers with."""

import time
from collections.abc import Callable, Iterator
from typing import Any

from orjson import JSONDecodeError, dumps, loads

from providers.adapters.types import UpstreamFailure

# OpenAI's reasoning_effort -> a thinking budget in tokens, for the adapters whose upstream takes
# one (Gemini's thinkingConfig.thinkingBudget, Claude's thinking.budget_tokens on Bedrock). low /
# medium / high are the budgets Google's own OpenAI-compatible endpoint maps them to (1K, 8K,
# 24K), which the Messages door's thresholds (providers/adapters/messages_door.py) map back to
# the same efforts; "none" turns thinking off; "minimal" is 512, the smallest budget every Gemini
# 2.5 model takes (an adapter raises it to its own model's floor).
THINKING_BUDGETS = {"none": 0, "minimal": 512, "low": 1024, "medium": 8192, "high": 24576}


def text_of(content: Any) -> str:
    """The text of an OpenAI message ``content`` (string, or list of parts)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for part in content:
            if isinstance(part, dict):
                text = part.get("text")
                if isinstance(text, str):
                    parts.append(text)
                elif isinstance(part.get("refusal"), str):
                    parts.append(part["refusal"])
            elif isinstance(part, str):
                parts.append(part)
        return "".join(parts)
    return ""


def parse_data_url(url: str) -> tuple[str, str] | None:
    """``(media_type, base64_data)`` of a ``data:<type>;base64,<data>`` URL, else None."""
    if not url.startswith("data:"):
        return None
    header, sep, data = url[5:].partition(",")
    if not sep or not header.endswith(";base64"):
        return None
    media_type = header[: -len(";base64")].split(";")[0] or "application/octet-stream"
    return media_type, data


def image_url_of(part: dict[str, Any]) -> str:
    value = part.get("image_url")
    if isinstance(value, dict):
        value = value.get("url")
    return value if isinstance(value, str) else ""


def content_parts(content: Any, *, text_only: bool,
                  refuse: Callable[[str], Exception]) -> Iterator[tuple[str, Any]]:
    """The parts of an OpenAI message ``content`` (a string or a list of parts) for an adapter
    that translates them one by one: ``("text", str)`` for non-empty text and refusals,
    ``("image", url)`` and ``("file", file object)``. ``refuse(words)`` makes the exception for
    content that cannot be taken; with ``text_only`` (system and assistant messages) images and
    files cannot."""
    if content is None:
        return
    if isinstance(content, str):
        if content:
            yield "text", content
        return
    if not isinstance(content, list):
        raise refuse("message content must be a string or a list of parts.")
    for part in content:
        if isinstance(part, str):
            if part:
                yield "text", part
            continue
        if not isinstance(part, dict):
            raise refuse("a content part must be an object.")
        kind = part.get("type")
        if kind == "text" or (kind is None and "text" in part):
            if isinstance(part.get("text"), str) and part["text"]:
                yield "text", part["text"]
        elif kind == "refusal":
            if isinstance(part.get("refusal"), str) and part["refusal"]:
                yield "text", part["refusal"]
        elif kind == "image_url" and not text_only:
            yield "image", image_url_of(part)
        elif kind == "file" and not text_only:
            yield "file", part.get("file") if isinstance(part.get("file"), dict) else {}
        else:
            where = " here (system and assistant messages take text only)" if text_only else ""
            raise refuse(f"content parts of type {kind!r} are not supported{where}.")


def tool_arguments(raw: Any, *, provider: str) -> dict[str, Any]:
    """An OpenAI tool call's ``arguments`` (a JSON string) as the object other APIs want."""
    if isinstance(raw, dict):
        return raw
    if raw is None or raw == "":
        return {}
    if isinstance(raw, str):
        try:
            value = loads(raw)
        except JSONDecodeError:
            value = None
        if isinstance(value, dict):
            return value
    raise UpstreamFailure(
        kind="bad_request",
        message=f"A tool call's arguments must be a JSON object to be sent to {provider}; got {str(raw)[:80]!r}.",
    )


def chat_completion(
    *,
    completion_id: str,
    model: str,
    message: dict[str, Any],
    finish_reason: str,
    usage: dict[str, Any] | None,
    created: int | None = None,
) -> bytes:
    """An OpenAI ``chat.completion`` body with one choice."""
    body: dict[str, Any] = {
        "id": completion_id,
        "object": "chat.completion",
        "created": int(time.time()) if created is None else created,
        "model": model,
        "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": finish_reason}],
    }
    if usage is not None:
        body["usage"] = usage
    return dumps(body)
