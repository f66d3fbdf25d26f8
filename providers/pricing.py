"""Model prices and capabilities that providers do not report themselves.

Prices come from the ``genai-prices`` catalog (pydantic's maintained price list, bundled
with the package: no network at run time). Capabilities fall back to model-name patterns."""

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal

from genai_prices import data_snapshot

from providers.models import ModelMode, Provider, ProviderType
from providers.presets import provider_preset

# Our provider type -> genai-prices provider id. openai_compatible: its preset's (providers/presets.py).
# Azure is asked with the deployed model's name (providers/fetchers/azure.py) and priced as
# OpenAI prices it (Azure's global-deployment list prices are OpenAI's).
_GENAI_PROVIDER = {
    ProviderType.OPENAI: "openai",
    ProviderType.AZURE: "openai",
    ProviderType.ANTHROPIC: "anthropic",
    ProviderType.OPENROUTER: "openrouter",
    ProviderType.GEMINI: "google",  # the Gemini API's list prices (Vertex AI's are the same for Gemini models)
    ProviderType.BEDROCK: "aws",  # Bedrock's on-demand prices; an inference profile (us.…) finds its model's
}


@dataclass(frozen=True)
class Prices:
    """USD per million tokens."""

    input: Decimal | None
    output: Decimal | None
    cached_input: Decimal | None
    cache_write: Decimal | None = None


def _base(value) -> Decimal | None:
    if value is None:
        return None
    return Decimal(value.base) if hasattr(value, "base") else Decimal(value)  # tiered -> base tier


def catalog_prices(*, provider: Provider, model_id: str) -> Prices | None:
    """The genai-prices catalog's current price for a model of ``provider`` (an
    openai_compatible one through its preset), or None when it has none."""
    preset = provider_preset(provider)
    genai_id = preset.genai_id if preset is not None else _GENAI_PROVIDER.get(provider.provider_type)
    if genai_id is None:
        return None
    try:
        _, model = data_snapshot.get_snapshot().find_provider_model(model_id, None, genai_id, None)
        price = model.get_prices(datetime.now(UTC))
    except LookupError:
        return None
    prices = Prices(
        input=_base(getattr(price, "input_mtok", None)),
        output=_base(getattr(price, "output_mtok", None)),
        cached_input=_base(getattr(price, "cache_read_mtok", None)),
        cache_write=_base(getattr(price, "cache_write_mtok", None)),
    )
    if prices.input is None and prices.output is None:
        return None
    if prices.output is None:  # embeddings: input only
        prices = Prices(input=prices.input, output=Decimal(0), cached_input=prices.cached_input,
                        cache_write=prices.cache_write)
    return prices


@dataclass(frozen=True)
class KnownModel:
    """A model genai-prices lists for a provider."""

    model_id: str
    name: str
    context_window: int | None


def known_models(genai_id: str) -> list[KnownModel]:
    """The models genai-prices lists under provider ``genai_id`` (``google``, ``aws``…), those it
    marks deprecated left out."""
    for listed in data_snapshot.get_snapshot().providers:
        if listed.id == genai_id:
            return [KnownModel(m.id, m.name or "", m.context_window if isinstance(m.context_window, int) else None)
                    for m in listed.models if not m.deprecated]
    return []


_EMBEDDING = re.compile(
    r"(^|[-_/:.])(text-)?embed(ding)?s?([-_/:.]|\d|$)|bge-|e5-|gte-|minilm|nomic-embed|mxbai-embed|voyage-", re.I
)
_VISION = re.compile(
    r"gpt-4o|gpt-4\.1|gpt-4-turbo|gpt-5|o1(?!-mini)|o3|o4|claude-3|claude-(sonnet|opus|haiku)-4|"
    r"gemini|vision|llava|pixtral|qwen.*vl|-vl\b|llama-?3\.2-\d+b-vision|llama-?4|grok-.*vision|moondream|bakllava|gemma-?3",
    re.I,
)
_NO_TOOLS = re.compile(
    r"instruct-0914|davinci|babbage|gpt-3\.5-turbo-instruct|tts|whisper|dall-e|moderation|embed", re.I
)
_TOOLS = re.compile(
    r"gpt-|o1|o3|o4|claude|gemini|mistral|mixtral|llama-?3\.[1-3]|llama-?4|qwen|command-r|deepseek|grok|firefunction|hermes|granite",
    re.I,
)


def guess_mode(model_id: str) -> str:
    return ModelMode.EMBEDDING if _EMBEDDING.search(model_id) else ModelMode.CHAT


def guess_vision(model_id: str) -> bool:
    return bool(_VISION.search(model_id))


def guess_tools(model_id: str) -> bool:
    return bool(_TOOLS.search(model_id)) and not _NO_TOOLS.search(model_id)
