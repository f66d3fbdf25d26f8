"""The one adapter registry: provider type (a ProviderType value) -> the adapter module that
speaks its wire format. The engine (gateway/engine.py) looks every call up here.

Every adapter module has ``IN_PROCESS`` and ``DEFAULT_MAX_TOKENS`` (the output limit it sends
when a request sets none; None: no limit). An HTTP adapter (``IN_PROCESS = False``) offers
``build_chat``, ``parse_chat`` and ``stream_translator`` (given the chat request too, as ``request=``,
for an answer whose shape the request decides: Bedrock's JSON mode), ``build_embeddings``,
``parse_embeddings`` (given the embeddings request too, as ``request=``, for an upstream
that counts no tokens: Gemini; and the answer's lower-cased headers, as ``headers=``, for one
that counts them there: Cohere on Bedrock) and ``parse_error``; the engine sends the requests. One that answers
itself (``IN_PROCESS = True``: the mock) offers ``complete_chat``, ``stream_chat`` and
``embed``."""

from types import ModuleType

from providers.adapters import anthropic, azure, bedrock, gemini, mock, ollama, openai, openrouter

ADAPTERS: dict[str, ModuleType] = {
    "openai": openai,
    "openai_compatible": openai,
    "openrouter": openrouter,
    "azure": azure,
    "anthropic": anthropic,
    "ollama": ollama,
    "gemini": gemini,
    "bedrock": bedrock,
    "mock": mock,
}
