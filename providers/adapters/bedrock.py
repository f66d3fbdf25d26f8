"""Amazon Bedrock Runtime: OpenAI chat requests translated to Converse
(``POST {base}/model/{modelId}/converse``) and ConverseStream (``…/converse-stream``, an AWS
event stream), and their answers, events, usage and errors translated back (wire-formats-2 §6).

- Auth (``options.auth``): ``"sigv4"`` (default) signs every request with the provider's access
  key pair through botocore (providers/adapters/sigv4.py) for the region ``options.region``;
  ``"bearer"`` sends the key, a Bedrock API key, as ``Authorization: Bearer``.
- Model ids: a foundation model (``anthropic.claude-3-5-haiku-20241022-v1:0``), an inference
  profile (``us.anthropic.claude-sonnet-4-5-20250929-v1:0``) or an ARN; in the URL path the id
  keeps its ``:`` and has its ``/`` encoded (what the HTTP client sends, and what is signed).
- Usage: ``inputTokens`` counts the uncached prompt only (Anthropic's convention:
  ``totalTokens`` = input + output + cacheRead + cacheWrite), so input = inputTokens +
  cacheReadInputTokens + cacheWriteInputTokens, of which the reads are cached input and the
  writes cache writes (priced at the model's cache-write price).
- Streams: ``application/vnd.amazon.eventstream`` frames, decoded by botocore's
  ``EventStreamBuffer`` (CRCs checked); ``:message-type`` ``event`` frames carry one
  ``ConverseStreamOutput`` member each, ``exception`` frames an error (``:exception-type``).
- Errors: the exception name from ``x-amzn-errortype`` (the part before ``:``), else the body's
  ``__type`` (after ``#``); the message from the body's ``message``. A ValidationException that
  says the input is too long is ``context_window``.
- JSON mode: Converse has none, so ``response_format`` json_schema / json_object is a forced tool
  (JSON_TOOL) whose input schema is the JSON schema, and its call's input is the answer's content
  (parse_chat and the stream translator are given the request to know it).
- Embeddings through InvokeModel (``POST {base}/model/{id}/invoke``): Amazon Titan text embeddings
  (``{"inputText", "dimensions"?}`` → ``{"embedding", "inputTextTokenCount"}``), one text per
  request as Titan takes it, and Cohere Embed (``{"texts", "input_type", "embedding_types"}`` →
  ``{"embeddings": {"float": [...]}}``, the input tokens in the ``X-Amzn-Bedrock-Input-Token-Count``
  header), up to 96 texts."""

import re
from functools import partial
from typing import Any
from urllib.parse import quote

from botocore.eventstream import EventStreamBuffer, ParserError
from orjson import JSONDecodeError, dumps, loads

from providers.adapters.conversation import TurnBuilders, conversation_walk
from providers.adapters.failures import bad_response, body_detail, failure, load_json, status_kind, truncated_stream
from providers.adapters.headers import deployment_headers
from providers.adapters.messages import (
    THINKING_BUDGETS,
    chat_completion,
    content_parts,
    parse_data_url,
    text_of,
    tool_arguments,
)
from providers.adapters.sigv4 import aws_credentials, sigv4_headers
from providers.adapters.sse import ChunkBuilder
from providers.adapters.types import ChatResult, Deployment, UpstreamFailure, UpstreamRequest, Usage, output_limit
from providers.adapters.usage import as_int, estimate_input_tokens, usage_to_openai

IN_PROCESS = False  # builds HTTP requests and parses answers (see registry.py)
DEFAULT_MAX_TOKENS = None  # Converse needs no output limit
EVENT_STREAM = "application/vnd.amazon.eventstream"
FILTERED = "content_filter"
FINISH_REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "tool_use": "tool_calls",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "guardrail_intervened": FILTERED,
    "content_filtered": FILTERED,
    "malformed_model_output": "stop",
    "malformed_tool_use": "stop",
}
IMAGE_FORMATS = {"image/png": "png", "image/jpeg": "jpeg", "image/jpg": "jpeg", "image/gif": "gif",
                 "image/webp": "webp"}
