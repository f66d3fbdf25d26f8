"""Azure OpenAI: OpenAI's Chat Completions and embeddings bodies, streams and usage (see
providers/adapters/openai.py) behind a different URL and auth (wire-formats-2 §4).

- URL: ``{resource}/openai/deployments/{deployment}/chat/completions?api-version=…`` (and
  ``/embeddings``): the deployment in the path picks the model, so a model id here is a
  deployment name; ``api-version`` is the provider's ``options.api_version``.
- Auth: the key in the ``api-key`` header, or with ``options.auth = "entra"`` an Entra ID token
  as ``Authorization: Bearer`` (providers/adapters/headers.py); with ``"entra-client"`` the key is
  a client secret and the Bearer token is one the engine minted with it
  (providers/adapters/credentials.py).
- Streams: the first chunk may be ``"choices": []`` with only ``prompt_filter_results`` (and an
  empty id and model); it carries nothing for the client and is dropped like the usage chunk.
  Per-choice ``content_filter_results`` pass through.
- Errors: a prompt blocked by the content filter is a 400 with ``code: content_filter`` and
  ``innererror.code: ResponsibleAIPolicyViolation``: a ``content_policy`` failure (not retried:
  another attempt gets the same verdict); ``context_length_exceeded`` a ``context_window`` one
  (both classified by openai.classify_error, as for OpenAI); an unknown deployment is a 404
  ``DeploymentNotFound``."""

from typing import Any
from urllib.parse import quote

from providers.adapters import openai as openai_wire
from providers.adapters.types import ChatResult, Deployment, UpstreamFailure, UpstreamRequest, Usage

IN_PROCESS = False  # builds HTTP requests and parses answers (see registry.py)
DEFAULT_MAX_TOKENS = openai_wire.DEFAULT_MAX_TOKENS
API_VERSION = "2024-10-21"  # when a provider has none (providers.options.AZURE_API_VERSION)


def deployment_url(deployment: Deployment, operation: str) -> str:
    """``{resource}/openai/deployments/{deployment}/{operation}?api-version=…``."""
    version = deployment.option("api_version") or API_VERSION
    name = quote(deployment.model_id, safe="")
    return (f"{deployment.base_url}/openai/deployments/{name}/{operation}"
            f"?api-version={quote(version, safe='')}")


def build_chat(deployment: Deployment, body: dict[str, Any], *, stream: bool) -> UpstreamRequest:
    up = openai_wire.build_chat(deployment, body, stream=stream)
    return UpstreamRequest(method=up.method, url=deployment_url(deployment, "chat/completions"),
                           headers=up.headers, body=up.body)


def parse_chat(deployment: Deployment, body: bytes, *, request_id: str,
               request: dict[str, Any] | None = None) -> ChatResult:
    return openai_wire.parse_chat_body(deployment, body, request_id=request_id, with_cost=False)


def stream_translator(deployment: Deployment, *, request_id: str, created: int,
                      request: dict[str, Any] | None = None) -> openai_wire.OpenAIStreamTranslator:
    return openai_wire.OpenAIStreamTranslator(deployment, request_id=request_id, created=created, with_cost=False)


def build_embeddings(deployment: Deployment, body: dict[str, Any]) -> UpstreamRequest:
    up = openai_wire.build_embeddings(deployment, body)
    return UpstreamRequest(method=up.method, url=deployment_url(deployment, "embeddings"),
                           headers=up.headers, body=up.body)


def parse_embeddings(deployment: Deployment, body: bytes, *, request: dict[str, Any] | None = None,
                     headers: dict[str, str] | None = None) -> tuple[bytes, Usage]:
    return openai_wire.parse_embeddings_body(deployment, body, with_cost=False)


def parse_error(deployment: Deployment, status: int, headers: dict[str, str], body: bytes) -> UpstreamFailure:
    return openai_wire.parse_error_body(deployment, status, headers, body)
