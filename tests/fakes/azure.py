"""Fake Azure OpenAI resource (wire-formats-2 §4), built on the fake OpenAI server.

`FakeAzure` serves the deployment-scoped API, ``POST /openai/deployments/{deployment}/chat/completions``
and ``…/embeddings`` with a required ``?api-version=`` (missing: 400 ``MissingApiVersionParameter``),
and the v1 API's ``GET /openai/v1/models`` (the deployed models), ``POST /openai/v1/responses``,
``/openai/v1/chat/completions`` and ``/openai/v1/embeddings`` (``model`` = deployment name,
api-version optional). Bodies, streams
and usage are OpenAI's, plus Azure's differences:

- a first stream chunk with ``"choices": []``, an empty id and model, only ``prompt_filter_results``;
- ``prompt_filter_results`` and per-choice ``content_filter_results`` in answers;
- the answer's ``model`` is the deployed model, not the deployment name;
- errors as ``{"error": {"code": "<code>", "message": …}}``; ``variant="content_filter"`` on a 400
  (or the ``content_policy`` fault) gives the content-filter refusal; the ``context_window`` fault
  OpenAI's ``context_length_exceeded``; an unknown deployment is a 404 ``DeploymentNotFound``.

Auth: ``api_key`` set → the ``api-key`` header must carry it; ``entra_token`` set → an
``Authorization: Bearer <token>`` header must; ``entra`` (a :class:`FakeEntra`) set → a bearer token
it issued and that is still valid; any of them is accepted when several are set.

`FakeEntra` is Microsoft Entra ID's token endpoint for the client-credentials grant,
``POST /{tenant}/oauth2/v2.0/token`` (form-encoded ``grant_type=client_credentials``, ``client_id``,
``client_secret``, ``scope``), answering ``{"token_type": "Bearer", "expires_in", "access_token"}``
or Entra's documented errors: an unknown tenant 400 ``invalid_request`` (AADSTS90002), an unknown
client 400 ``unauthorized_client`` (AADSTS700016), a wrong secret 401 ``invalid_client``
(AADSTS7000215), a wrong scope 400 ``invalid_scope`` (AADSTS1002012)."""

from __future__ import annotations

from typing import Any, ClassVar
from urllib.parse import parse_qsl

from .base import Call, FakeServer, Fault, IssuedTokens, Reply
from .openai import FakeOpenAI

SAFE = {"filtered": False, "severity": "safe"}
FILTER_RESULTS = {"hate": SAFE, "self_harm": SAFE, "sexual": SAFE, "violence": SAFE}
PROMPT_FILTER = [{"prompt_index": 0, "content_filter_results": {
    **FILTER_RESULTS, "jailbreak": {"filtered": False, "detected": False}}}]
CONTENT_FILTER_ERROR = {
    "message": "The response was filtered due to the prompt triggering Azure OpenAI's content management policy. "
               "Please modify your prompt and retry.",
    "type": None, "param": "prompt", "code": "content_filter", "status": 400,
    "innererror": {"code": "ResponsibleAIPolicyViolation", "content_filter_result": {
        **FILTER_RESULTS, "self_harm": {"filtered": True, "severity": "medium"},
        "jailbreak": {"filtered": False, "detected": False}}},
}
AZURE_ERRORS = {
    400: ("BadRequest", "Invalid request."),
    401: ("401", "Access denied due to invalid subscription key or wrong API endpoint. Make sure to provide a "
                 "valid key for an active subscription and use a correct regional API endpoint for your resource."),
    404: ("DeploymentNotFound", "The API deployment for this resource does not exist. If you created the "
                                "deployment within the last 5 minutes, please wait a moment and try again."),
    429: ("429", "Requests to the ChatCompletions_Create Operation under Azure OpenAI API version 2024-10-21 have "
                 "exceeded token rate limit of your current OpenAI S0 pricing tier. Please retry after 1 second."),
    500: ("InternalServerError", "The server had an error while processing your request. Sorry about that!"),
}


