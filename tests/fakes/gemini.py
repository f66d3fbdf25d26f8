"""Fake Google Gemini server: the Generative Language API v1beta and Vertex AI's publisher paths.

Serves ``POST /v1beta/models/{model}:generateContent`` and ``:streamGenerateContent?alt=sse``
(``data: <GenerateContentResponse>`` events, no event names, no ``[DONE]``; the last event
carries ``finishReason`` and the complete ``usageMetadata``, earlier ones only the prompt's
count), the paged catalog ``GET /v1beta/models`` (``pageSize`` default 50, max ``max_page_size`` = 1000;
``pageToken``/``nextPageToken``) and ``GET /v1beta/models/{id}``. Vertex AI's
``POST /v1/projects/{p}/locations/{l}/publishers/google/models/{model}:generateContent`` (and
the stream) answer the same. ``POST /v1beta/models/{model}:batchEmbedContents`` (the Gemini API
only) answers ``{"embeddings": [{"values": [...]}]}``, one per request, with no token count; Vertex AI's
``POST …/publishers/google/models/{model}:predict`` answers ``{"predictions": [{"embeddings": {"values",
"statistics": {"token_count"}}}]}``, one per instance (see ``route_predict``).
The Gemini API wants ``x-goog-api-key`` (or ``?key=``): none is a
403 ``PERMISSION_DENIED``, a wrong one a **400** ``INVALID_ARGUMENT`` with reason
``API_KEY_INVALID``; Vertex wants ``Authorization: Bearer`` (401 ``UNAUTHENTICATED``). Errors are
``{"error": {"code", "message", "status", "details"?}}``; a 429 ``RESOURCE_EXHAUSTED`` carries a
``google.rpc.RetryInfo`` detail (``retryDelay``, the fault's ``retry_after`` seconds, default 1)
and no ``retry-after`` header unless the fault's ``headers`` add one.

The ``context_window`` fault answers 400 ``INVALID_ARGUMENT`` "The input token count (…) exceeds
the maximum number of tokens allowed (…)"; ``content_policy`` a 200 answer whose prompt was
blocked (``promptFeedback.blockReason``) or, with ``variant="finish"``, whose only candidate
stopped for ``SAFETY`` with no content.

Requests are checked as the real API does: unknown top-level fields, an empty ``contents``, a
role other than user/model, a part with no data field or an object-less ``functionCall.args`` /
``functionResponse.response`` are 400 ``INVALID_ARGUMENT``. With ``tool_call`` configured and
``tools`` offered, the answer is a ``functionCall`` part (with a ``thoughtSignature``) unless
the last turn already answers one with ``functionResponse`` parts.

Usage mapping: ``Usage.prompt_tokens`` → ``promptTokenCount`` (cached ones included),
``cached_tokens`` → ``cachedContentTokenCount``, ``completion_tokens`` →
``candidatesTokenCount``, ``reasoning_tokens`` → ``thoughtsTokenCount`` (not part of the
candidates' count; ``totalTokenCount`` is the sum of the three).

`FakeGoogleOAuth` is Google's OAuth 2.0 token endpoint for service accounts, ``POST /token``
(form-encoded ``grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer&assertion=<JWT>``): the JWT
must be RS256, signed by the private key of an account it knows (``service_account()`` makes one:
a key pair generated in the test and the account's JSON key), with ``iss`` that account, ``scope``
cloud-platform, ``aud`` its token URL and at most an hour between ``iat`` and ``exp``; it answers
``{"access_token": "ya29.…", "expires_in", "token_type": "Bearer"}`` or ``{"error": "invalid_grant",
"error_description": "Invalid JWT Signature."}`` (400) and the like. A :class:`FakeGemini` with
``google_oauth`` set takes on Vertex paths only the bearer tokens it issued and that are valid.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any, ClassVar
from urllib.parse import parse_qsl

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from .base import _DEFAULT, Call, FakeServer, Fault, IssuedTokens, Reply, Usage, embedding_vector

SIGNATURE = "CiQBfakeThoughtSignature+/=="
TOP_FIELDS = frozenset({"contents", "systemInstruction", "tools", "toolConfig", "generationConfig",
                        "safetySettings", "cachedContent", "labels"})
PART_DATA = ("text", "inlineData", "fileData", "functionCall", "functionResponse", "executableCode",
             "codeExecutionResult")
CHAT_METHODS = ["generateContent", "countTokens", "createCachedContent", "batchGenerateContent"]
EMBED_METHODS = ["embedContent", "countTextTokens", "countTokens", "asyncBatchEmbedContent"]

# status -> (google.rpc status, default message)
GEMINI_ERRORS: dict[int, tuple[str, str]] = {
    400: ("INVALID_ARGUMENT", "Request contains an invalid argument."),
    401: ("UNAUTHENTICATED", "Request had invalid authentication credentials."),
    403: ("PERMISSION_DENIED", "Method doesn't allow unregistered callers (callers without established "
                               "identity). Please use API Key or other form of API consumer identity to call "
                               "this API."),
    404: ("NOT_FOUND", "models/{model} is not found for API version v1beta, or is not supported for "
                       "generateContent."),
    429: ("RESOURCE_EXHAUSTED", "You exceeded your current quota, please check your plan and billing details."),
    500: ("INTERNAL", "An internal error has occurred."),
    503: ("UNAVAILABLE", "The model is overloaded. Please try again later."),
    504: ("DEADLINE_EXCEEDED", "Deadline expired before operation could complete."),
}


class FakeGemini(FakeServer):
    """Gemini API + Vertex AI paths. ``base_url`` is ``…/v1beta`` (the Gemini API's root);
    ``vertex_base_url`` the Vertex publisher root for project ``fake-project`` in ``us-central1``."""

    protocol = "gemini"
    base_path = "/v1beta"
    default_models: ClassVar[list[str]] = ["gemini-2.5-flash", "gemini-2.5-pro", "gemini-embedding-001"]
    model_prefix = "gemini-fake"
    max_page_size = 1000  # the documented cap of models.list's pageSize (lower it to test paging)
    retry_after_statuses: ClassVar[tuple[int, ...]] = ()  # Google says when in the body (RetryInfo)
    routes: ClassVar[dict[tuple[str, str], str]] = {("GET", "/v1beta/models"): "models"}
    prefix_routes = (
        ("POST", "/v1beta/models/", "generate"),
        ("POST", "/v1beta/tunedModels/", "generate"),
        ("POST", "/v1/projects/", "generate"),
        ("POST", "/v1beta1/projects/", "generate"),
        ("GET", "/v1beta/models/", "model"),
    )

    @property
    def vertex_base_url(self) -> str:
        return f"{self.url}/v1/projects/fake-project/locations/us-central1/publishers/google"

    def response_headers(self) -> dict[str, str]:
        return {"x-goog-request-id": self.new_id("")}  # not a documented name; harmless

    google_oauth: FakeGoogleOAuth | None = None  # set: Vertex takes only the tokens it issued

    def check_auth(self, call: Call) -> Reply | None:
        req = call.req
        if "/projects/" in req.path:
            auth = req.headers.get("authorization", "")
            if not auth.startswith("Bearer ") or (self.api_key is not None and auth[7:] != self.api_key):
                return self.error(401)
            if self.google_oauth is not None and not self.google_oauth.valid(auth[7:]):
                return self.error(401)
            return None
        key = req.headers.get("x-goog-api-key") or req.query.get("key")
        if not key:
            return self.error(403)
        if self.api_key is not None and key != self.api_key:
            reply = self.error(400, "API key not valid. Please pass a valid API key.")
            reply.body["error"]["details"] = [{
                "@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "API_KEY_INVALID",
                "domain": "googleapis.com", "metadata": {"service": "generativelanguage.googleapis.com"}}]
            return reply
        return None

    def error(self, status: int, message: str | None = None, *, variant: str | None = None,
              model: str | None = None) -> Reply:
        name, default = GEMINI_ERRORS.get(status, ("INTERNAL" if status >= 500 else "INVALID_ARGUMENT",
                                                   f"HTTP {status}"))
        body = {"error": {"code": status, "message": message or default.format(model=model or "unknown"),
                          "status": variant or name}}
        return Reply(status, body)

    def _status_reply(self, call: Call, fault: Fault) -> Reply:
        reply = self.error(fault.status, fault.message, variant=fault.variant, model=self._model(call))
        if fault.status == 429:
            delay = 1 if fault.retry_after is _DEFAULT or fault.retry_after is None else fault.retry_after
            reply.body["error"]["details"] = [
                {"@type": "type.googleapis.com/google.rpc.QuotaFailure",
                 "violations": [{"quotaMetric": "generativelanguage.googleapis.com/generate_content_requests",
                                 "quotaId": "GenerateRequestsPerMinutePerProjectPerModel"}]},
                {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": f"{delay}s"},
            ]
        reply.headers.update(fault.headers)
        return reply

    def model_not_found(self, model: str) -> Reply:
        return self.error(404, model=model)

    def context_window_reply(self, call: Call, fault: Fault) -> Reply:
        return self.error(400, fault.message or "The input token count (3475108) exceeds the maximum number of "
                                                "tokens allowed (1048576).")

    def content_policy_reply(self, call: Call, fault: Fault) -> Reply:
        """A 200 answer: the prompt blocked (``promptFeedback.blockReason``, no candidates), or with
        ``variant="finish"`` a candidate stopped for ``SAFETY`` with no content (``variant`` of
        another block reason names it). Streamed as one event."""
        usage = {"promptTokenCount": 8, "totalTokenCount": 8}
        head = {"modelVersion": self._model(call), "responseId": self.new_id("resp")}
        ratings = [{"category": "HARM_CATEGORY_DANGEROUS_CONTENT", "probability": "HIGH", "blocked": True}]
        if fault.variant == "finish":
            obj = {"candidates": [{"finishReason": "SAFETY", "index": 0, "safetyRatings": ratings}],
                   "usageMetadata": usage, **head}
        else:
            obj = {"promptFeedback": {"blockReason": fault.variant or "SAFETY", "safetyRatings": ratings},
                   "usageMetadata": usage, **head}
        if call.req.path.endswith(":streamGenerateContent"):
            return self.stream(iter([self.event(obj)]))
        return Reply(body=obj)

    def malformed_body(self) -> bytes:
        return b'{"candidates": [{"content": {"role": "model", "parts": [{"text": "trunc'

    def malformed_frame(self) -> bytes:
        return b'data: {"candidates": [{"content": {"parts": [{"text": "tru\n\n'

    def stream_error_frame(self, fault: Fault) -> bytes:
        return self.event({"error": {"code": 503, "message": fault.message or "The model is overloaded.",
                                     "status": fault.variant or "UNAVAILABLE"}})

    @staticmethod
    def event(obj: dict[str, Any]) -> bytes:
        return b"data: " + json.dumps(obj, separators=(",", ":")).encode() + b"\r\n\r\n"

    @staticmethod
    def usage_obj(u: Usage) -> dict[str, Any]:
        out = {"promptTokenCount": u.prompt_tokens, "candidatesTokenCount": u.completion_tokens,
               "totalTokenCount": u.prompt_tokens + u.completion_tokens + u.reasoning_tokens,
               "promptTokensDetails": [{"modality": "TEXT", "tokenCount": u.prompt_tokens}]}
        if u.cached_tokens:
            out["cachedContentTokenCount"] = u.cached_tokens
        if u.reasoning_tokens:
            out["thoughtsTokenCount"] = u.reasoning_tokens
        return out

    # ------------------------------------------------------------ models
    def model_obj(self, entry: dict[str, Any]) -> dict[str, Any]:
        model_id = entry["id"]
        embed = "embedding" in model_id
        obj = {"name": f"models/{model_id}", "baseModelId": model_id, "version": "001",
               "displayName": model_id.replace("-", " ").title(), "description": "A fake Gemini model.",
               "inputTokenLimit": 2048 if embed else 1_048_576, "outputTokenLimit": 1 if embed else 65_536,
               "supportedGenerationMethods": EMBED_METHODS if embed else CHAT_METHODS}
        if not embed:
            obj.update({"temperature": 1, "topP": 0.95, "topK": 64, "maxTemperature": 2, "thinking": True})
        obj.update({k: v for k, v in entry.items() if k != "id"})
        return obj

    def route_models(self, call: Call) -> Reply:
        query = call.req.query
        try:
            size = int(query.get("pageSize") or 50)
        except ValueError:
            return self.error(400, "Invalid value at 'page_size' (TYPE_INT32)")
        size = min(max(size, 1), self.max_page_size)
        try:
            start = int(query.get("pageToken") or 0)
        except ValueError:
            return self.error(400, "Invalid page token.")
        models = [self.model_obj(e) for e in self.model_entries()]
        body: dict[str, Any] = {"models": models[start : start + size]}
        if start + size < len(models):
            body["nextPageToken"] = str(start + size)
        return Reply(body=body)

    def route_model(self, call: Call) -> Reply:
        wanted = call.req.path[len("/v1beta/models/"):]
        for entry in self.model_entries():
            if entry["id"] == wanted:
                return Reply(body=self.model_obj(entry))
        return self.error(404, model=wanted)

    # ------------------------------------------------------------ generateContent
    @staticmethod
    def _model(call: Call) -> str:
        last = call.req.path.rsplit("/models/", 1)[-1]
        return last.split(":", 1)[0] or "unknown"

    def check_model(self, call: Call) -> Reply | None:
        if not self.strict_models:
            return None
        known = {str(e["id"]) for e in self.model_entries()}
        model = self._model(call)
        return None if model in known else self.model_not_found(model)

    def invalid(self, body: dict[str, Any]) -> str | None:
        """What the real API would refuse in ``body`` (its words), or None."""
        for key in body:
            if key not in TOP_FIELDS:
                return f'Invalid JSON payload received. Unknown name "{key}": Cannot find field.'
        contents = body.get("contents")
        if not isinstance(contents, list) or not contents:
            return "* GenerateContentRequest.contents: contents is not specified"
        blocks = [(f"contents[{i}]", c) for i, c in enumerate(contents)]
        if "systemInstruction" in body:
            blocks.append(("system_instruction", body["systemInstruction"]))
        for where, content in blocks:
            if not isinstance(content, dict):
                return f"Invalid value at '{where}': not an object"
            if where != "system_instruction" and content.get("role") not in ("user", "model"):
                return f"Please use a valid role: user, model. (got {content.get('role')!r} at {where})"
            parts = content.get("parts")
            if not isinstance(parts, list) or not parts:
                return f"* GenerateContentRequest.{where}.parts: contents.parts must not be empty."
            for j, part in enumerate(parts):
                if not isinstance(part, dict) or sum(k in part for k in PART_DATA) != 1:
                    return f"* GenerateContentRequest.{where}.parts[{j}].data: required oneof field 'data' must " \
                           "have one initialized field"
                if "functionCall" in part and not isinstance(part["functionCall"].get("args", {}), dict):
                    return f"Invalid value at '{where}.parts[{j}].function_call.args' (type.googleapis.com/" \
                           "google.protobuf.Struct)"
                if "functionResponse" in part and not isinstance(part["functionResponse"].get("response"), dict):
                    return f"Invalid value at '{where}.parts[{j}].function_response.response' " \
                           "(type.googleapis.com/google.protobuf.Struct)"
                if "inlineData" in part and not (isinstance(part["inlineData"], dict)
                                                 and part["inlineData"].get("mimeType")
                                                 and isinstance(part["inlineData"].get("data"), str)):
                    return f"* GenerateContentRequest.{where}.parts[{j}].inline_data: mime_type and data are required"
        for tool in body.get("tools") or []:
            for decl in (tool or {}).get("functionDeclarations") or []:
                if not isinstance(decl, dict) or not decl.get("name"):
                    return "* GenerateContentRequest.tools[0].function_declarations[0].name: Name cannot be empty."
        return None

    def tool_call_for(self, call: Call) -> tuple[str, str, dict[str, Any]] | None:
        body = call.body
        if not self.tool_call or not body.get("tools"):
            return None
        last = body["contents"][-1]
        if any("functionResponse" in p for p in last.get("parts") or []):
            return None  # the tool was called and answered: now say something
        decls = (body["tools"][0] or {}).get("functionDeclarations") or [{}]
        name = self.tool_call.get("name") or decls[0].get("name") or "tool"
        return self.tool_call.get("id") or "", name, dict(self.tool_call.get("arguments") or {})

    def route_generate(self, call: Call) -> Reply:
        path = call.req.path
        method = path.rsplit(":", 1)[-1] if ":" in path else ""
        if method == "batchEmbedContents" and "/projects/" not in path:
            return self.route_embed(call)
        if method == "predict" and "/projects/" in path:
            return self.route_predict(call)
        if method not in ("generateContent", "streamGenerateContent"):
            return self.error(404, f"Unknown request URL: POST {path}")
        if msg := self.invalid(call.body):
            return self.error(400, msg)
        if bad := self.check_model(call):
            return bad
        tool = self.tool_call_for(call)
        text = "" if tool else self.reply_text(call)
        usage = self.usage_for(call, json.dumps(tool[2]) if tool else text)
        head = {"modelVersion": self._model(call), "responseId": self.new_id("resp")}
        if method == "streamGenerateContent":
            if call.req.query.get("alt") != "sse":
                return self.error(400, "The fake streams only with alt=sse.")
            return self.stream(self._frames(call, head, text, tool, usage))
        part = self._call_part(tool) if tool else {"text": text}
        result: dict[str, Any] = {"candidates": [{"content": {"role": "model", "parts": [part]},
                                                  "finishReason": "STOP", "index": 0}], **head}
        if not call.fault("no_usage"):
            result["usageMetadata"] = self.usage_obj(usage)
        return Reply(body=result)

    def route_embed(self, call: Call) -> Reply:
        """``batchEmbedContents``: every request names the path's model and has text parts; one
        ``{"values": [...]}`` per request (``outputDimensionality`` long, else ``embedding_dim``);
        no token count (the Gemini API reports none for embeddings)."""
        if bad := self.check_model(call):
            return bad
        model = f"models/{self._model(call)}"
        requests = call.body.get("requests")
        if set(call.body) != {"requests"} or not isinstance(requests, list) or not requests:
            return self.error(400, "* BatchEmbedContentsRequest.requests: requests is not specified")
        embeddings = []
        for i, request in enumerate(requests):
            if not isinstance(request, dict) or request.get("model") != model:
                return self.error(400, f"Model in request {i} does not match the model of the batch ({model}).")
            parts = (request.get("content") or {}).get("parts") if isinstance(request.get("content"), dict) else None
            if not isinstance(parts, list) or not parts or not all(isinstance(p, dict) and "text" in p for p in parts):
                return self.error(400, f"* BatchEmbedContentsRequest.requests[{i}].content.parts: must not be empty.")
            dim = request.get("outputDimensionality") or self.embedding_dim
            text = "".join(p["text"] for p in parts)
            embeddings.append({"values": embedding_vector(text, dim)})
        return Reply(body={"embeddings": embeddings})

    def route_predict(self, call: Call) -> Reply:
        """Vertex AI's ``:predict`` for text embedding models: ``{"instances": [{"content",
        "task_type"?, "title"?}…], "parameters": {"outputDimensionality"?, "autoTruncate"?}?}``, at
        most 250 instances (one for ``gemini-embedding-*``); one ``{"embeddings": {"values",
        "statistics": {"token_count", "truncated"}}}`` per instance, its token count the text's
        words (``usage`` ``prompt_tokens`` overrides the first). The ``no_usage`` fault leaves the
        statistics out."""
        if bad := self.check_model(call):
            return bad
        body = call.body
        model = self._model(call)
        instances = body.get("instances")
        if set(body) - {"instances", "parameters"} or not isinstance(instances, list) or not instances:
            return self.error(400, "Invalid JSON payload: 'instances' must be a non-empty list.")
        limit = 1 if model.startswith("gemini-embedding") else 250
        if len(instances) > limit:
            return self.error(400, f"{len(instances)} instances were sent, but the model {model} takes at most "
                                   f"{limit} per request.")
        parameters = body.get("parameters") or {}
        if not isinstance(parameters, dict) or set(parameters) - {"outputDimensionality", "autoTruncate"}:
            return self.error(400, "Invalid parameters: only outputDimensionality and autoTruncate are known.")
        dim = parameters.get("outputDimensionality") or self.embedding_dim
        predictions = []
        for i, instance in enumerate(instances):
            if not isinstance(instance, dict) or not isinstance(instance.get("content"), str) \
                    or set(instance) - {"content", "task_type", "title"}:
                return self.error(400, f"Invalid instance {i}: a 'content' string is required.")
            text = instance["content"]
            count = max(1, len(text.split()))
            if i == 0 and self.usage and "prompt_tokens" in self.usage:
                count = int(self.usage["prompt_tokens"])
            embedding: dict[str, Any] = {"values": embedding_vector(text, dim)}
            if not call.fault("no_usage"):
                embedding["statistics"] = {"token_count": count, "truncated": False}
            predictions.append({"embeddings": embedding})
        return Reply(body={"predictions": predictions, "metadata": {"billableCharacterCount": sum(
            len(str(i["content"])) for i in instances)}})

    @staticmethod
    def _call_part(tool: tuple[str, str, dict[str, Any]]) -> dict[str, Any]:
        function: dict[str, Any] = {"name": tool[1], "args": tool[2]}
        if tool[0]:
            function["id"] = tool[0]
        return {"functionCall": function, "thoughtSignature": SIGNATURE}

    def _frames(self, call: Call, head: dict[str, Any], text: str,
                tool: tuple[str, str, dict[str, Any]] | None, usage: Usage) -> Iterator[bytes]:
        with_usage = not call.fault("no_usage")
        pieces = [self._call_part(tool)] if tool else [{"text": p} for p in self.text_chunks(call, text)]
        pieces = pieces or [{"text": ""}]
        for i, part in enumerate(pieces):
            event: dict[str, Any] = {"candidates": [{"content": {"role": "model", "parts": [part]}, "index": 0}],
                                     **head}
            last = i == len(pieces) - 1
            if last:
                event["candidates"][0]["finishReason"] = "STOP"
            if with_usage:
                event["usageMetadata"] = (self.usage_obj(usage) if last else
                                          {"promptTokenCount": usage.prompt_tokens,
                                           "totalTokenCount": usage.prompt_tokens})
            yield self.event(event)


GOOGLE_SCOPE = "https://www.googleapis.com/auth/cloud-platform"
JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"


class FakeGoogleOAuth(IssuedTokens, FakeServer):
    """Google's token endpoint (``token_url``) for the service accounts made by
    :meth:`service_account`. Tokens live ``expires_in`` seconds; ``issued`` lists them,
    ``assertions`` the JWT claims it accepted, ``revoke()`` invalidates every token."""

    protocol = "google-oauth"
    json_bodies = False
    retry_after_statuses: ClassVar[tuple[int, ...]] = ()
    routes: ClassVar[dict[tuple[str, str], str]] = {("POST", "/token"): "token"}

    def __init__(self, *, expires_in: int = 3599, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.expires_in = expires_in
        self.accounts: dict[str, rsa.RSAPublicKey] = {}
        self.assertions: list[dict[str, Any]] = []
        self._tokens_init("ya29.fake-")

    @property
    def token_url(self) -> str:
        return f"{self.url}/token"

    def service_account(self, email: str = "tollgate@fake-project.iam.gserviceaccount.com") -> dict[str, str]:
        """A new account this endpoint trusts: its JSON key, as the Cloud console downloads it."""
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.accounts[email] = key.public_key()
        pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption()).decode()
        return {"type": "service_account", "project_id": "fake-project", "private_key_id": "0123abcd",
                "private_key": pem, "client_email": email, "client_id": "1234567890",
                "auth_uri": "https://accounts.google.com/o/oauth2/auth", "token_uri": self.token_url,
                "universe_domain": "googleapis.com"}

    def error(self, status: int, message: str | None = None, *, variant: str | None = None,
              model: str | None = None) -> Reply:
        return Reply(status, {"error": variant or "internal_failure", "error_description": message or f"HTTP {status}"})

    def route_token(self, call: Call) -> Reply:
        form = dict(parse_qsl(call.req.raw.decode(), keep_blank_values=True))
        if form.get("grant_type") != JWT_BEARER:
            return self.error(400, "Invalid grant_type: " + str(form.get("grant_type")),
                              variant="unsupported_grant_type")
        assertion = form.get("assertion", "")
        try:
            unverified = jwt.decode(assertion, options={"verify_signature": False})
            header = jwt.get_unverified_header(assertion)
        except jwt.PyJWTError:
            return self.error(400, "Invalid JWT: Token must be a short-lived token and in a reasonable timeframe.",
                              variant="invalid_grant")
        public = self.accounts.get(str(unverified.get("iss")))
        if public is None:
            return self.error(400, "Invalid grant: account not found", variant="invalid_grant")
        try:
            claims = jwt.decode(assertion, public, algorithms=["RS256"], audience=self.token_url)
        except jwt.InvalidSignatureError:
            return self.error(400, "Invalid JWT Signature.", variant="invalid_grant")
        except jwt.PyJWTError as exc:
            return self.error(400, f"Invalid JWT: {exc}", variant="invalid_grant")
        if header.get("alg") != "RS256" or claims.get("scope") != GOOGLE_SCOPE \
                or not 0 < claims["exp"] - claims["iat"] <= 3600:
            return self.error(400, "Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable "
                                   "timeframe. Check your iat and exp values in the JWT claim.",
                              variant="invalid_grant")
        token = self.issue(then=lambda: self.assertions.append(claims))
        return Reply(body={"access_token": token, "expires_in": self.expires_in, "token_type": "Bearer"})
