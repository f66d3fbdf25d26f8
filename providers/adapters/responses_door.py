"""The OpenAI Responses API (``POST /v1/responses``) on the wire: a Responses request as the
Chat Completions request every adapter understands, a chat answer as a ``response`` object,
a chat chunk stream as Responses SSE events, and, for OpenAI upstreams that speak Responses
themselves, the relayed request and the usage read out of the relayed answer or stream.

What does not translate (decided here, said in the README's Responses section):

- ``previous_response_id``, ``conversation``, ``item_reference`` items, ``background`` and
  stored ``prompt`` templates need state kept by the server. An OpenAI upstream keeps it, so
  they are relayed there; a request that needs them and lands on any other provider is a 400
  telling the client to send the whole conversation in ``input`` (``store: false`` clients,
  Codex among them, always do).
- ``reasoning`` input items are dropped: their ``encrypted_content`` only means something to
  OpenAI, and Chat Completions has no field for it.
- ``store``, ``include``, ``truncation``, ``service_tier``, ``prompt_cache_key``,
  ``safety_identifier``, ``max_tool_calls``, ``top_logprobs``, ``stream_options`` and
  ``client_metadata`` have no Chat Completions meaning and are not sent on translated paths.
- ``function`` tools translate, and so do the function tools of a ``namespace`` (as
  ``<namespace>__<name>``, split again in the answer). OpenAI's hosted and built-in tools (web
  search, file search, computer, shell, …) exist only there: offered to another provider they
  are left out (the model answers without them, as Codex's optional web search expects); a
  ``tool_choice`` that forces one, or a ``custom`` (free-form) tool, is a 400 naming it.

Pure: no Django, imports only ``core`` and the adapters' own modules."""

import time
from typing import Any

from orjson import JSONDecodeError, dumps, loads

from core.errors import InvalidInput
from providers.adapters.failures import bad_response, load_json
from providers.adapters.headers import deployment_headers
from providers.adapters.messages import text_of
from providers.adapters.sse import SSEDecoder
from providers.adapters.types import Deployment, UpstreamRequest, Usage
from providers.adapters.usage import as_int

ROLES = ("user", "assistant", "system", "developer")
STATEFUL = ("previous_response_id", "conversation", "prompt")
FULL_INPUT = ("send the whole conversation in 'input' instead (store: false clients do), or route this "
              "model to an OpenAI provider, which keeps response state itself")
# Request fields the response object echoes back, with the value it shows when the request left them out.
ECHOED = {"instructions": None, "max_output_tokens": None, "metadata": {}, "parallel_tool_calls": True,
          "previous_response_id": None, "reasoning": None, "store": True, "temperature": 1.0,
          "text": {"format": {"type": "text"}}, "tool_choice": "auto", "tools": [], "top_p": 1.0,
          "truncation": "disabled", "user": None}
INCOMPLETE = {"length": "max_output_tokens", "content_filter": "content_filter"}


# ----------------------------------------------------------------------------- request
def chat_request(body: dict[str, Any]) -> dict[str, Any]:
    """The Chat Completions request for the Responses request ``body``. Raises
    ``InvalidInput`` (with the offending field) for what cannot be served without OpenAI's
    server-side state or built-in tools, and for malformed input."""
    for name in STATEFUL:
        if body.get(name) not in (None, ""):
            raise InvalidInput(f"'{name}' needs response state kept by OpenAI, and this model is served by "
                               f"another provider: {FULL_INPUT}.", field=name)
    if body.get("background"):
        raise InvalidInput("'background' responses are kept and polled on OpenAI's servers; this model is "
                           "served by another provider, so send the request without it.", field="background")
    messages: list[dict[str, Any]] = []
    instructions = body.get("instructions")
    if instructions is not None:
        if not isinstance(instructions, str):
            raise InvalidInput("'instructions' must be a string.", field="instructions")
        if instructions:
            messages.append({"role": "system", "content": instructions})
    _input_messages(body.get("input"), messages)
    out: dict[str, Any] = {"model": body.get("model"), "messages": messages}
    for name in ("temperature", "top_p", "parallel_tool_calls", "metadata", "user", "stream"):
        if body.get(name) is not None:
            out[name] = body[name]
    limit = body.get("max_output_tokens")
    if limit is not None:
        if not isinstance(limit, int) or isinstance(limit, bool) or limit < 1:
            raise InvalidInput("'max_output_tokens' must be a positive integer.", field="max_output_tokens")
        out["max_completion_tokens"] = limit
    reasoning = body.get("reasoning")
    if isinstance(reasoning, dict) and isinstance(reasoning.get("effort"), str):
        out["reasoning_effort"] = reasoning["effort"]
    elif reasoning is not None and not isinstance(reasoning, dict):
        raise InvalidInput("'reasoning' must be an object such as {\"effort\": \"low\"}.", field="reasoning")
    _text_options(body.get("text"), out)
    tools = body.get("tools")
    if tools:
        out["tools"] = _tools(tools)
    choice = body.get("tool_choice")
    if choice is not None:
        _tool_choice(choice, out)
    return out