class FakeAzure(FakeOpenAI):
    """An Azure OpenAI resource; ``url`` is its endpoint (what a provider's base_url holds).
    ``deployments`` maps deployment name → deployed model (the answers' ``model``)."""

    protocol = "azure"
    base_path = ""
    routes: ClassVar[dict[tuple[str, str], str]] = {
        ("GET", "/openai/v1/models"): "models",
        ("POST", "/openai/v1/responses"): "responses",
        ("POST", "/openai/v1/chat/completions"): "chat",
        ("POST", "/openai/v1/embeddings"): "embeddings",
    }
    prefix_routes = (("POST", "/openai/deployments/", "deployment"),)

    def __init__(self, *, deployments: dict[str, str] | None = None, entra_token: str | None = None,
                 entra: FakeEntra | None = None, **kwargs: Any) -> None:
        self.deployments = dict(deployments if deployments is not None
                                else {"my-gpt4o": "gpt-4o", "my-embed": "text-embedding-3-small"})
        self.entra_token = entra_token
        self.entra = entra
        kwargs.setdefault("models", sorted(set(self.deployments.values())))
        super().__init__(**kwargs)

    # ------------------------------------------------------------ protocol hooks
    def response_headers(self) -> dict[str, str]:
        return {"apim-request-id": self.new_id("apim-"), "x-ms-region": "Sweden Central"}

    def check_auth(self, call: Call) -> Reply | None:
        if self.api_key is None and self.entra_token is None and self.entra is None:
            return None
        if self.api_key is not None and call.req.headers.get("api-key") == self.api_key:
            return None
        bearer = call.req.headers.get("authorization", "")
        if self.entra_token is not None and bearer == f"Bearer {self.entra_token}":
            return None
        if self.entra is not None and bearer.startswith("Bearer ") and self.entra.valid(bearer[7:]):
            return None
        return self.error(401)

    def error(self, status: int, message: str | None = None, *, variant: str | None = None,
              model: str | None = None) -> Reply:
        if variant == "content_filter":
            return Reply(400, {"error": {**CONTENT_FILTER_ERROR, **({"message": message} if message else {})}})
        code, default = AZURE_ERRORS.get(status, (str(status), f"HTTP {status}"))
        return Reply(status, {"error": {"code": variant or code, "message": message or default}})

    def content_policy_reply(self, call: Call, fault: Fault) -> Reply:
        """The content filter's 400 (``context_window`` answers as OpenAI does)."""
        return self.error(400, fault.message, variant="content_filter")

    def stream_preamble(self) -> list[bytes]:
        # Azure's first chunk: no choices, no id or model, only the prompt's filter results.
        return [self.sse({"choices": [], "created": 0, "id": "", "model": "", "object": "",
                          "prompt_filter_results": PROMPT_FILTER})]

    def envelope(self, call: Call, ident: str, obj: str) -> dict[str, Any]:
        env = super().envelope(call, ident, obj)
        env["model"] = self.deployments.get(str(call.body.get("model")), call.body.get("model"))
        return env

    def choice(self, finish: str | None, **fields: Any) -> dict[str, Any]:
        out = super().choice(finish, **fields)
        if "message" in fields or finish:
            out["content_filter_results"] = FILTER_RESULTS
        return out

    def check_model(self, call: Call) -> Reply | None:
        """With ``strict_models``, a v1 request's ``model`` must be a deployment."""
        if not self.strict_models or str(call.body.get("model")) in self.deployments:
            return None
        return self.error(404)

    # ------------------------------------------------------------ routes
    def route_deployment(self, call: Call) -> Reply:
        """``/openai/deployments/{deployment}/{chat/completions|embeddings}?api-version=…``."""
        if not call.req.query.get("api-version"):
            return Reply(400, {"error": {"code": "MissingApiVersionParameter",
                                         "message": "The api-version query parameter (?api-version=) is required "
                                                    "for all requests."}})
        rest = call.req.path[len("/openai/deployments/"):]
        deployment, _, operation = rest.partition("/")
        if deployment not in self.deployments:
            return self.error(404)
        call.body["model"] = deployment  # Azure ignores the body's model: the path chose it
        if operation == "chat/completions":
            reply = self.route_chat(call)
        elif operation == "embeddings":
            reply = self.route_embeddings(call)
            if isinstance(reply.body, dict) and reply.status == 200:
                reply.body["model"] = self.deployments[deployment]
            return reply
        else:
            return self.error(404, f"Unknown operation '{operation}'.")
        if reply.frames is None and reply.status == 200 and isinstance(reply.body, dict):
            reply.body["prompt_filter_results"] = PROMPT_FILTER
        return reply


