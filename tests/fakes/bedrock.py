"""Fake Amazon Bedrock: the Runtime's Converse and ConverseStream, and the control plane's
ListFoundationModels, on one loopback server (wire-formats-2 §6).

Serves ``POST /model/{modelId}/converse`` (JSON), ``POST /model/{modelId}/converse-stream``
(``application/vnd.amazon.eventstream``: binary frames with prelude, headers and CRC-32s,
encoded here; one ``ConverseStreamOutput`` member per frame: ``messageStart``,
``contentBlockStart`` for a tool call, ``contentBlockDelta``, ``contentBlockStop``,
``messageStop``, ``metadata`` with the usage) and ``GET /foundation-models``
(``{"modelSummaries": [...]}``; entries may override ``inputModalities``, ``outputModalities``,
``inferenceTypesSupported``, …) and ``GET /inference-profiles`` (``{"inferenceProfileSummaries":
[...], "nextToken"?}``: a ``us.<id>`` system-defined profile of every model whose
``inferenceTypesSupported`` holds ``INFERENCE_PROFILE``; ``maxResults`` capped at
``max_page_size``, ``nextToken`` paging, ``type`` filtering).

Auth, checked on every request:

- ``auth="sigv4"`` (default) with ``api_key="AKID:SECRET[:TOKEN]"``: the SigV4 signature is
  **verified**: the ``Authorization`` header's shape, the credential scope
  (``<AKID>/<YYYYMMDD>/<region>/bedrock/aws4_request``), ``x-amz-date`` (matching the scope's
  date, within 15 minutes of now), ``x-amz-security-token`` when the key has a token, and the
  signature itself, recomputed with botocore's signer from the request as received (raw path,
  query, the signed headers, the body). Failures answer 403 as AWS does
  (``MissingAuthenticationTokenException``, ``IncompleteSignatureException``,
  ``UnrecognizedClientException``, ``InvalidSignatureException``).
- ``auth="bearer"``: ``Authorization: Bearer <api_key>`` (a Bedrock API key); else 403.

Errors: status + ``x-amzn-ErrorType: <Name>:http://internal.amazon.com/coral/com.amazon.bedrock/``
+ ``{"message": …}`` (``variant`` names the exception; by default 400 ValidationException, 403
AccessDeniedException, 404 ResourceNotFoundException, 429 ThrottlingException, 500
InternalServerException, 503 ServiceUnavailableException). Requests are checked as Converse
does: unknown top-level keys, empty or non-alternating ``messages`` (first must be ``user``),
blocks without exactly one member, blank text, ``toolUse``/``toolResult`` without a
``toolConfig``: 400 ValidationException. ``context_limit`` (prompt words) makes a longer prompt a
400 ValidationException "Input is too long for requested model.". Mid-stream faults:
``stream_error`` sends an ``exception`` frame (``:exception-type`` = ``variant`` or
``throttlingException``), ``malformed`` a well-framed event whose JSON payload is cut.

InvokeModel for Amazon Titan text embeddings: ``POST /model/amazon.titan-embed-text-v*/invoke``
``{"inputText", "dimensions"?, "normalize"?}`` → ``{"embedding": [...dimensions floats],
"inputTextTokenCount"}`` (the ``usage`` override's ``prompt_tokens``, else the word count), and for
Cohere Embed (``cohere.embed-*``, profiles too) ``{"texts", "input_type", "embedding_types"?}`` →
``{"embeddings": [[...]] | {"float": [[...]]}}`` with the count only in the
``X-Amzn-Bedrock-Input-Token-Count`` header (every InvokeModel answer carries it).

Guardrails: a ``guardrailConfig`` is checked as Converse does (``invalid_guardrail``); with
``guardrail_blocks`` set, a prompt holding that word gets the guardrail's blocked message with
``stopReason`` ``guardrail_intervened`` (and, with ``trace`` enabled, a ``trace.guardrail``).
Reasoning: ``additionalModelRequestFields.thinking`` ``{"type": "enabled", "budget_tokens"}`` is
checked as Claude does (``invalid_thinking``: at least 1024, below ``maxTokens``, no
temperature but 1, no top_k, Claude only, and a tool-calling assistant turn sent back must start with its signed
``reasoningContent``); the answer then starts with a ``reasoningContent`` block (``reasoning``,
signed with ``REASONING_SIGNATURE``), streamed as ``reasoningContent`` text deltas then a
signature delta.

Tools: a ``toolSpec``'s ``inputSchema.json`` must be an object schema; a ``toolChoice`` of ``any`` or
``tool`` is refused (in Bedrock's words) by models other than Claude, Mistral Large and Nova, and on the
others makes the answer a call of that tool (``any``: ``tool_call`` until it is answered, else the last
tool), its input an example of the tool's
schema (``example_of``) unless ``tool_call`` says otherwise.

Usage mapping (as the Anthropic fake): ``Usage.prompt_tokens`` → ``inputTokens`` (uncached),
``cached_tokens`` → ``cacheReadInputTokens``, ``cache_creation_tokens`` →
``cacheWriteInputTokens``; ``totalTokens`` is the sum of all four counts.
"""

