"""The catalog of an Azure OpenAI resource: its deployments, as ``options.deployments`` names
them (``{deployment: model}``). Azure's data plane documents no listing of deployments (the v1
API's ``/openai/v1/models`` lists the models a resource may deploy, not what is deployed; the
deployments listing is the management API's, with another credential), so nothing is fetched:
each deployment is a model whose id is the deployment name and whose prices and capabilities
are the underlying model's (OpenAI's list prices, from genai-prices)."""

from collections.abc import Callable
from dataclasses import replace
from typing import Any

from providers.catalog import CatalogEntry, entry_from_name
from providers.models import Provider
from providers.options import azure_deployments


def fetch_catalog(provider: Provider, get: Callable[[str], Any]) -> list[CatalogEntry]:
    """One entry per deployment; ``get`` is never called."""
    return [
        replace(entry_from_name(provider, model), model_id=name, display_name=f"{name} ({model})")
        for name, model in azure_deployments(provider.options).items()
    ]