def _input_messages(value: Any, messages: list[dict[str, Any]]) -> None:
    if isinstance(value, str):
        if not value:
            raise InvalidInput("'input' must not be empty.", field="input")
        messages.append({"role": "user", "content": value})
        return
    if not isinstance(value, list) or not value:
        raise InvalidInput("'input' must be a non-empty string or a non-empty array of input items.", field="input")
    for index, item in enumerate(value):
        where = f"input[{index}]"
        if not isinstance(item, dict):
            raise InvalidInput(f"'{where}' must be an object (a message or an item with a 'type').", field="input")
        kind = item.get("type", "message")
        if kind == "message":
            messages.append(_message(item, where))
        elif kind == "function_call":
            call_id, name, arguments = item.get("call_id"), item.get("name"), item.get("arguments", "")
            if not isinstance(call_id, str) or not call_id or not isinstance(name, str) or not name:
                raise InvalidInput(f"'{where}' (function_call) needs a 'call_id' and a 'name'.", field="input")
            if not isinstance(arguments, str):
                raise InvalidInput(f"'{where}.arguments' must be a JSON string.", field="input")
            if isinstance(item.get("namespace"), str) and item["namespace"]:
                name = f"{item['namespace']}{NAMESPACE_SEPARATOR}{name}"
            call = {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}
            last = messages[-1] if messages else None
            if last is not None and last["role"] == "assistant":  # one assistant turn, several calls
                last.setdefault("tool_calls", []).append(call)
            else:
                messages.append({"role": "assistant", "content": None, "tool_calls": [call]})
        elif kind == "function_call_output":
            call_id, output = item.get("call_id"), item.get("output")
            if not isinstance(call_id, str) or not call_id:
                raise InvalidInput(f"'{where}' (function_call_output) needs the 'call_id' it answers.", field="input")
            if isinstance(output, list):
                output = text_of([_part(p, "user", where) for p in output])
            elif not isinstance(output, str):
                raise InvalidInput(f"'{where}.output' must be a string or an array of content parts.", field="input")
            messages.append({"role": "tool", "tool_call_id": call_id, "content": output})
        elif kind == "reasoning":
            continue  # only OpenAI can read its encrypted reasoning; Chat Completions has no field for it
        elif kind == "item_reference":
            raise InvalidInput(f"'{where}' refers to an item stored by OpenAI, and this model is served by "
                               f"another provider: {FULL_INPUT}.", field="input")
        else:
            raise InvalidInput(f"'{where}' has type '{kind}', which only OpenAI serves; this model is served by "
                               "another provider, which understands messages, function_call and "
                               "function_call_output items.", field="input")


def _message(item: dict[str, Any], where: str) -> dict[str, Any]:
    role = item.get("role")
    if role not in ROLES:
        raise InvalidInput(f"'{where}.role' must be one of {', '.join(ROLES)}.", field="input")
    content = item.get("content")
    if role == "developer":  # not every chat server knows the role; all know system
        role = "system"
    if isinstance(content, str):
        return {"role": role, "content": content}
    if not isinstance(content, list):
        raise InvalidInput(f"'{where}.content' must be a string or an array of content parts.", field="input")
    parts = [_part(part, role, where) for part in content]
    if role != "user" or all(p["type"] == "text" for p in parts):
        return {"role": role, "content": "".join(p["text"] for p in parts if p["type"] == "text")}
    return {"role": role, "content": parts}