from __future__ import annotations

import binascii
import json
import re
import struct
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any, ClassVar
from urllib.parse import unquote, urlencode

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from .base import Call, FakeServer, Fault, Reply, Usage, embedding_vector

ERROR_URL = "http://internal.amazon.com/coral/com.amazon.bedrock/"
TOP_FIELDS = frozenset({"messages", "system", "inferenceConfig", "toolConfig", "guardrailConfig",
                        "additionalModelRequestFields", "promptVariables", "additionalModelResponseFieldPaths",
                        "requestMetadata", "performanceConfig", "serviceTier", "outputConfig"})
BLOCK_MEMBERS = frozenset({"text", "image", "document", "video", "audio", "toolUse", "toolResult",
                           "reasoningContent", "cachePoint", "guardContent", "citationsContent", "searchResult"})
BEDROCK_ERRORS: dict[int, tuple[str, str]] = {
    400: ("ValidationException", "Malformed input request, please reformat your input and try again."),
    403: ("AccessDeniedException", "You don't have access to the model with the specified model ID."),
    404: ("ResourceNotFoundException", "The requested resource could not be found."),
    408: ("ModelTimeoutException", "The model took too long to respond."),
    424: ("ModelErrorException", "The model returned an error."),
    429: ("ThrottlingException", "Too many requests, please wait before trying again."),
    500: ("InternalServerException", "The server encountered an internal error."),
    503: ("ServiceUnavailableException", "Bedrock is unable to process your request."),
}
TOO_LONG = "Input is too long for requested model."
GUARDRAIL_MESSAGE = "Sorry, the model cannot answer this question."  # a guardrail's default blocked message
REASONING_SIGNATURE = "EqoBCkgIARABGAIiQFakeReasoningSignature+/="
PADDING = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0"  # AWS pads events with a "p" member


def example_of(schema: Any) -> Any:
    """A value of a (simple) JSON schema, as a model forced to call a tool with it would give: every
    property of an object, the first enum value, one item of an array."""
    if not isinstance(schema, dict):
        return None
    if "enum" in schema:
        return schema["enum"][0]
    kind = schema.get("type")
    if kind == "object":
        return {name: example_of(sub) for name, sub in (schema.get("properties") or {}).items()}
    if kind == "array":
        return [example_of(schema.get("items"))]
    return {"string": "text", "integer": 1, "number": 1.5, "boolean": True}.get(kind)


def event_frame(headers: dict[str, str], payload: bytes) -> bytes:
    """One AWS event-stream message: prelude (total length, headers length, CRC), string
    headers (type 7), payload, message CRC."""
    head = b"".join(bytes([len(name)]) + name.encode() + b"\x07" + struct.pack(">H", len(value.encode()))
                    + value.encode() for name, value in headers.items())
    prelude = struct.pack(">II", 12 + len(head) + len(payload) + 4, len(head))
    message = prelude + struct.pack(">I", binascii.crc32(prelude)) + head + payload
    return message + struct.pack(">I", binascii.crc32(message))


def event(name: str, body: dict[str, Any]) -> bytes:
    return event_frame({":event-type": name, ":content-type": "application/json", ":message-type": "event"},
                       json.dumps(body, separators=(",", ":")).encode())