ENTRA_SCOPE = "https://cognitiveservices.azure.com/.default"
TRACE = "\r\nTrace ID: 0f1c2d3e-0000-4000-8000-000000000000\r\nCorrelation ID: 5a6b7c8d-0000-4000-8000-000000000000"


class FakeEntra(IssuedTokens, FakeServer):
    """An Entra ID authority (what ``options.authority`` holds: ``url``) with one directory
    ``tenant_id`` and one app registration (``client_id``, ``client_secret``). Tokens live
    ``expires_in`` seconds; ``issued`` lists them in order, ``revoke()`` invalidates them all."""

    protocol = "entra"
    json_bodies = False
    retry_after_statuses: ClassVar[tuple[int, ...]] = ()
    prefix_routes = (("POST", "/", "token"),)

    def __init__(self, *, tenant_id: str = "contoso-tenant", client_id: str = "app-client-1",
                 client_secret: str = "entra-client-secret-0123", expires_in: int = 3600, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.tenant_id, self.client_id, self.client_secret = tenant_id, client_id, client_secret
        self.expires_in = expires_in
        self._tokens_init("eyJ0eXAiOiJKV1Qi.entra-", ".sig")

    def token_requests(self) -> list:
        return [r for r in self.requests if r.path.endswith("/oauth2/v2.0/token")]

    def error(self, status: int, message: str | None = None, *, variant: str | None = None,
              model: str | None = None) -> Reply:
        return Reply(status, {"error": variant or "temporarily_unavailable",
                              "error_description": (message or f"AADSTS50000: HTTP {status}.") + TRACE,
                              "error_codes": [50000]})

    def route_token(self, call: Call) -> Reply:
        tenant, _, rest = call.req.path.strip("/").partition("/")
        if rest != "oauth2/v2.0/token":
            return self.error(404, "AADSTS900561: The endpoint only accepts POST requests.", variant="invalid_request")
        form = dict(parse_qsl(call.req.raw.decode(), keep_blank_values=True))
        if tenant != self.tenant_id:
            return self.error(400, f"AADSTS90002: Tenant '{tenant}' not found. Check to make sure you have the "
                                   "correct tenant ID and are signing into the correct cloud.",
                              variant="invalid_request")
        if form.get("grant_type") != "client_credentials":
            return self.error(400, "AADSTS70003: The app requested an unsupported grant type.",
                              variant="unsupported_grant_type")
        if form.get("client_id") != self.client_id:
            return self.error(400, f"AADSTS700016: Application with identifier '{form.get('client_id')}' was not "
                                   f"found in the directory '{tenant}'.", variant="unauthorized_client")
        if form.get("client_secret") != self.client_secret:
            return self.error(401, "AADSTS7000215: Invalid client secret provided. Ensure the secret being sent in "
                                   "the request is the client secret value, not the client secret ID, for a secret "
                                   f"added to app '{self.client_id}'.", variant="invalid_client")
        if form.get("scope") != ENTRA_SCOPE:
            return self.error(400, f"AADSTS1002012: The provided value for scope {form.get('scope')} is not valid.",
                              variant="invalid_scope")
        token = self.issue()
        return Reply(body={"token_type": "Bearer", "expires_in": self.expires_in, "ext_expires_in": self.expires_in,
                           "access_token": token})