def _part(part: Any, role: str, where: str) -> dict[str, Any]:
    kind = part.get("type") if isinstance(part, dict) else None
    if kind in ("input_text", "output_text", "text"):
        text = part.get("text")
        if not isinstance(text, str):
            raise InvalidInput(f"A '{kind}' part of '{where}' needs a string 'text'.", field="input")
        return {"type": "text", "text": text}
    if kind == "refusal":
        return {"type": "text", "text": part.get("refusal") if isinstance(part.get("refusal"), str) else ""}
    if kind == "input_image" and role == "user":
        url = part.get("image_url")
        if not isinstance(url, str) or not url:
            raise InvalidInput(f"An 'input_image' part of '{where}' needs an 'image_url' (a URL or a data: URL); "
                               "'file_id' refers to a file stored by OpenAI.", field="input")
        image: dict[str, Any] = {"url": url}
        if part.get("detail") in ("low", "high", "auto"):
            image["detail"] = part["detail"]
        return {"type": "image_url", "image_url": image}
    if kind == "input_file" and role == "user":
        file = {k: part[k] for k in ("file_data", "file_id", "filename") if isinstance(part.get(k), str)}
        if "file_data" not in file and "file_id" not in file:
            raise InvalidInput(f"An 'input_file' part of '{where}' needs 'file_data'.", field="input")
        return {"type": "file", "file": file}
    raise InvalidInput(f"'{where}' has a content part of type '{kind}' that a {role} message cannot carry.",
                       field="input")


def _text_options(text: Any, out: dict[str, Any]) -> None:
    if text is None:
        return
    if not isinstance(text, dict):
        raise InvalidInput("'text' must be an object such as {\"format\": {\"type\": \"text\"}}.", field="text")
    fmt = text.get("format")
    if isinstance(fmt, dict):
        kind = fmt.get("type")
        if kind == "json_schema":
            if not isinstance(fmt.get("name"), str) or not isinstance(fmt.get("schema"), dict):
                raise InvalidInput("'text.format' of type json_schema needs a 'name' and a 'schema' object.",
                                   field="text")
            schema = {k: fmt[k] for k in ("name", "schema", "strict", "description") if k in fmt}
            out["response_format"] = {"type": "json_schema", "json_schema": schema}
        elif kind == "json_object":
            out["response_format"] = {"type": "json_object"}
        elif kind != "text":
            raise InvalidInput("'text.format.type' must be text, json_schema or json_object.", field="text")
    if isinstance(text.get("verbosity"), str):
        out["verbosity"] = text["verbosity"]


NAMESPACE_SEPARATOR = "__"  # Anthropic and others allow only [a-zA-Z0-9_-] in tool names


def _function(tool: dict[str, Any], where: str, namespace: str = "") -> dict[str, Any]:
    if not isinstance(tool.get("name"), str) or not tool["name"]:
        raise InvalidInput(f"'{where}' needs a 'name'.", field="tools")
    function = {k: tool[k] for k in ("name", "description", "parameters", "strict") if tool.get(k) is not None}
    if namespace:
        function["name"] = f"{namespace}{NAMESPACE_SEPARATOR}{tool['name']}"
    return {"type": "function", "function": function}


def _tools(tools: Any) -> list[dict[str, Any]]:
    if not isinstance(tools, list):
        raise InvalidInput("'tools' must be an array.", field="tools")
    out = []
    for index, tool in enumerate(tools):
        kind = tool.get("type") if isinstance(tool, dict) else None
        where = f"tools[{index}]"
        if kind == "function":
            out.append(_function(tool, where))
        elif kind == "namespace":
            namespace = tool.get("name")
            if not isinstance(namespace, str) or not namespace or not isinstance(tool.get("tools"), list):
                raise InvalidInput(f"'{where}' (namespace) needs a 'name' and a 'tools' array.", field="tools")
            for inner, member in enumerate(tool["tools"]):
                if not isinstance(member, dict) or member.get("type") != "function":
                    raise InvalidInput(f"'{where}.tools[{inner}]' is not a function tool; this model is served by "
                                       "another provider, which takes function tools.", field="tools")
                out.append(_function(member, f"{where}.tools[{inner}]", namespace))
        elif kind == "custom" or not isinstance(kind, str):
            raise InvalidInput(f"'{where}' has type '{kind}'; this model is served by another provider, which "
                               "takes function tools (with JSON arguments).", field="tools")
        # else: a tool hosted or built in at OpenAI; the model answers without it
    return out