class FakeBedrock(FakeServer):
    """Runtime + control plane on one server; ``base_url`` is the root (what a bedrock
    provider's base URL is set to)."""

    protocol = "bedrock"
    base_path = ""
    default_models: ClassVar[list[str]] = ["anthropic.claude-3-5-haiku-20241022-v1:0", "amazon.nova-pro-v1:0"]
    model_prefix = "bedrock-fake"
    retry_after_statuses: ClassVar[tuple[int, ...]] = ()  # AWS sends no retry-after
    stream_content_type = "application/vnd.amazon.eventstream"
    max_page_size = 1000  # ListInferenceProfiles' maxResults cap (lower it to test paging)
    routes: ClassVar[dict[tuple[str, str], str]] = {("GET", "/foundation-models"): "models",
                                                    ("GET", "/inference-profiles"): "profiles"}
    prefix_routes = (("POST", "/model/", "converse"),)

    def __init__(self, *, auth: str = "sigv4", region: str = "us-east-1", context_limit: int | None = None,
                 guardrail_blocks: str | None = None, reasoning: str = "Let me think it through.",
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.auth = auth
        self.region = region
        self.context_limit = context_limit
        self.guardrail_blocks = guardrail_blocks  # a word the guardrail blocks in a prompt
        self.reasoning = reasoning  # the reasoning text of a Claude answer with thinking enabled
        self.verified = 0  # requests whose SigV4 signature was recomputed and matched

    def response_headers(self) -> dict[str, str]:
        return {"x-amzn-RequestId": self.new_id("req-")}

    # ------------------------------------------------------------ auth
    def _denied(self, name: str, message: str) -> Reply:
        return self.error(403, message, variant=name)

    def check_auth(self, call: Call) -> Reply | None:
        auth = call.req.headers.get("authorization", "")
        if self.auth == "bearer":
            if not auth.startswith("Bearer ") or (self.api_key is not None and auth[7:] != self.api_key):
                return self._denied("AccessDeniedException", "Invalid API Key format: Must start with pre-defined "
                                                             "prefix" if not auth else "Authentication failed")
            return None
        if self.api_key is None:
            return None
        return self.verify_sigv4(call)

    def verify_sigv4(self, call: Call) -> Reply | None:
        req = call.req
        auth = req.headers.get("authorization", "")
        if not auth:
            return self._denied("MissingAuthenticationTokenException", "Missing Authentication Token")
        algorithm, _, rest = auth.partition(" ")
        fields = dict(p.strip().split("=", 1) for p in rest.split(",") if "=" in p)
        if algorithm != "AWS4-HMAC-SHA256" or set(fields) != {"Credential", "SignedHeaders", "Signature"}:
            return self._denied("IncompleteSignatureException", f"Authorization header requires 'Credential', "
                                f"'Signature' and 'SignedHeaders' with AWS4-HMAC-SHA256 (got {auth[:60]!r}).")
        akid, secret, *token = self.api_key.split(":")
        scope = fields["Credential"].split("/")
        amz_date = req.headers.get("x-amz-date", "")
        if len(scope) != 5 or scope[0] != akid:
            return self._denied("UnrecognizedClientException", "The security token included in the request is invalid.")
        if scope[2:] != [self.region, "bedrock", "aws4_request"]:
            return self._denied("InvalidSignatureException", f"Credential should be scoped to a valid region and "
                                f"service: {self.region}/bedrock (got {'/'.join(scope[2:4])}).")
        try:
            when = datetime.strptime(amz_date, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
        except ValueError:
            return self._denied("IncompleteSignatureException", "Missing or malformed X-Amz-Date.")
        if scope[1] != amz_date[:8] or abs((datetime.now(UTC) - when).total_seconds()) > 900:
            return self._denied("InvalidSignatureException", "Signature expired or the date does not match "
                                                             "the credential scope.")
        signed = fields["SignedHeaders"].split(";")
        if "host" not in signed or "x-amz-date" not in signed or any(h not in req.headers for h in signed):
            return self._denied("InvalidSignatureException", "SignedHeaders must include host and x-amz-date, "
                                                             "and every signed header must be sent.")
        if token and (req.headers.get("x-amz-security-token") != token[0] or "x-amz-security-token" not in signed):
            return self._denied("UnrecognizedClientException", "The security token included in the request is invalid.")
        query = urlencode(req.query)  # the signer sorts and encodes the parameters itself
        url = f"http://{req.headers['host']}{req.path}{'?' + query if query else ''}"
        request = AWSRequest(method=req.method, url=url, data=req.raw, headers={h: req.headers[h] for h in signed})
        request.context["timestamp"] = amz_date
        signer = SigV4Auth(Credentials(akid, secret, token[0] if token else None), "bedrock", self.region)
        canonical = signer.canonical_request(request)
        expected = signer.signature(signer.string_to_sign(request, canonical), request)
        if signer.signed_headers(signer.headers_to_sign(request)) != fields["SignedHeaders"] \
                or expected != fields["Signature"]:
            return self._denied("InvalidSignatureException", "The request signature we calculated does not match "
                                "the signature you provided. Check your AWS Secret Access Key and signing method.")
        with self._lock:
            self.verified += 1
        return None

    # ------------------------------------------------------------ errors
    def error(self, status: int, message: str | None = None, *, variant: str | None = None,
              model: str | None = None) -> Reply:
        name, default = BEDROCK_ERRORS.get(status, ("InternalServerException" if status >= 500
                                                    else "ValidationException", f"HTTP {status}"))
        return Reply(status, {"message": message or default},
                     headers={"x-amzn-ErrorType": f"{variant or name}:{ERROR_URL}"})

    def _status_reply(self, call: Call, fault: Fault) -> Reply:
        reply = self.error(fault.status, fault.message, variant=fault.variant)
        reply.headers.update(fault.headers)
        return reply

    def malformed_body(self) -> bytes:
        return b'{"output": {"message": {"role": "assistant", "content": [{"text": "trunc'

    def malformed_frame(self) -> bytes:
        return event_frame({":event-type": "contentBlockDelta", ":content-type": "application/json",
                            ":message-type": "event"}, b'{"contentBlockIndex":0,"delta":{"text":"tru')

    def stream_error_frame(self, fault: Fault) -> bytes:
        return event_frame({":exception-type": fault.variant or "throttlingException",
                            ":content-type": "application/json", ":message-type": "exception"},
                           json.dumps({"message": fault.message or "Too many tokens, please wait before trying "
                                                                   "again."}).encode())

    # ------------------------------------------------------------ models
    def model_obj(self, entry: dict[str, Any]) -> dict[str, Any]:
        model_id = entry["id"]
        maker = model_id.split(".", 1)[0].capitalize()
        obj = {"modelArn": f"arn:aws:bedrock:{self.region}::foundation-model/{model_id}", "modelId": model_id,
               "modelName": model_id.split(".", 1)[-1].rsplit("-v", 1)[0].replace("-", " ").title(),
               "providerName": maker, "inputModalities": ["TEXT", "IMAGE"], "outputModalities": ["TEXT"],
               "responseStreamingSupported": True, "customizationsSupported": [],
               "inferenceTypesSupported": ["ON_DEMAND"], "modelLifecycle": {"status": "ACTIVE"}}
        obj.update({k: v for k, v in entry.items() if k != "id"})
        return obj

    def route_models(self, call: Call) -> Reply:
        return Reply(body={"modelSummaries": [self.model_obj(e) for e in self.model_entries()]})

    def profile_objs(self) -> list[dict[str, Any]]:
        out = []
        for entry in self.model_entries():
            model = self.model_obj(entry)
            if "INFERENCE_PROFILE" not in model["inferenceTypesSupported"]:
                continue
            profile_id = f"us.{model['modelId']}"
            out.append({"inferenceProfileId": profile_id, "inferenceProfileName": f"US {model['modelName']}",
                        "inferenceProfileArn": f"arn:aws:bedrock:{self.region}:123456789012:inference-profile/"
                                               f"{profile_id}",
                        "description": f"Routes requests to {model['modelName']} in us-east-1 and us-west-2.",
                        "status": "ACTIVE", "type": "SYSTEM_DEFINED",
                        "models": [{"modelArn": f"arn:aws:bedrock:{region}::foundation-model/{model['modelId']}"}
                                   for region in ("us-east-1", "us-west-2")]})
        return out

    def route_profiles(self, call: Call) -> Reply:
        query = call.req.query
        try:
            size = min(max(int(query.get("maxResults") or 1000), 1), self.max_page_size)
            start = int(query.get("nextToken") or 0)
        except ValueError:
            return self.error(400, "1 validation error detected: Value at 'maxResults' or 'nextToken' is invalid.")
        profiles = [p for p in self.profile_objs() if query.get("type") in (None, p["type"])]
        body: dict[str, Any] = {"inferenceProfileSummaries": profiles[start : start + size]}
        if start + size < len(profiles):
            body["nextToken"] = str(start + size)
        return Reply(body=body)

    # ------------------------------------------------------------ converse
    @staticmethod
    def _target(call: Call) -> tuple[str, str]:
        """(model id, operation) of ``/model/{id}/{operation}`` (the id URL-decoded)."""
        rest = call.req.path[len("/model/"):]
        model, _, operation = rest.rpartition("/")
        return unquote(model), operation

    def check_model(self, call: Call) -> Reply | None:
        if not self.strict_models:
            return None
        model, _ = self._target(call)
        known = {str(e["id"]) for e in self.model_entries()}
        return None if model in known else self.error(404, "The provided model identifier is invalid.")

    def invalid(self, body: dict[str, Any]) -> str | None:
        """What Converse would refuse in ``body`` (its words), or None."""
        for key in body:
            if key not in TOP_FIELDS:
                return f"Malformed input request: extraneous key [{key}] is not permitted, please reformat your input."
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            return "A conversation must start with a user message. Try again with a conversation that starts with a " \
                   "user message."
        uses_tools = False
        for i, message in enumerate(messages):
            if not isinstance(message, dict) or message.get("role") != ("user" if i % 2 == 0 else "assistant"):
                return "A conversation must alternate between user and assistant roles. Make sure the conversation " \
                       "alternates between user and assistant roles and try again."
            content = message.get("content")
            if not isinstance(content, list) or not content:
                return f"The content field in the Message object at messages.{i} is empty. Add a ContentBlock " \
                       "object to the content field and try again."
            for j, block in enumerate(content):
                if not isinstance(block, dict) or len(block) != 1 or next(iter(block)) not in BLOCK_MEMBERS:
                    return f"Malformed input request: messages.{i}.content.{j} must hold exactly one member."
                if "text" in block and not str(block["text"]).strip():
                    return f"The text field in the ContentBlock object at messages.{i}.content.{j} is blank. Add " \
                           "text to the text field, and try again."
                if "toolUse" in block or "toolResult" in block:
                    uses_tools = True
                if "toolUse" in block and not isinstance(block["toolUse"].get("input"), dict):
                    return f"messages.{i}.content.{j}.toolUse.input must be a JSON object."
                if "image" in block and block["image"].get("format") not in ("png", "jpeg", "gif", "webp"):
                    return f"messages.{i}.content.{j}.image.format is not a supported image format."
        for j, block in enumerate(body.get("system") or []):
            if not isinstance(block, dict) or not ({"text", "cachePoint", "guardContent"} & set(block)):
                return f"Malformed input request: system.{j} must be a text, cachePoint or guardContent block."
        if uses_tools and not (body.get("toolConfig") or {}).get("tools"):
            return "The toolConfig field must be defined when using toolUse and toolResult content blocks."
        for j, tool in enumerate((body.get("toolConfig") or {}).get("tools") or []):
            schema = ((tool.get("toolSpec") or {}).get("inputSchema") or {}).get("json") if "toolSpec" in tool else {}
            if "toolSpec" in tool and (not isinstance(schema, dict) or schema.get("type") != "object"):
                return (f"The value at toolConfig.tools.{j}.toolSpec.inputSchema.json.type must be one of the "
                        "following: object.")
        return None

    @staticmethod
    def invalid_tool_choice(body: dict[str, Any], model: str) -> str | None:
        choice = (body.get("toolConfig") or {}).get("toolChoice") or {}
        forced = next((k for k in ("any", "tool") if k in choice), None)
        if forced and not any(family in model for family in ("anthropic.", "mistral.mistral-large", "amazon.nova")):
            return (f"This model doesn't support the toolConfig.toolChoice.{forced} field. Remove "
                    f"toolConfig.toolChoice.{forced} and try again.")
        if forced == "tool" and choice["tool"].get("name") not in [
                (t.get("toolSpec") or {}).get("name") for t in body["toolConfig"].get("tools") or []]:
            return "The tool named in toolConfig.toolChoice.tool is not in toolConfig.tools."
        return None

    @staticmethod
    def invalid_cache_points(body: dict[str, Any], model: str) -> str | None:
        """Bedrock's prompt caching rules: ``cachePoint`` is ``{"type": "default", "ttl"?: "5m" |
        "1h"}``, never the first block of a list, at most 4 in a request, and only on models
        that cache (Claude from 3.5 Haiku / 3.7 Sonnet on, Amazon Nova)."""
        lists = [body.get("system") or [], *[m.get("content") or [] for m in body.get("messages") or []],
                 (body.get("toolConfig") or {}).get("tools") or []]
        points = 0
        for blocks in lists:
            for j, block in enumerate(blocks):
                if not isinstance(block, dict) or "cachePoint" not in block:
                    continue
                point = block["cachePoint"]
                if not isinstance(point, dict) or point.get("type") != "default" or \
                        set(point) - {"type", "ttl"} or point.get("ttl", "5m") not in ("5m", "1h"):
                    return "Malformed input request: cachePoint must be {type: default, ttl?: 5m|1h}."
                if j == 0:
                    return "A cache point cannot be the first block: it marks the end of a cached prefix."
                points += 1
        if points > 4:
            return f"A maximum of 4 cache points is allowed; found {points}."
        cached = ("amazon.nova-" in model or "anthropic.claude" in model) and not re.search(
            r"claude-(v2|instant|3-(haiku|sonnet|opus)|3-5-sonnet)", model)
        if points and not cached:
            return "You invoked an unsupported model or your request did not allow prompt caching. See the " \
                   "documentation for more information."
        return None

    def tool_call_for(self, call: Call) -> tuple[str, str, dict[str, Any]] | None:
        config = call.body.get("toolConfig") or {}
        tools = [t["toolSpec"] for t in config.get("tools") or [] if "toolSpec" in t]
        choice = config.get("toolChoice") or {}
        last = call.body["messages"][-1]
        answered = any("toolResult" in block for block in last.get("content") or [])
        # any: the configured call until it is answered, else the last tool (where a JSON tool goes)
        forced = (choice["tool"]["name"] if "tool" in choice else
                  tools[-1]["name"] if "any" in choice and (answered or not self.tool_call) else None)
        if forced is not None and not (self.tool_call and self.tool_call.get("name") == forced):
            spec = next(t for t in tools if t["name"] == forced)
            return self.new_id("tooluse_"), forced, example_of(spec["inputSchema"]["json"])
        if not self.tool_call or not tools:
            return None
        if answered:
            return None  # the tool was called and answered: now say something
        name = self.tool_call.get("name") or tools[0].get("name") or "tool"
        return (self.tool_call.get("id") or self.new_id("tooluse_"), name,
                dict(self.tool_call.get("arguments") or {}))

    @staticmethod
    def usage_obj(u: Usage) -> dict[str, Any]:
        return {"inputTokens": u.prompt_tokens, "outputTokens": u.completion_tokens,
                "totalTokens": u.prompt_tokens + u.cached_tokens + u.cache_creation_tokens + u.completion_tokens,
                "cacheReadInputTokens": u.cached_tokens, "cacheWriteInputTokens": u.cache_creation_tokens}

    def route_converse(self, call: Call) -> Reply:
        model, operation = self._target(call)
        if operation == "invoke":
            return self.invoke(call, model)
        if operation not in ("converse", "converse-stream"):
            return self.error(404, f"Unknown operation: POST {call.req.path}")
        if msg := self.invalid(call.body) or self.invalid_cache_points(call.body, model):
            return self.error(400, msg)
        if bad := self.check_model(call):
            return bad
        if self.context_limit is not None and len(json.dumps(call.body["messages"]).split()) > self.context_limit:
            return self.error(400, TOO_LONG)
        if msg := (self.invalid_guardrail(call.body, operation) or self.invalid_thinking(call.body, model)
                   or self.invalid_tool_choice(call.body, model)):
            return self.error(400, msg)
        blocked = self.guardrail_intervenes(call.body)
        tool = None if blocked else self.tool_call_for(call)
        text = GUARDRAIL_MESSAGE if blocked else "" if tool else self.reply_text(call)
        usage = self.usage_for(call, json.dumps(tool[2]) if tool else text)
        stop = "guardrail_intervened" if blocked else "tool_use" if tool else "end_turn"
        thinking = self._thinking(call.body) and not blocked
        if operation == "converse-stream":
            return self.stream(self._frames(call, text, tool, usage, stop, thinking=thinking))
        block = {"toolUse": {"toolUseId": tool[0], "name": tool[1], "input": tool[2]}} if tool else {"text": text}
        content = [{"reasoningContent": {"reasoningText": {"text": self.reasoning, "signature": REASONING_SIGNATURE}}},
                   block] if thinking else [block]
        result: dict[str, Any] = {"output": {"message": {"role": "assistant", "content": content}},
                                  "stopReason": stop, "metrics": {"latencyMs": 42}}
        if blocked and (call.body.get("guardrailConfig") or {}).get("trace") in ("enabled", "enabled_full"):
            result["trace"] = {"guardrail": {"inputAssessment": {call.body["guardrailConfig"]["guardrailIdentifier"]: {
                "contentPolicy": {"filters": [{"type": "MISCONDUCT", "confidence": "HIGH", "action": "BLOCKED"}]}}}}}
        if not call.fault("no_usage"):
            result["usage"] = self.usage_obj(usage)
        return Reply(body=result)

    @staticmethod
    def invalid_guardrail(body: dict[str, Any], operation: str) -> str | None:
        """``guardrailConfig``: ``guardrailIdentifier`` (an id or a guardrail ARN) and
        ``guardrailVersion`` (a number or ``DRAFT``), ``trace`` ``enabled|disabled|enabled_full``;
        ConverseStream's may add ``streamProcessingMode`` ``sync|async``."""
        config = body.get("guardrailConfig")
        if config is None:
            return None
        allowed = {"guardrailIdentifier", "guardrailVersion", "trace"} | (
            {"streamProcessingMode"} if operation == "converse-stream" else set())
        if not isinstance(config, dict) or set(config) - allowed:
            return f"Malformed input request: guardrailConfig takes only {', '.join(sorted(allowed))}."
        if not re.fullmatch(r"[a-z0-9]+|arn:aws(-[^:]+)?:bedrock:[a-z0-9-]{1,20}:[0-9]{12}:guardrail/[a-z0-9]+",
                            str(config.get("guardrailIdentifier", ""))):
            return "1 validation error detected: Value at 'guardrailConfig.guardrailIdentifier' failed to satisfy " \
                   "constraint: Member must satisfy regular expression pattern."
        if not re.fullmatch(r"[1-9][0-9]{0,7}|DRAFT", str(config.get("guardrailVersion", ""))):
            return "1 validation error detected: Value at 'guardrailConfig.guardrailVersion' failed to satisfy " \
                   "constraint: Member must satisfy regular expression pattern."
        if config.get("trace", "disabled") not in ("enabled", "disabled", "enabled_full"):
            return "Malformed input request: guardrailConfig.trace is not a valid enum value."
        return None

    def guardrail_intervenes(self, body: dict[str, Any]) -> bool:
        return bool(body.get("guardrailConfig") and self.guardrail_blocks
                    and self.guardrail_blocks in json.dumps(body.get("messages")))

    @staticmethod
    def _thinking(body: dict[str, Any]) -> bool:
        thinking = (body.get("additionalModelRequestFields") or {}).get("thinking")
        return isinstance(thinking, dict) and thinking.get("type") == "enabled"

    def invalid_thinking(self, body: dict[str, Any], model: str) -> str | None:
        """Claude's extended thinking through ``additionalModelRequestFields.thinking``: ``{"type":
        "enabled", "budget_tokens" >= 1024}`` below ``inferenceConfig.maxTokens``, no
        ``temperature`` but 1, no ``top_k``, Claude models only, and (as Anthropic requires) the last
        assistant turn that calls a tool starts with its ``reasoningContent`` block."""
        if not self._thinking(body):
            return None
        if "anthropic.claude" not in model:
            return "The model returned the following errors: extraneous key [thinking] is not permitted"
        budget = body["additionalModelRequestFields"]["thinking"].get("budget_tokens")
        if not isinstance(budget, int) or budget < 1024:
            return "The model returned the following errors: thinking.enabled.budget_tokens: Input should be " \
                   "greater than or equal to 1024"
        limit = (body.get("inferenceConfig") or {}).get("maxTokens")
        if limit is not None and budget >= limit:
            return "The model returned the following errors: `max_tokens` must be greater than " \
                   "`thinking.budget_tokens`."
        temperature = (body.get("inferenceConfig") or {}).get("temperature", 1)
        if temperature != 1 or "top_k" in body["additionalModelRequestFields"]:
            return "The model returned the following errors: temperature and top_k may not be set when thinking " \
                   "is enabled"
        assistants = [m for m in body.get("messages") or [] if m.get("role") == "assistant"]
        last = assistants[-1]["content"] if assistants else []
        if any("toolUse" in b for b in last):
            first = last[0].get("reasoningContent") if last else None
            text = (first or {}).get("reasoningText") if isinstance(first, dict) else None
            if not isinstance(text, dict) or text.get("signature") != REASONING_SIGNATURE:
                return "The model returned the following errors: messages.1.content.0.type: Expected `thinking` " \
                       "or `redacted_thinking`, but found `tool_use`. When `thinking` is enabled, a final " \
                       "`assistant` message must start with a thinking block (with its signature)."
        return None

    def invoke(self, call: Call, model: str) -> Reply:
        """InvokeModel for Titan text embeddings (``{"inputText", "dimensions"?, "normalize"?}``)
        and Cohere Embed (see :meth:`invoke_cohere`)."""
        if "cohere.embed-" in model:
            return self.invoke_cohere(call, model)
        if not model.startswith("amazon.titan-embed-text"):
            return self.error(400, "The fake invokes Titan text embeddings and Cohere Embed models only.")
        body = call.body
        for key in body:
            if key not in ("inputText", "dimensions", "normalize", "embeddingTypes"):
                return self.error(400, f"Malformed input request: extraneous key [{key}] is not permitted, "
                                       "please reformat your input and try again.")
        if not isinstance(body.get("inputText"), str) or not body["inputText"]:
            return self.error(400, "Malformed input request: #: required key [inputText] not found")
        dimensions = body.get("dimensions", 1024 if "v2" in model else 1536)
        if dimensions not in ((256, 512, 1024) if "v2" in model else (1536,)):
            return self.error(400, f"Malformed input request: #/dimensions: {dimensions} is not a valid enum value")
        tokens = (self.usage or {}).get("prompt_tokens") or max(1, len(body["inputText"].split()))
        return Reply(body={"embedding": embedding_vector(body["inputText"], dimensions),
                           "inputTextTokenCount": tokens}, headers=self.invoke_headers(call, tokens))

    def invoke_headers(self, call: Call, tokens: int) -> dict[str, str]:
        """InvokeModel's count headers (left out under the ``no_usage`` fault)."""
        if call.fault("no_usage"):
            return {}
        return {"X-Amzn-Bedrock-Input-Token-Count": str(tokens), "X-Amzn-Bedrock-Output-Token-Count": "0",
                "X-Amzn-Bedrock-Invocation-Latency": "42"}

    def invoke_cohere(self, call: Call, model: str) -> Reply:
        """Cohere Embed: ``{"texts", "input_type", "embedding_types"?, "truncate"?, "output_dimension"?
        (v4), "max_tokens"? (v4)}``, 1 to 96 texts, ``input_type`` required. With
        ``embedding_types`` the answer is ``{"embeddings": {"float": [[...]]}, "response_type":
        "embeddings_by_type"}``, else ``{"embeddings": [[...]], "response_type":
        "embeddings_floats"}``; vectors 1024 long (v4: ``output_dimension``, default 1536). The
        input tokens (the ``usage`` override's ``prompt_tokens``, else the words) are only in the
        ``X-Amzn-Bedrock-Input-Token-Count`` header, as Bedrock sends them."""
        body = call.body
        v4 = "embed-v4" in model
        known = {"texts", "input_type", "embedding_types", "truncate", "images"} | (
            {"output_dimension", "max_tokens", "inputs"} if v4 else set())
        for key in body:
            if key not in known:
                return self.error(400, f"Malformed input request: extraneous key [{key}] is not permitted, "
                                       "please reformat your input and try again.")
        texts = body.get("texts")
        if not isinstance(texts, list) or not texts or not all(isinstance(t, str) for t in texts):
            return self.error(400, "Malformed input request: #/texts: expected type: JSONArray of strings")
        if len(texts) > 96:
            return self.error(400, f"Malformed input request: #/texts: expected maximum item count: 96, found: "
                                   f"{len(texts)}")
        if body.get("input_type") not in ("search_document", "search_query", "classification", "clustering"):
            return self.error(400, "Malformed input request: #: required key [input_type] not found")
        types = body.get("embedding_types")
        if types is not None and (not isinstance(types, list) or not set(types) <= {
                "float", "int8", "uint8", "binary", "ubinary"}):
            return self.error(400, "Malformed input request: #/embedding_types: not a valid enum value")
        dim = body.get("output_dimension", 1536) if v4 else 1024
        if dim not in (256, 512, 1024, 1536):
            return self.error(400, f"Malformed input request: #/output_dimension: {dim} is not a valid enum value")
        vectors = [embedding_vector(t, dim) for t in texts]
        tokens = (self.usage or {}).get("prompt_tokens") or sum(max(1, len(t.split())) for t in texts)
        result: dict[str, Any] = {"id": self.new_id("emb-"), "texts": texts}
        if types:
            result.update(embeddings={t: vectors for t in types if t == "float"}, response_type="embeddings_by_type")
        else:
            result.update(embeddings=vectors, response_type="embeddings_floats")
        return Reply(body=result, headers=self.invoke_headers(call, tokens))

    def _frames(self, call: Call, text: str, tool: tuple[str, str, dict[str, Any]] | None, usage: Usage,
                stop: str, *, thinking: bool = False) -> Iterator[bytes]:
        yield event("messageStart", {"role": "assistant", "p": PADDING[:10]})
        index = 0
        if thinking:  # reasoning first, in pieces, then its signature
            for piece in self.text_chunks(call, self.reasoning):
                yield event("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"reasoningContent": {
                    "text": piece}}, "p": PADDING[:6]})
            yield event("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"reasoningContent": {
                "signature": REASONING_SIGNATURE}}, "p": PADDING[:2]})
            yield event("contentBlockStop", {"contentBlockIndex": 0, "p": PADDING[:20]})
            index = 1
        if tool:
            yield event("contentBlockStart", {"contentBlockIndex": index, "start": {
                "toolUse": {"toolUseId": tool[0], "name": tool[1]}}, "p": PADDING[:5]})
            args = json.dumps(tool[2])
            half = len(args) // 2
            for piece in (args[:half], args[half:]):
                yield event("contentBlockDelta", {"contentBlockIndex": index, "delta": {"toolUse": {"input": piece}},
                                                  "p": PADDING[:7]})
        else:
            for piece in self.text_chunks(call, text):  # a text block starts with its first delta
                yield event("contentBlockDelta", {"contentBlockIndex": index, "delta": {"text": piece},
                                                  "p": PADDING[:3]})
        yield event("contentBlockStop", {"contentBlockIndex": index, "p": PADDING[:20]})
        yield event("messageStop", {"stopReason": stop, "p": PADDING[:12]})
        if not call.fault("no_usage"):
            yield event("metadata", {"usage": self.usage_obj(usage), "metrics": {"latencyMs": 42}, "p": PADDING[:4]})