DOCUMENT_FORMATS = {"application/pdf": "pdf", "text/csv": "csv", "text/html": "html", "text/plain": "txt",
                    "text/markdown": "md", "application/msword": "doc",
                    "application/vnd.openxmlformats-officedocument.wordprocessingml.document": "docx",
                    "application/vnd.ms-excel": "xls",
                    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet": "xlsx"}
# AWS exception name -> (kind, retryable, words); others go by the HTTP status
EXCEPTIONS: dict[str, tuple[str, bool, str]] = {
    "ThrottlingException": ("rate_limit", True, "throttled"),
    "ServiceQuotaExceededException": ("quota", False, "service quota exceeded"),
    "ValidationException": ("bad_request", False, "invalid request"),
    "AccessDeniedException": ("auth", False, "access denied"),
    "UnrecognizedClientException": ("auth", False, "unrecognized credentials"),
    "InvalidSignatureException": ("auth", False, "invalid signature"),
    "IncompleteSignatureException": ("auth", False, "incomplete signature"),
    "MissingAuthenticationTokenException": ("auth", False, "missing credentials"),
    "ExpiredTokenException": ("auth", False, "expired credentials"),
    "ResourceNotFoundException": ("not_found", False, "not found"),
    "ModelTimeoutException": ("timeout", True, "model timed out"),
    "ModelNotReadyException": ("server_error", True, "model not ready"),
    "ModelErrorException": ("server_error", True, "model error"),
    "ModelStreamErrorException": ("server_error", True, "model stream error"),
    "InternalServerException": ("server_error", True, "internal error"),
    "ServiceUnavailableException": ("server_error", True, "service unavailable"),
}
CONTEXT_WINDOW = ("context_window", False, "input too long for the model")
# The forced tool that carries a response_format's JSON (Converse has no JSON mode; LiteLLM's name)
JSON_TOOL = "json_tool_call"
# Claude models on Bedrock without extended thinking (it came with 3.7 Sonnet)
_NO_THINKING = re.compile(r"claude-(v2|instant|3-(haiku|sonnet|opus)|3-5-)", re.I)
CLAUDE_MIN_BUDGET = 1024  # Claude's smallest thinking.budget_tokens
THINKING_ROOM = 8192  # output beyond the budget when a thinking request sets no max_tokens
# Claude models on Bedrock without prompt caching (it came with 3.5 Haiku and 3.7 Sonnet)
_NO_CACHE = re.compile(r"claude-(v2|instant|3-(haiku|sonnet|opus)|3-5-sonnet)", re.I)
_TOO_LONG = re.compile(
    r"too long|too many (input )?tokens|context (window|length)|maximum context|input length|"
    r"exceeds? the (maximum|max)\b.*tokens", re.I)


def _bad_request(deployment: Deployment, what: str) -> UpstreamFailure:
    return UpstreamFailure(kind="bad_request",
                           message=f"{deployment.provider_name} (Bedrock) cannot take this request: {what}")


def model_url(deployment: Deployment, operation: str) -> str:
    """``{base}/model/{modelId}/{operation}``: the id's ``/`` (ARNs) encoded, its ``:`` kept."""
    return f"{deployment.base_url}/model/{quote(deployment.model_id, safe=':')}/{operation}"


def signed(deployment: Deployment, method: str, url: str, headers: dict[str, str], body: bytes) -> dict[str, str]:
    """``headers`` with the provider's auth: a SigV4 signature unless ``options.auth`` is bearer
    (whose ``Authorization`` the headers already hold)."""
    if deployment.option("auth", "sigv4") == "bearer":
        return headers
    try:
        return sigv4_headers(method=method, url=url, headers=headers, body=body, api_key=deployment.api_key,
                             region=deployment.option("region"))
    except ValueError as exc:
        raise UpstreamFailure(
            kind="auth", message=f"{deployment.provider_name} (Bedrock) has no usable AWS credentials: {exc}; "
                                 "set its api_key, or options.auth \"bearer\" for a Bedrock API key.") from None


# ----------------------------------------------------------------------------- request
def _media_block(deployment: Deployment, url: str, what: str, *, name: str = "") -> dict[str, Any]:
    inline = parse_data_url(url)
    if inline is None:
        raise _bad_request(deployment, f"{what} must be sent inline as a base64 data: URL.")
    media_type, data = inline
    if media_type in IMAGE_FORMATS:
        return {"image": {"format": IMAGE_FORMATS[media_type], "source": {"bytes": data}}}
    if media_type in DOCUMENT_FORMATS:
        label = re.sub(r"[^A-Za-z0-9 ()\[\]-]", " ", name.rsplit(".", 1)[0]).strip() or "document"
        return {"document": {"format": DOCUMENT_FORMATS[media_type], "name": label[:200],
                             "source": {"bytes": data}}}
    raise _bad_request(deployment, f"{what} of type {media_type!r} is not supported (images: png, jpeg, gif, "
                                   "webp; documents: pdf, csv, doc(x), xls(x), html, txt, md).")


def caching(model_id: str) -> bool:
    """Whether ``model_id`` takes Converse's ``cachePoint`` blocks: Claude from 3.5 Haiku and 3.7
    Sonnet on, and Amazon Nova (Bedrock's prompt-caching models); the others refuse them."""
    return ("amazon.nova-" in model_id or "anthropic.claude" in model_id) and not _NO_CACHE.search(model_id)


def _cache_point(marked: Any) -> dict[str, Any] | None:
    """The ``cachePoint`` block for an Anthropic-style ``cache_control`` marker (``{"type":
    "ephemeral", "ttl"?: "5m" | "1h"}``), or None when ``marked`` is none."""
    if not isinstance(marked, dict) or marked.get("type") != "ephemeral":
        return None
    point: dict[str, Any] = {"type": "default"}
    if marked.get("ttl") in ("5m", "1h"):
        point["ttl"] = marked["ttl"]
    return {"cachePoint": point}


def _blocks(deployment: Deployment, content: Any, *, text_only: bool = False) -> list[dict[str, Any]]:
    """Converse content blocks for an OpenAI message ``content`` (string or parts); empty text
    is left out (Converse refuses a blank text block). A part marked with ``cache_control``
    is followed by a ``cachePoint`` on a model that caches (markers are dropped on others)."""
    if isinstance(content, list):
        blocks: list[dict[str, Any]] = []
        cache = caching(deployment.model_id)
        for part in content:
            blocks.extend(_part_blocks(deployment, [part], text_only=text_only))
            point = _cache_point(part.get("cache_control")) if cache and isinstance(part, dict) else None
            if point is not None and blocks:
                blocks.append(point)
        return blocks
    return _part_blocks(deployment, content, text_only=text_only)


def _part_blocks(deployment: Deployment, content: Any, *, text_only: bool) -> list[dict[str, Any]]:
    blocks: list[dict[str, Any]] = []
    for kind, value in content_parts(content, text_only=text_only, refuse=partial(_bad_request, deployment)):
        if kind == "text":
            blocks.append({"text": value})
        elif kind == "image":
            blocks.append(_media_block(deployment, value, "an image"))
        else:
            blocks.append(_media_block(deployment, str(value.get("file_data") or ""), "a file",
                                       name=str(value.get("filename") or "")))
    return blocks


def _tool_use(deployment: Deployment, call: Any) -> dict[str, Any]:
    if not isinstance(call, dict) or not isinstance(call.get("function"), dict):
        raise _bad_request(deployment, "an assistant tool call must have a 'function' object.")
    function = call["function"]
    return {"toolUse": {"toolUseId": str(call.get("id") or ""), "name": str(function.get("name") or ""),
                        "input": tool_arguments(function.get("arguments"), provider=deployment.provider_name)}}


def _marked(message: dict[str, Any]) -> Any:
    """The ``cache_control`` of a message: its own, or its content's last part's."""
    content = message.get("content")
    if isinstance(content, list) and content and isinstance(content[-1], dict) and "cache_control" in content[-1]:
        return content[-1]["cache_control"]
    return message.get("cache_control")


def _tool_result(message: dict[str, Any]) -> dict[str, Any]:
    """A tool message as a ``toolResult`` block: a JSON object as ``json``, anything else as text."""
    text = text_of(message.get("content"))
    try:
        value = loads(text) if text else None
    except JSONDecodeError:
        value = None
    content = [{"json": value}] if isinstance(value, dict) else [{"text": text or "(empty)"}]
    return {"toolResult": {"toolUseId": str(message.get("tool_call_id") or ""), "content": content,
                           "status": "success"}}


def json_mode(body: dict[str, Any] | None) -> bool:
    """Whether a chat request asks for JSON (``response_format`` json_object or json_schema)."""
    fmt = (body or {}).get("response_format")
    return isinstance(fmt, dict) and fmt.get("type") in ("json_object", "json_schema")


def _json_tool(deployment: Deployment, body: dict[str, Any]) -> dict[str, Any] | None:
    """The tool whose input is the answer ``response_format`` asks for (None: text): the JSON
    schema as its input schema (json_object: any object). Converse takes an object schema only."""
    fmt = body.get("response_format")
    if fmt is None:
        return None
    kind = fmt.get("type") if isinstance(fmt, dict) else None
    if kind not in ("text", "json_object", "json_schema"):
        raise _bad_request(deployment, "response_format must be {\"type\": \"text\"}, {\"type\": \"json_object\"} or "
                                       "{\"type\": \"json_schema\", \"json_schema\": {\"name\", \"schema\"}}.")
    if kind == "text":
        return None
    if kind == "json_object":
        schema: Any = {"type": "object"}
        description = "Respond with a JSON object: this tool's input is the answer."
    else:
        spec = fmt.get("json_schema")
        schema = spec.get("schema") if isinstance(spec, dict) else None
        if not isinstance(schema, dict):
            raise _bad_request(deployment, "response_format json_schema needs \"json_schema\": {\"name\": …, "
                                           "\"schema\": {…}} with the JSON schema as an object.")
        if schema.get("type") != "object":
            raise _bad_request(deployment, "response_format's JSON schema must describe an object (\"type\": "
                                           "\"object\"): Bedrock answers through a tool, whose input is an object; "
                                           "wrap yours, e.g. {\"type\": \"object\", \"properties\": {\"items\": …}}.")
        name = spec.get("name") if isinstance(spec.get("name"), str) else "response"
        description = str(spec.get("description") or f"Respond with the '{name}' JSON: this tool's input is the "
                                                         "answer.")
    return {"toolSpec": {"name": JSON_TOOL, "description": description, "inputSchema": {"json": schema}}}


def _tool_config(deployment: Deployment, body: dict[str, Any], *, history_uses_tools: bool) -> dict[str, Any] | None:
    """Converse's ``toolConfig``: the request's tools and tool_choice, and the forced JSON tool
    when ``response_format`` asks for JSON (forced alone, or ``any`` beside the client's tools so
    the model may call one of them or answer)."""
    json_tool = _json_tool(deployment, body)
    tools = []
    for tool in body.get("tools") if isinstance(body.get("tools"), list) else []:
        if (not isinstance(tool, dict) or tool.get("type", "function") != "function"
                or not isinstance(tool.get("function"), dict)):
            raise _bad_request(deployment, "only tools of type 'function' are supported.")
        function = tool["function"]
        if json_tool is not None and function.get("name") == JSON_TOOL:
            raise _bad_request(deployment, f"the tool name '{JSON_TOOL}' carries response_format's JSON on Bedrock; "
                                           "rename your tool.")
        schema = function.get("parameters")
        spec: dict[str, Any] = {
            "name": str(function.get("name") or ""),
            "inputSchema": {"json": schema if isinstance(schema, dict) and schema
                            else {"type": "object", "properties": {}}},
        }
        if function.get("description"):
            spec["description"] = str(function["description"])
        tools.append({"toolSpec": spec})
        point = _cache_point(tool.get("cache_control")) if caching(deployment.model_id) else None
        if point is not None:
            tools.append(point)
    choice = body.get("tool_choice")
    if json_tool is not None:
        forced = choice == "required" or isinstance(choice, dict)
        if forced and tools:
            raise _bad_request(deployment, "response_format json_object / json_schema cannot go with a tool_choice "
                                           "that forces a tool: Bedrock answers JSON through a forced tool of its "
                                           "own. Use tool_choice 'auto', or leave response_format out.")
        if tools and choice != "none":
            return {"tools": [*tools, json_tool], "toolChoice": {"any": {}}}
        offered = tools if history_uses_tools else []
        return {"tools": [*offered, json_tool], "toolChoice": {"tool": {"name": JSON_TOOL}}}
    if not tools:
        return None
    if choice == "none":
        # Converse has no "none": offer no tools, unless the history holds tool blocks (which
        # need the tools defined), then leave the choice to the model.
        return {"tools": tools} if history_uses_tools else None
    config: dict[str, Any] = {"tools": tools}
    if choice == "auto":
        config["toolChoice"] = {"auto": {}}
    elif choice == "required":
        config["toolChoice"] = {"any": {}}
    elif isinstance(choice, dict) and isinstance(choice.get("function"), dict) and choice["function"].get("name"):
        config["toolChoice"] = {"tool": {"name": str(choice["function"]["name"])}}
    return config


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _inference_config(deployment: Deployment, body: dict[str, Any]) -> dict[str, Any]:
    config: dict[str, Any] = {}
    limit = output_limit(body)
    if limit is not None:
        config["maxTokens"] = limit
    if _number(body.get("temperature")):
        config["temperature"] = body["temperature"]
    if _number(body.get("top_p")):
        config["topP"] = body["top_p"]
    stop = body.get("stop")
    if isinstance(stop, str) and stop:
        config["stopSequences"] = [stop]
    elif isinstance(stop, list) and stop:
        config["stopSequences"] = [s for s in stop if isinstance(s, str) and s]
    if isinstance(body.get("n"), int) and body["n"] > 1:
        raise _bad_request(deployment, "n > 1 (several choices) is not supported.")
    return config


def guardrail_config(deployment: Deployment) -> dict[str, Any] | None:
    """The provider's guardrail (``options.guardrail_identifier`` / ``guardrail_version`` /
    ``guardrail_trace``, checked in providers/options.py) as Converse's ``guardrailConfig``; the
    same shape goes on ConverseStream (whose ``streamProcessingMode`` is left to its default)."""
    identifier, version = deployment.option("guardrail_identifier"), deployment.option("guardrail_version")
    if not identifier or not version:
        return None
    config = {"guardrailIdentifier": identifier, "guardrailVersion": version}
    if deployment.option("guardrail_trace"):
        config["trace"] = deployment.option("guardrail_trace")
    return config


def chat_payload(deployment: Deployment, body: dict[str, Any]) -> dict[str, Any]:
    """The Converse request for an OpenAI chat body: system/developer messages become
    ``system``, tool calls ``toolUse`` blocks, tool results ``toolResult`` blocks in a user turn;
    consecutive turns of one role merge (Converse wants them alternating; the shared walk,
    conversation.py). ``top_k`` goes in
    ``additionalModelRequestFields`` for Anthropic models only (the others refuse it).
    Anthropic-style ``cache_control`` markers (on a content part, a whole message or a tool)
    become ``cachePoint`` blocks right after what they mark, for models that cache."""
    cache = caching(deployment.model_id)

    def marker(message: dict[str, Any], role: str) -> dict[str, Any] | None:
        """A marker on the whole message (a tool result's may sit on its content's last part)."""
        if not cache:
            return None
        return _cache_point(_marked(message) if role == "tool" else message.get("cache_control"))

    walked = conversation_walk(body.get("messages"), TurnBuilders(
        system=lambda message: _blocks(deployment, message.get("content"), text_only=True),
        user=lambda message: _blocks(deployment, message.get("content")),
        assistant=lambda message: [*_reasoning_blocks(message),
                                   *_blocks(deployment, message.get("content"), text_only=True)],
        tool_call=partial(_tool_use, deployment),
        tool_result=_tool_result,
        refuse=partial(_bad_request, deployment),
        marker=marker,
    ))
    system, uses_tools = walked.system, walked.uses_tools
    messages = [{"role": role, "content": blocks} for role, blocks in walked.turns]
    payload: dict[str, Any] = {"messages": messages}
    if system:
        payload["system"] = system
    inference = _inference_config(deployment, body)
    if inference:
        payload["inferenceConfig"] = inference
    tools = _tool_config(deployment, body, history_uses_tools=uses_tools)
    if tools is not None:
        payload["toolConfig"] = tools
    guardrail = guardrail_config(deployment)
    if guardrail is not None:
        payload["guardrailConfig"] = guardrail
    extra: dict[str, Any] = {}
    top_k = body.get("top_k")
    if (isinstance(top_k, int) and not isinstance(top_k, bool) and top_k > 0
            and "anthropic." in deployment.model_id):
        extra["top_k"] = top_k
    budget = _thinking_budget(deployment, body, messages)
    if budget:
        if "top_k" in extra or (_number(body.get("temperature")) and body["temperature"] != 1):
            raise _bad_request(deployment, "Claude takes no temperature (other than 1) or top_k with "
                                           "extended thinking (reasoning_effort); leave them out.")
        if isinstance(tools, dict) and ("any" in tools.get("toolChoice", {}) or "tool" in tools.get("toolChoice", {})):
            if json_mode(body):
                raise _bad_request(deployment, "Claude cannot think while a tool is forced, and Bedrock answers "
                                               "response_format's JSON through a forced tool; leave out "
                                               "reasoning_effort (or thinking) or response_format.")
            raise _bad_request(deployment, "Claude cannot think while tool_choice forces a tool; use tool_choice "
                                           "'auto', or leave reasoning_effort out.")
        limit = inference.get("maxTokens")
        if limit is not None and limit <= budget:
            raise _bad_request(deployment, f"max_tokens ({limit}) must be greater than the thinking budget "
                                           f"({budget} tokens) that the request's reasoning_effort or thinking sets.")
        payload["inferenceConfig"] = {**inference, "maxTokens": limit or budget + THINKING_ROOM}
        extra["thinking"] = {"type": "enabled", "budget_tokens": budget}
    if extra:
        payload["additionalModelRequestFields"] = extra
    return payload


def thinking(model_id: str) -> bool:
    """Whether ``model_id`` takes Claude's extended thinking (from Claude 3.7 Sonnet on)."""
    return "anthropic.claude" in model_id and not _NO_THINKING.search(model_id)


def _thinking_budget(deployment: Deployment, body: dict[str, Any], messages: list[dict[str, Any]]) -> int:
    """The ``budget_tokens`` a request asks of a Claude model: an enabled ``thinking`` object's
    own, else ``reasoning_effort``'s (THINKING_BUDGETS, raised to Claude's floor of 1024); or 0:
    none asked, ``none``, a model without thinking (dropped, as OpenAI's non-reasoning models take
    no effort), or a conversation whose last assistant turn calls tools without its reasoning
    blocks (Claude refuses thinking then)."""
    effort, asked = body.get("reasoning_effort"), body.get("thinking")
    if isinstance(asked, dict):  # Anthropic's own field (LiteLLM takes it too; the Messages door sends it)
        budget = asked.get("budget_tokens")
        if asked.get("type") != "enabled":
            return 0
        if not isinstance(budget, int) or isinstance(budget, bool) or budget < CLAUDE_MIN_BUDGET:
            raise _bad_request(deployment, f"thinking.budget_tokens must be an integer of at least "
                                           f"{CLAUDE_MIN_BUDGET} (got {budget!r}).")
    elif effort is None:
        return 0
    elif effort not in THINKING_BUDGETS:
        raise _bad_request(deployment, f"reasoning_effort must be one of {', '.join(THINKING_BUDGETS)} "
                                       f"(got {effort!r}).")
    else:
        budget = max(THINKING_BUDGETS[effort], CLAUDE_MIN_BUDGET) if THINKING_BUDGETS[effort] else 0
    if not budget or not thinking(deployment.model_id):
        return 0
    assistants = [m for m in messages if m["role"] == "assistant"]
    last = assistants[-1]["content"] if assistants else []
    if any("toolUse" in b for b in last) and not (last and "reasoningContent" in last[0]):
        return 0
    return budget


def _reasoning_blocks(message: dict[str, Any]) -> list[dict[str, Any]]:
    """``reasoningContent`` blocks for an assistant message's ``thinking_blocks`` (what answers
    carry: ``{"type": "thinking", "thinking", "signature"}`` or ``{"type": "redacted_thinking",
    "data"}``), which Claude wants back, unchanged, before a tool-calling turn's calls."""
    out: list[dict[str, Any]] = []
    for block in message.get("thinking_blocks") if isinstance(message.get("thinking_blocks"), list) else []:
        if not isinstance(block, dict):
            continue
        if block.get("type") == "thinking" and isinstance(block.get("thinking"), str) and block.get("signature"):
            out.append({"reasoningContent": {"reasoningText": {"text": block["thinking"],
                                                               "signature": str(block["signature"])}}})
        elif block.get("type") == "redacted_thinking" and isinstance(block.get("data"), str):
            out.append({"reasoningContent": {"redactedContent": block["data"]}})
    return out


def _thinking_block(reasoning: Any) -> dict[str, Any] | None:
    """The ``thinking_blocks`` entry for a Converse ``reasoningContent`` block, or None."""
    if not isinstance(reasoning, dict):
        return None
    text = reasoning.get("reasoningText")
    if isinstance(text, dict) and isinstance(text.get("text"), str):
        return {"type": "thinking", "thinking": text["text"], "signature": str(text.get("signature") or "")}
    if isinstance(reasoning.get("redactedContent"), str):
        return {"type": "redacted_thinking", "data": reasoning["redactedContent"]}
    return None


def build_chat(deployment: Deployment, body: dict[str, Any], *, stream: bool) -> UpstreamRequest:
    """``POST {base}/model/{id}/converse`` (or ``/converse-stream``), signed."""
    url = model_url(deployment, "converse-stream" if stream else "converse")
    data = dumps(chat_payload(deployment, body))
    headers = deployment_headers(deployment, accept=EVENT_STREAM if stream else "application/json")
    return UpstreamRequest(method="POST", url=url, headers=signed(deployment, "POST", url, headers, data), body=data)


# ----------------------------------------------------------------------------- answers
def usage_from_bedrock(raw: Any) -> Usage | None:
    """Converse ``usage`` as ``Usage`` (see the module docstring for the arithmetic)."""
    if not isinstance(raw, dict):
        return None
    read = as_int(raw.get("cacheReadInputTokens"))
    written = as_int(raw.get("cacheWriteInputTokens"))
    return Usage(
        input_tokens=as_int(raw.get("inputTokens")) + read + written,
        cached_input_tokens=read,
        cache_write_tokens=written,
        output_tokens=as_int(raw.get("outputTokens")),
    )


def _openai_call(block: dict[str, Any]) -> dict[str, Any]:
    use = block["toolUse"]
    args = use.get("input")
    return {"id": str(use.get("toolUseId") or ""), "type": "function",
            "function": {"name": str(use.get("name") or ""),
                         "arguments": dumps(args if isinstance(args, dict) else {}).decode()}}


def _finish(reason: Any, *, calls: bool) -> str:
    """The OpenAI finish_reason; ``calls``: whether the answer carries tool calls (the JSON tool's
    answer is content, so a turn that ends on it alone is ``stop``)."""
    mapped = FINISH_REASONS.get(reason, "stop") if isinstance(reason, str) else "stop"
    if mapped == "tool_calls" and not calls:
        return "stop"
    return "tool_calls" if calls and mapped == "stop" else mapped


def parse_chat(deployment: Deployment, body: bytes, *, request_id: str,
               request: dict[str, Any] | None = None) -> ChatResult:
    obj = load_json(deployment, body, "a Converse answer")
    if type(obj) is not dict:
        raise bad_response(deployment, "answered with JSON that is not a Converse answer.")
    output = obj.get("output")
    message = output.get("message") if isinstance(output, dict) else None
    if not isinstance(message, dict) or not isinstance(message.get("content"), list):
        raise bad_response(deployment, "answered without 'output.message.content'; is this the Bedrock Runtime?")
    texts: list[str] = []
    calls: list[dict[str, Any]] = []
    thoughts: list[dict[str, Any]] = []
    answers: list[str] = []  # the JSON tool's input: the answer response_format asked for
    wants_json = json_mode(request)
    for block in message["content"]:
        if not isinstance(block, dict):
            continue
        if isinstance(block.get("toolUse"), dict) and wants_json and block["toolUse"].get("name") == JSON_TOOL:
            args = block["toolUse"].get("input")
            answers.append(dumps(args if isinstance(args, dict) else {}).decode())
        elif isinstance(block.get("toolUse"), dict):
            calls.append(_openai_call(block))
        elif isinstance(block.get("text"), str):
            texts.append(block["text"])
        elif (thought := _thinking_block(block.get("reasoningContent"))) is not None:
            thoughts.append(thought)
    text = answers[0] if answers else "".join(texts)  # the JSON alone: a word before it would spoil it
    answer: dict[str, Any] = {"role": "assistant", "content": text if text or not calls else None, "refusal": None}
    if calls:
        answer["tool_calls"] = calls
    if thoughts:
        answer["reasoning_content"] = "".join(t.get("thinking", "") for t in thoughts)
        answer["thinking_blocks"] = thoughts
    usage = usage_from_bedrock(obj.get("usage"))
    result = chat_completion(
        completion_id=f"chatcmpl-{request_id}",
        model=deployment.model_id,
        message=answer,
        finish_reason=_finish(obj.get("stopReason"), calls=bool(calls)),
        usage=usage_to_openai(usage, cache_known=True) if usage is not None else None,
    )
    return ChatResult(body=result, usage=usage if usage is not None else Usage(estimated=True))


# ----------------------------------------------------------------------------- errors
def _exception_name(raw: Any) -> str:
    """``ThrottlingException`` of ``ThrottlingException:http://internal.amazon.com/…`` or of
    ``com.amazon.coral.validate#ValidationException``; AWS's stream names are camelCase."""
    name = str(raw or "").split(":", 1)[0].rsplit("#", 1)[-1].strip()
    return name[:1].upper() + name[1:]


def _classified(name: str, detail: str) -> tuple[str, bool, str] | None:
    if name == "ValidationException" and _TOO_LONG.search(detail):
        return CONTEXT_WINDOW
    return EXCEPTIONS.get(name)


def _scrubbed(deployment: Deployment, text: str) -> str:
    """``text`` without the secret parts of the provider's key (``failure`` hides the whole key)."""
    credentials = aws_credentials(deployment.api_key) if deployment.api_key else None
    for secret in credentials[1:] if credentials else ():
        if secret and len(secret) >= 6:
            text = text.replace(secret, "[key hidden]")
    return text


def parse_error(deployment: Deployment, status: int, headers: dict[str, str], body: bytes) -> UpstreamFailure:
    try:
        obj = loads(body) if body else None
    except JSONDecodeError:
        obj = None
    obj = obj if isinstance(obj, dict) else {}
    name = _exception_name(headers.get("x-amzn-errortype") or obj.get("__type") or obj.get("code"))
    message = obj.get("message") or obj.get("Message")
    detail = message if isinstance(message, str) and message else body_detail(body)
    if name:
        detail = f"{name}: {detail}"
    classified = _classified(name, detail)
    if classified is None or ((status >= 500 or status in (408, 429)) and not classified[1]):
        classified = status_kind(status)  # a 5xx or 429 stays retryable whatever its name says
    return failure(deployment, status, headers, _scrubbed(deployment, detail), classified=classified)


def stream_exception(deployment: Deployment, name: str, payload: bytes) -> UpstreamFailure:
    """An ``exception`` (or ``error``) frame inside a ConverseStream."""
    try:
        obj = loads(payload) if payload else None
    except JSONDecodeError:
        obj = None
    message = obj.get("message") if isinstance(obj, dict) else None
    name = _exception_name(name)
    detail = f"{name}: {message if isinstance(message, str) and message else body_detail(payload)}"
    classified = _classified(name, detail) or ("server_error", True, "server error")
    return failure(deployment, None, None, _scrubbed(deployment, detail), classified=classified)


# ----------------------------------------------------------------------------- streams
class BedrockStreamTranslator:
    """ConverseStream event-stream frames → OpenAI chunks: ``messageStart`` the role chunk, text
    deltas content chunks, a ``toolUse`` block's start its call (id and name) and its input
    deltas the call's argument fragments, ``messageStop`` the finish chunk and ``metadata`` the
    usage. Blocks are keyed by ``contentBlockIndex`` (a text block may start with a delta)."""

    __slots__ = ("usage", "text_chars", "finish_reason", "_deployment", "_buffer", "_chunks", "_request_id",
                 "_created", "_calls", "_stopped", "_failed", "_thoughts", "_json", "_json_blocks")

    def __init__(self, deployment: Deployment, *, request_id: str, created: int, json: bool = False) -> None:
        self.usage: Usage | None = None
        self.text_chars = 0
        self.finish_reason: str | None = None
        self._deployment = deployment
        self._buffer = EventStreamBuffer()
        self._chunks: ChunkBuilder | None = None
        self._request_id = request_id
        self._created = created
        self._calls: dict[int, int] = {}  # contentBlockIndex -> tool call index
        self._stopped = False
        self._failed: UpstreamFailure | None = None  # raised once the chunks before it are out
        self._thoughts: dict[int, dict[str, Any]] = {}  # contentBlockIndex -> the reasoning block being streamed
        self._json = json  # the request asked for JSON: the JSON tool's input streams as content
        self._json_blocks: set[int] = set()  # contentBlockIndex of the JSON tool's block

    def feed(self, data: bytes) -> list[bytes]:
        if self._failed is not None:
            raise self._failed
        self._buffer.add_data(data)
        out: list[bytes] = []
        try:
            for message in self._buffer:
                self._frame(message.headers, message.payload, out)
        except ParserError as exc:
            self._failed = bad_response(self._deployment, f"sent a corrupt event-stream frame ({exc}).")
        except UpstreamFailure as exc:
            self._failed = exc
        if self._failed is not None and not out:
            raise self._failed
        return out  # the chunks before a failure first; the next feed or finish raises it

    def finish(self) -> list[bytes]:
        if self._failed is not None:
            raise self._failed
        if not self._stopped:
            raise truncated_stream(self._deployment)
        return []

    def _start(self, out: list[bytes]) -> ChunkBuilder:
        if self._chunks is None:
            self._chunks = ChunkBuilder(f"chatcmpl-{self._request_id}", self._created, self._deployment.model_id)
            out.append(self._chunks.role())
        return self._chunks

    def _frame(self, headers: dict[str, Any], payload: bytes, out: list[bytes]) -> None:
        kind = headers.get(":message-type")
        if kind == "exception":
            raise stream_exception(self._deployment, str(headers.get(":exception-type") or ""), payload)
        if kind == "error":
            raise stream_exception(self._deployment, str(headers.get(":error-code") or ""),
                                   dumps({"message": str(headers.get(":error-message") or "")}))
        if kind != "event":
            return
        try:
            obj = loads(payload) if payload else {}
        except JSONDecodeError:
            raise bad_response(self._deployment, "sent a malformed stream event (invalid JSON).") from None
        if type(obj) is not dict:
            raise bad_response(self._deployment, "sent a stream event that is not a JSON object.")
        event = headers.get(":event-type")
        chunks = self._start(out)
        if event == "contentBlockStart":
            use = (obj.get("start") or {}).get("toolUse") if isinstance(obj.get("start"), dict) else None
            if isinstance(use, dict) and self._json and use.get("name") == JSON_TOOL:
                self._json_blocks.add(as_int(obj.get("contentBlockIndex")))
            elif isinstance(use, dict):
                index = self._calls.setdefault(as_int(obj.get("contentBlockIndex")), len(self._calls))
                out.append(chunks.delta({"tool_calls": [{
                    "index": index, "id": str(use.get("toolUseId") or ""), "type": "function",
                    "function": {"name": str(use.get("name") or ""), "arguments": ""}}]}))
        elif event == "contentBlockDelta":
            delta = obj.get("delta") if isinstance(obj.get("delta"), dict) else {}
            if isinstance(delta.get("reasoningContent"), dict):
                self._reasoning(as_int(obj.get("contentBlockIndex")), delta["reasoningContent"], chunks, out)
            elif isinstance(delta.get("text"), str) and delta["text"]:
                self.text_chars += len(delta["text"])
                out.append(chunks.content(delta["text"]))
            elif isinstance(delta.get("toolUse"), dict):
                fragment = delta["toolUse"].get("input")
                block = as_int(obj.get("contentBlockIndex"))
                index = self._calls.get(block)
                if isinstance(fragment, str) and fragment and block in self._json_blocks:
                    self.text_chars += len(fragment)
                    out.append(chunks.content(fragment))
                elif isinstance(fragment, str) and fragment and index is not None:
                    self.text_chars += len(fragment)
                    out.append(chunks.delta({"tool_calls": [{"index": index, "function": {"arguments": fragment}}]}))
        elif event == "contentBlockStop":
            self._close_thought(as_int(obj.get("contentBlockIndex")), chunks, out)
        elif event == "messageStop":
            self._stopped = True
            self.finish_reason = _finish(obj.get("stopReason"), calls=bool(self._calls))
            out.append(chunks.finish(self.finish_reason))
        elif event == "metadata":
            usage = usage_from_bedrock(obj.get("usage"))
            if usage is not None:
                self.usage = usage
        # messageStart: the role chunk is sent above

    def _reasoning(self, index: int, delta: dict[str, Any], chunks: ChunkBuilder, out: list[bytes]) -> None:
        """A ``reasoningContent`` delta: its text relayed as ``reasoning_content``, its signature
        (or redacted content) kept until the block stops, when the whole block goes out as a
        ``thinking_blocks`` delta (what a client sends back with a tool-calling turn)."""
        thought = self._thoughts.setdefault(index, {"type": "thinking", "thinking": "", "signature": ""})
        if isinstance(delta.get("text"), str) and delta["text"]:
            thought["thinking"] += delta["text"]
            self.text_chars += len(delta["text"])
            out.append(chunks.delta({"reasoning_content": delta["text"]}))
        if isinstance(delta.get("signature"), str):
            thought["signature"] += delta["signature"]
        if isinstance(delta.get("redactedContent"), str):
            self._thoughts[index] = {"type": "redacted_thinking", "data": delta["redactedContent"]}

    def _close_thought(self, index: int, chunks: ChunkBuilder, out: list[bytes]) -> None:
        thought = self._thoughts.pop(index, None)
        if thought is not None:
            out.append(chunks.delta({"thinking_blocks": [thought]}))


def stream_translator(deployment: Deployment, *, request_id: str, created: int,
                      request: dict[str, Any] | None = None) -> BedrockStreamTranslator:
    return BedrockStreamTranslator(deployment, request_id=request_id, created=created, json=json_mode(request))


# ----------------------------------------------------------------------------- embeddings
TITAN_EMBED_PREFIX = "amazon.titan-embed-text"  # v1 and v2
TITAN_V2_DIMENSIONS = (256, 512, 1024)
COHERE_EMBED_PREFIX = "cohere.embed-"  # embed-english-v3, embed-multilingual-v3, embed-v4:0 (and their profiles)
COHERE_MAX_TEXTS = 96  # Cohere Embed's per-request limit
COHERE_V4_DIMENSIONS = (256, 512, 1024, 1536)
COHERE_INPUT_TYPES = ("search_document", "search_query", "classification", "clustering")
INPUT_TOKENS_HEADER = "x-amzn-bedrock-input-token-count"  # InvokeModel's count of the input tokens


def embedding_model(model_id: str) -> bool:
    """Whether the adapter translates embeddings for ``model_id`` (a foundation id or a profile of one)."""
    return model_id.startswith(TITAN_EMBED_PREFIX) or COHERE_EMBED_PREFIX in model_id


def build_embeddings(deployment: Deployment, body: dict[str, Any]) -> UpstreamRequest:
    """``POST {base}/model/{id}/invoke``, signed: Titan's ``{"inputText", "dimensions"?}`` or
    Cohere's ``{"texts", "input_type", "embedding_types": ["float"], "output_dimension"?}``."""
    if COHERE_EMBED_PREFIX in deployment.model_id:
        payload = _cohere_payload(deployment, body)
    elif TITAN_EMBED_PREFIX in deployment.model_id:
        payload = _titan_payload(deployment, body)
    else:
        raise _bad_request(deployment, "embeddings are translated for Amazon Titan text embeddings "
                                       f"({TITAN_EMBED_PREFIX}-*) and Cohere Embed ({COHERE_EMBED_PREFIX}*) only; "
                                       "route other embedding models elsewhere.")
    url = model_url(deployment, "invoke")
    data = dumps(payload)
    headers = deployment_headers(deployment)
    return UpstreamRequest(method="POST", url=url, headers=signed(deployment, "POST", url, headers, data), body=data)


def _titan_payload(deployment: Deployment, body: dict[str, Any]) -> dict[str, Any]:
    raw = body.get("input")
    if isinstance(raw, list) and len(raw) == 1:
        raw = raw[0]
    if not isinstance(raw, str) or not raw:
        raise _bad_request(deployment, "Titan embeds one non-empty text per request: send 'input' as a string "
                                       "(or a list of one string).")
    payload: dict[str, Any] = {"inputText": raw}
    dimensions = body.get("dimensions")
    if dimensions is not None:
        if "v2" not in deployment.model_id or dimensions not in TITAN_V2_DIMENSIONS:
            raise _bad_request(deployment, "'dimensions' is 256, 512 or 1024, for Titan Text Embeddings V2 only.")
        payload["dimensions"] = dimensions
    return payload


def _cohere_payload(deployment: Deployment, body: dict[str, Any]) -> dict[str, Any]:
    """Cohere Embed's body: ``input_type`` is the request's own (Cohere's extension of the
    embeddings request), ``search_document`` by default; ``dimensions`` is Embed v4's
    ``output_dimension``."""
    raw = body.get("input")
    texts = [raw] if isinstance(raw, str) else raw
    if not isinstance(texts, list) or not texts or not all(isinstance(t, str) and t for t in texts):
        raise _bad_request(deployment, "Cohere Embed takes a non-empty string or a list of non-empty strings "
                                       "as 'input' (no token arrays).")
    if len(texts) > COHERE_MAX_TEXTS:
        raise _bad_request(deployment, f"Cohere Embed takes at most {COHERE_MAX_TEXTS} texts per request "
                                       f"(got {len(texts)}); split the input.")
    input_type = body.get("input_type", "search_document")
    if input_type not in COHERE_INPUT_TYPES:
        raise _bad_request(deployment, f"'input_type' is one of {', '.join(COHERE_INPUT_TYPES)} (got {input_type!r}).")
    payload: dict[str, Any] = {"texts": texts, "input_type": input_type, "embedding_types": ["float"]}
    dimensions = body.get("dimensions")
    if dimensions is not None:
        if "embed-v4" not in deployment.model_id or dimensions not in COHERE_V4_DIMENSIONS:
            raise _bad_request(deployment, "'dimensions' is 256, 512, 1024 or 1536, for Cohere Embed v4 only "
                                           "(v3 models answer 1024).")
        payload["output_dimension"] = dimensions
    return payload


def parse_embeddings(deployment: Deployment, body: bytes, *, request: dict[str, Any] | None = None,
                     headers: dict[str, str] | None = None) -> tuple[bytes, Usage]:
    """Titan's ``{"embedding": [...], "inputTextTokenCount": n}`` or Cohere's ``{"embeddings":
    [[...]] | {"float": [[...]]}}`` as an OpenAI embeddings list, in floats whatever
    ``encoding_format`` asked (as Ollama's: the openai SDK, which asks for base64, takes floats as
    they are). Cohere's input tokens come from the ``X-Amzn-Bedrock-Input-Token-Count`` header
    (Bedrock moves Cohere's ``meta`` there); without it they are estimated, and marked so."""
    obj = load_json(deployment, body, "an embedding")
    if type(obj) is not dict:
        raise bad_response(deployment, "answered with JSON that is not an embedding.")
    if COHERE_EMBED_PREFIX in deployment.model_id:
        vectors = obj.get("embeddings")
        if type(vectors) is dict:
            vectors = vectors.get("float")
        if type(vectors) is not list or not vectors or not all(type(v) is list for v in vectors):
            raise bad_response(deployment, "answered without float 'embeddings'; is this a Cohere Embed model?")
        counted = (headers or {}).get(INPUT_TOKENS_HEADER, "")
        usage = Usage(input_tokens=int(counted)) if counted.strip().isdigit() else \
            Usage(input_tokens=estimate_input_tokens((request or {}).get("input")), estimated=True)
    else:
        vector = obj.get("embedding")
        if type(vector) is not list:
            raise bad_response(deployment, "answered without an 'embedding' list; is this a Titan embeddings model?")
        vectors = [vector]
        usage = Usage(input_tokens=as_int(obj.get("inputTextTokenCount")), estimated="inputTextTokenCount" not in obj)
    result = {"object": "list", "data": [{"object": "embedding", "index": i, "embedding": v}
                                         for i, v in enumerate(vectors)],
              "model": deployment.model_id,
              "usage": {"prompt_tokens": usage.input_tokens, "total_tokens": usage.input_tokens}}
    return dumps(result), usage