def namespaces(request: dict[str, Any]) -> dict[str, tuple[str, str]]:
    """Flattened tool name -> (namespace, name), for the namespaced tools of ``request``."""
    found: dict[str, tuple[str, str]] = {}
    for tool in request.get("tools") or ():
        if isinstance(tool, dict) and tool.get("type") == "namespace" and isinstance(tool.get("name"), str):
            for member in tool.get("tools") or ():
                if isinstance(member, dict) and isinstance(member.get("name"), str):
                    found[f"{tool['name']}{NAMESPACE_SEPARATOR}{member['name']}"] = (tool["name"], member["name"])
    return found


def _tool_choice(choice: Any, out: dict[str, Any]) -> None:
    if choice in ("none", "auto", "required"):
        out["tool_choice"] = choice
        return
    kind = choice.get("type") if isinstance(choice, dict) else None
    if kind == "function" and isinstance(choice.get("name"), str):
        out["tool_choice"] = {"type": "function", "function": {"name": choice["name"]}}
    elif (kind == "allowed_tools" and choice.get("mode") in ("auto", "required")
          and isinstance(choice.get("tools"), list)):
        allowed = {t.get("name") for t in choice["tools"] if isinstance(t, dict)}
        out["tools"] = [t for t in out.get("tools", []) if t["function"]["name"] in allowed]
        out["tool_choice"] = choice["mode"] if out["tools"] else "none"
    else:
        raise InvalidInput("'tool_choice' must be none, auto, required, {\"type\": \"function\", \"name\": …} or "
                           "an allowed_tools choice of function tools when the model is not served by OpenAI.",
                           field="tool_choice")


def check_request(body: dict[str, Any]) -> None:
    """Refuse what no upstream could serve (wrong types), before anything is counted;
    ``chat_request`` checks the rest when the request is translated."""
    stateful = any(body.get(name) for name in STATEFUL)
    value = body.get("input")
    if value is None and not stateful:
        raise InvalidInput("'input' is required: a string, or an array of input items.", field="input")
    if value is not None and not isinstance(value, (str, list)):
        raise InvalidInput("'input' must be a string or an array of input items.", field="input")
    if not isinstance(body.get("stream", False), bool):
        raise InvalidInput("'stream' must be true or false.", field="stream")
    limit = body.get("max_output_tokens")
    if limit is not None and (not isinstance(limit, int) or isinstance(limit, bool) or limit < 1):
        raise InvalidInput("'max_output_tokens' must be a positive integer.", field="max_output_tokens")
    for name in ("temperature", "top_p"):
        number = body.get(name)
        if number is not None and (not isinstance(number, (int, float)) or isinstance(number, bool)):
            raise InvalidInput(f"'{name}' must be a number.", field=name)
    for name, kind, words in (("instructions", str, "a string"), ("tools", list, "an array"),
                              ("metadata", dict, "an object of string pairs"), ("user", str, "a string")):
        if body.get(name) is not None and not isinstance(body[name], kind):
            raise InvalidInput(f"'{name}' must be {words}.", field=name)


def request_summary(body: dict[str, Any]) -> dict[str, Any]:
    """What admission reads of a Responses request, in Chat Completions names: the model, the
    output limit, the sampling settings the tenant's defaults may fill, metadata and user."""
    out: dict[str, Any] = {"model": body.get("model")}
    limit = output_limit(body)
    if limit is not None:
        out["max_completion_tokens"] = limit
    for name in ("temperature", "top_p", "metadata", "user"):
        if body.get(name) is not None:
            out[name] = body[name]
    return out


def relay_request(body: dict[str, Any], summary: dict[str, Any]) -> dict[str, Any]:
    """The Responses request to relay: as it came, with the settings the defaults filled into
    ``summary`` (an output limit, temperature, top_p) that it left out."""
    out = body
    for name in ("temperature", "top_p"):
        if body.get(name) is None and summary.get(name) is not None:
            out = out if out is not body else dict(body)
            out[name] = summary[name]
    if body.get("max_output_tokens") is None:
        limit = summary.get("max_completion_tokens") or summary.get("max_tokens")
        if limit is not None:
            out = out if out is not body else dict(body)
            out["max_output_tokens"] = limit
    return out


def output_limit(body: dict[str, Any]) -> int | None:
    """The ``max_output_tokens`` a Responses request sets (a positive integer), else None."""
    value = body.get("max_output_tokens")
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None


