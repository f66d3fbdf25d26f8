"""OpenRouter: the OpenAI wire format (see providers/adapters/openai.py). Differences handled
there or here: attribution headers (in the deployment's extra headers), ``: OPENROUTER
PROCESSING`` SSE comments, ``usage.cost`` (credits) kept as ``Usage.provider_cost``, the final
usage chunk with empty or non-empty ``choices``, ``{"error": {"code": <int>, …}}`` errors (also
mid-stream, with ``finish_reason: "error"``) and model-availability errors that say themselves
whether a retry can help."""

from typing import Any

from providers.adapters import openai as openai_wire
from providers.adapters.types import ChatResult, Deployment, UpstreamFailure, UpstreamRequest, Usage

IN_PROCESS = False  # builds HTTP requests and parses answers (see registry.py)
DEFAULT_MAX_TOKENS = openai_wire.DEFAULT_MAX_TOKENS


def build_chat(deployment: Deployment, body: dict[str, Any], *, stream: bool) -> UpstreamRequest:
    return openai_wire.build_chat(deployment, body, stream=stream)


def parse_chat(deployment: Deployment, body: bytes, *, request_id: str,
               request: dict[str, Any] | None = None) -> ChatResult:
    return openai_wire.parse_chat_body(deployment, body, request_id=request_id, with_cost=True)


def stream_translator(deployment: Deployment, *, request_id: str, created: int,
                      request: dict[str, Any] | None = None) -> openai_wire.OpenAIStreamTranslator:
    return openai_wire.OpenAIStreamTranslator(deployment, request_id=request_id, created=created, with_cost=True)


def build_embeddings(deployment: Deployment, body: dict[str, Any]) -> UpstreamRequest:
    return openai_wire.build_embeddings(deployment, body)


def parse_embeddings(deployment: Deployment, body: bytes, *, request: dict[str, Any] | None = None,
                     headers: dict[str, str] | None = None) -> tuple[bytes, Usage]:
    return openai_wire.parse_embeddings_body(deployment, body, with_cost=True)


def parse_error(deployment: Deployment, status: int, headers: dict[str, str], body: bytes) -> UpstreamFailure:
    return openai_wire.parse_error_body(deployment, status, headers, body)