# ----------------------------------------------------------------------------- response
def response_id(request_id: str) -> str:
    return "resp_" + request_id.removeprefix("req_")


def usage_to_responses(usage: Usage) -> dict[str, Any]:
    return {
        "input_tokens": usage.input_tokens,
        "input_tokens_details": {"cached_tokens": usage.cached_input_tokens,
                                 "cache_write_tokens": usage.cache_write_tokens},
        "output_tokens": usage.output_tokens,
        "output_tokens_details": {"reasoning_tokens": usage.reasoning_tokens},
        "total_tokens": usage.input_tokens + usage.output_tokens,
    }


def usage_from_responses(u: Any) -> Usage | None:
    """``Usage`` from a Responses ``usage`` object (``None`` if it is not one)."""
    if not isinstance(u, dict):
        return None
    usage = Usage(input_tokens=as_int(u.get("input_tokens")), output_tokens=as_int(u.get("output_tokens")))
    details = u.get("input_tokens_details")
    if isinstance(details, dict):
        usage.cached_input_tokens = as_int(details.get("cached_tokens"))
        usage.cache_write_tokens = as_int(details.get("cache_write_tokens"))
    details = u.get("output_tokens_details")
    if isinstance(details, dict):
        usage.reasoning_tokens = as_int(details.get("reasoning_tokens"))
    return usage


def response_skeleton(request: dict[str, Any], *, resp_id: str, model: str, created: int) -> dict[str, Any]:
    """A ``response`` object in progress: the request's settings echoed, no output yet."""
    body: dict[str, Any] = {"id": resp_id, "object": "response", "created_at": created, "status": "in_progress",
                            "background": False, "error": None, "incomplete_details": None, "model": model,
                            "output": []}
    for name, default in ECHOED.items():
        value = request.get(name)
        body[name] = default if value is None else value
    body["usage"] = None
    return body


def _finish(body: dict[str, Any], finish_reason: str | None, usage: Usage | None) -> dict[str, Any]:
    reason = INCOMPLETE.get(finish_reason or "")
    body["status"] = "incomplete" if reason else "completed"
    body["incomplete_details"] = {"reason": reason} if reason else None
    if not reason:
        body["completed_at"] = int(time.time())
    body["usage"] = usage_to_responses(usage) if usage is not None else None
    return body


def message_item(item_id: str, text: str, *, refusal: str | None = None, status: str = "completed") -> dict[str, Any]:
    content: list[dict[str, Any]] = []
    if text:
        content.append({"type": "output_text", "text": text, "annotations": [], "logprobs": []})
    if refusal:
        content.append({"type": "refusal", "refusal": refusal})
    return {"type": "message", "id": item_id, "status": status, "role": "assistant", "content": content}


def reasoning_of(part: dict[str, Any]) -> str:
    """The reasoning text an OpenAI-compatible server puts beside the content of a message or
    delta (DeepSeek and vLLM: ``reasoning_content``; OpenRouter: ``reasoning``)."""
    for key in ("reasoning_content", "reasoning"):
        value = part.get(key)
        if isinstance(value, str) and value:
            return value
    return ""


def reasoning_item(item_id: str, text: str, status: str = "completed") -> dict[str, Any]:
    """A ``reasoning`` output item carrying the reasoning as text (no encrypted content: only
    OpenAI can make that)."""
    return {"type": "reasoning", "id": item_id, "summary": [], "status": status,
            "content": [{"type": "reasoning_text", "text": text}] if text else []}


def function_call_item(item_id: str, call_id: str, name: str, arguments: str, status: str = "completed",
                       spaces: dict[str, tuple[str, str]] | None = None) -> dict[str, Any]:
    """A ``function_call`` output item; a flattened namespaced name is split again."""
    item = {"type": "function_call", "id": item_id, "call_id": call_id, "name": name, "arguments": arguments,
            "status": status}
    if spaces and name in spaces:
        item["namespace"], item["name"] = spaces[name]
    return item


def response_from_chat(chat: bytes, usage: Usage, *, request: dict[str, Any], resp_id: str) -> bytes:
    """The ``response`` object for a ``chat.completion`` body (its first choice), with
    ``usage`` as the engine counted it."""
    obj = loads(chat)
    choice = obj["choices"][0]
    message = choice.get("message") or {}
    created = obj.get("created") if isinstance(obj.get("created"), int) else int(time.time())
    body = response_skeleton(request, resp_id=resp_id, model=obj.get("model") or "", created=created)
    suffix = resp_id.removeprefix("resp_")
    reasoning = reasoning_of(message)
    if reasoning:
        body["output"].append(reasoning_item(f"rs_{suffix}", reasoning))
    text = text_of(message.get("content"))
    refusal = message.get("refusal") if isinstance(message.get("refusal"), str) else None
    if text or refusal:
        body["output"].append(message_item(f"msg_{suffix}", text, refusal=refusal))
    spaces = namespaces(request)
    for i, call in enumerate(message.get("tool_calls") or []):
        function = call.get("function") or {}
        arguments = function.get("arguments")
        body["output"].append(function_call_item(
            f"fc_{suffix}_{i}", call.get("id") or f"call_{suffix}_{i}", function.get("name") or "",
            arguments if isinstance(arguments, str) else dumps(arguments or {}).decode(), spaces=spaces))
    return dumps(_finish(body, choice.get("finish_reason"), usage))


# ----------------------------------------------------------------------------- stream
def event(kind: str, payload: dict[str, Any]) -> bytes:
    return b"event: " + kind.encode() + b"\ndata: " + dumps(payload) + b"\n\n"


class ChatToResponsesStream:
    """Chat ``chat.completion.chunk`` SSE in (bytes split anywhere), Responses events out.

    ``start`` returns ``response.created`` and ``response.in_progress``; ``feed`` the events
    for the chunks in hand (items opened and closed as text and tool calls come); ``finish``
    closes what is open and ends with ``response.completed`` (or ``response.incomplete`` when
    the answer was cut by the token limit or a filter) carrying ``usage``; ``fail`` ends a
    stream that broke with ``response.failed``. Every event has a ``sequence_number`` from 0."""

    def __init__(self, request: dict[str, Any], *, resp_id: str, model: str, created: int) -> None:
        self._decoder = SSEDecoder()
        self._seq = 0
        self._suffix = resp_id.removeprefix("resp_")
        self.response = response_skeleton(request, resp_id=resp_id, model=model, created=created)
        self.finish_reason: str | None = None
        self._text: dict[str, Any] | None = None  # the open message item: {index, id, text}
        self._reasoning: dict[str, Any] | None = None  # the open reasoning item: {index, id, text}
        # chat tool-call index -> {index, id, call_id, name, arguments, open}
        self._calls: dict[int, dict[str, Any]] = {}
        self._open_call: int | None = None
        self._spaces = namespaces(request)

    def _emit(self, kind: str, payload: dict[str, Any]) -> bytes:
        payload = {"type": kind, "sequence_number": self._seq, **payload}
        self._seq += 1
        return event(kind, payload)

    def start(self) -> bytes:
        return (self._emit("response.created", {"response": self.response})
                + self._emit("response.in_progress", {"response": self.response}))

    def feed(self, data: bytes) -> bytes:
        out: list[bytes] = []
        for _name, payload in self._decoder.feed(data):
            self._chunk(payload, out)
        return b"".join(out)

    def _chunk(self, payload: bytes, out: list[bytes]) -> None:
        if payload[:6] == b"[DONE]":
            return
        try:
            obj = loads(payload)
        except JSONDecodeError:
            return
        if isinstance(obj.get("model"), str) and obj["model"]:
            self.response["model"] = obj["model"]
        for choice in obj.get("choices") or ():
            delta = choice.get("delta") or {}
            reasoning = reasoning_of(delta)
            if reasoning:
                self._reasoning_delta(reasoning, out)
            content = delta.get("content")
            if isinstance(content, str) and content:
                self._text_delta(content, out)
            for call in delta.get("tool_calls") or ():
                self._call_delta(call, out)
            if choice.get("finish_reason"):
                self.finish_reason = choice["finish_reason"]

    def _reasoning_delta(self, text: str, out: list[bytes]) -> None:
        self._close_text(out)
        self._close_call(out)
        item = self._reasoning
        if item is None:
            item = self._reasoning = {"index": len(self.response["output"]), "id": f"rs_{self._suffix}_{self._seq}",
                                      "text": ""}
            self.response["output"].append(None)
            out.append(self._emit("response.output_item.added", {
                "output_index": item["index"], "item": reasoning_item(item["id"], "", status="in_progress")}))
        item["text"] += text
        out.append(self._emit("response.reasoning_text.delta", {
            "item_id": item["id"], "output_index": item["index"], "content_index": 0, "delta": text}))

    def _close_reasoning(self, out: list[bytes]) -> None:
        item = self._reasoning
        if item is None:
            return
        self._reasoning = None
        out.append(self._emit("response.reasoning_text.done", {
            "item_id": item["id"], "output_index": item["index"], "content_index": 0, "text": item["text"]}))
        done = reasoning_item(item["id"], item["text"])
        self.response["output"][item["index"]] = done
        out.append(self._emit("response.output_item.done", {"output_index": item["index"], "item": done}))

    def _text_delta(self, text: str, out: list[bytes]) -> None:
        self._close_reasoning(out)
        self._close_call(out)
        item = self._text
        if item is None:
            item = self._text = {"index": len(self.response["output"]), "id": f"msg_{self._suffix}_{self._seq}",
                                 "text": ""}
            self.response["output"].append(None)  # its place; filled when it closes
            out.append(self._emit("response.output_item.added", {
                "output_index": item["index"], "item": message_item(item["id"], "", status="in_progress")}))
            out.append(self._emit("response.content_part.added", {
                "item_id": item["id"], "output_index": item["index"], "content_index": 0,
                "part": {"type": "output_text", "text": "", "annotations": [], "logprobs": []}}))
        item["text"] += text
        out.append(self._emit("response.output_text.delta", {
            "item_id": item["id"], "output_index": item["index"], "content_index": 0, "delta": text,
            "logprobs": []}))

    def _close_text(self, out: list[bytes]) -> None:
        item = self._text
        if item is None:
            return
        self._text = None
        part = {"type": "output_text", "text": item["text"], "annotations": [], "logprobs": []}
        where = {"item_id": item["id"], "output_index": item["index"], "content_index": 0}
        out.append(self._emit("response.output_text.done", {**where, "text": item["text"], "logprobs": []}))
        out.append(self._emit("response.content_part.done", {**where, "part": part}))
        done = message_item(item["id"], item["text"])
        self.response["output"][item["index"]] = done
        out.append(self._emit("response.output_item.done", {"output_index": item["index"], "item": done}))

    def _call_delta(self, call: Any, out: list[bytes]) -> None:
        if not isinstance(call, dict):
            return
        index = call.get("index") if isinstance(call.get("index"), int) else 0
        function = call.get("function") if isinstance(call.get("function"), dict) else {}
        state = self._calls.get(index)
        if state is None:
            self._close_reasoning(out)
            self._close_text(out)
            self._close_call(out)
            state = self._calls[index] = {
                "index": len(self.response["output"]), "id": f"fc_{self._suffix}_{index}",
                "call_id": call.get("id") or f"call_{self._suffix}_{index}",
                "name": function.get("name") or "", "arguments": "", "open": True}
            self.response["output"].append(None)
            self._open_call = index
            out.append(self._emit("response.output_item.added", {
                "output_index": state["index"],
                "item": function_call_item(state["id"], state["call_id"], state["name"], "", "in_progress",
                                           self._spaces)}))
        arguments = function.get("arguments")
        if isinstance(arguments, str) and arguments:
            state["arguments"] += arguments
            if state["open"]:
                out.append(self._emit("response.function_call_arguments.delta", {
                    "item_id": state["id"], "output_index": state["index"], "delta": arguments}))

    def _close_call(self, out: list[bytes]) -> None:
        if self._open_call is None:
            return
        state = self._calls[self._open_call]
        self._open_call = None
        state["open"] = False
        done = function_call_item(state["id"], state["call_id"], state["name"], state["arguments"],
                                  spaces=self._spaces)
        out.append(self._emit("response.function_call_arguments.done", {
            "item_id": state["id"], "output_index": state["index"], "name": done["name"],
            "arguments": state["arguments"]}))
        self.response["output"][state["index"]] = done
        out.append(self._emit("response.output_item.done", {"output_index": state["index"], "item": done}))

    def finish(self, usage: Usage | None) -> bytes:
        out: list[bytes] = []
        for _name, payload in self._decoder.finish():
            self._chunk(payload, out)
        self._close_reasoning(out)
        self._close_text(out)
        self._close_call(out)
        for state in self._calls.values():  # a late delta for a call already closed
            self.response["output"][state["index"]] = function_call_item(
                state["id"], state["call_id"], state["name"], state["arguments"], spaces=self._spaces)
        self.response["output"] = [item for item in self.response["output"] if item is not None]
        _finish(self.response, self.finish_reason, usage)
        kind = "response.incomplete" if self.response["status"] == "incomplete" else "response.completed"
        out.append(self._emit(kind, {"response": self.response}))
        return b"".join(out)

    def fail(self, message: str, code: str = "server_error") -> bytes:
        """``response.failed`` for a stream that broke after it started."""
        self.response["output"] = [item for item in self.response["output"] if item is not None]
        self.response["status"] = "failed"
        self.response["error"] = {"code": code, "message": message}
        return self._emit("response.failed", {"response": self.response})


# ----------------------------------------------------------------------------- relay to OpenAI
def build_relay(deployment: Deployment, body: dict[str, Any], *, stream: bool) -> UpstreamRequest:
    """``POST {base}/responses`` with the request as the client sent it, ``model`` replaced (on
    Azure: the v1 API's ``{resource}/openai/v1/responses``, ``model`` the deployment name)."""
    payload = dict(body)
    payload["model"] = deployment.model_id
    if not stream:
        payload.pop("stream", None)
        payload.pop("stream_options", None)
    base = f"{deployment.base_url}/openai/v1" if deployment.provider_type == "azure" else deployment.base_url
    return UpstreamRequest(method="POST", url=f"{base}/responses",
                           headers=deployment_headers(deployment, accept="text/event-stream" if stream
                                                      else "application/json"),
                           body=dumps(payload))


def relayed_usage(deployment: Deployment, body: bytes) -> Usage:
    """The usage of a relayed ``response`` object (estimated, none counted, when it reports
    none). An answer that is not a response object is a ``bad_response`` worth falling back
    from."""
    obj = load_json(deployment, body, "a response object")
    if not isinstance(obj, dict) or obj.get("object") != "response":
        raise bad_response(deployment, "answered /responses with JSON that is not a response object; does it "
                                       "speak the Responses API?")
    return usage_from_responses(obj.get("usage")) or Usage(estimated=True)


TERMINAL = (b"response.completed", b"response.incomplete", b"response.failed")
UNNAMED = (*TERMINAL, b'"error"')  # what a data-only stream's terminal and error events hold near their start


class RelayWatcher:
    """Watches a relayed Responses stream without changing a byte (a ``StreamTranslator`` whose
    ``feed`` hands the bytes back as they came): notes the usage of the terminal event and, for
    estimates, the characters of the deltas. Only the terminal and error events are parsed."""

    __slots__ = ("_decoder", "usage", "text_chars", "terminal", "error", "events", "finish_reason")

    def __init__(self) -> None:
        self._decoder = SSEDecoder()
        self.usage: Usage | None = None
        self.text_chars = 0
        self.terminal: str | None = None  # the terminal event's type, once seen
        self.error: str | None = None  # the message of a standalone error event
        self.events = 0  # events seen (the next sequence number, as OpenAI counts from 0)
        self.finish_reason: str | None = None  # the terminal event's type, once seen

    def feed(self, data: bytes) -> list[bytes]:
        self._watch(self._decoder.feed(data))
        return [data]

    def finish(self) -> list[bytes]:
        self._watch(self._decoder.finish())
        return []

    def _watch(self, events: list[tuple[bytes, bytes]]) -> None:
        self.events += len(events)
        for name, data in events:
            if name.endswith(b".delta"):
                self.text_chars += max(0, len(data) - 120)  # the event's own fields are about 120 bytes
            elif name in TERMINAL or name == b"error" or (not name and any(t in data[:80] for t in UNNAMED)):
                try:
                    obj = loads(data)
                except JSONDecodeError:
                    continue
                kind = obj.get("type") if isinstance(obj, dict) else None
                if kind == "error":
                    self.error = str(obj.get("message") or "the upstream stream reported an error")
                elif isinstance(kind, str) and kind.encode() in TERMINAL:
                    self.terminal = self.finish_reason = kind
                    response = obj.get("response")
                    if isinstance(response, dict):
                        self.usage = usage_from_responses(response.get("usage"))
