"""The catalog of an Azure OpenAI resource: its deployments, as ``options.deployments`` names
them (``{deployment: model}``). Azure's data plane documents no listing of deployments (the v1
API's ``/openai/v1/models`` lists the models a resource may deploy, not what is deployed; the
deployments listing is the management API's, with another credential), so the catalog is the
map: each deployment is a model whose id is the deployment name and whose prices and
capabilities are the underlying model's (OpenAI's list prices, from genai-prices).

The sync (and a connection test) still asks ``GET {resource}/openai/v1/models`` once, so that a
wrong key or endpoint shows as an error rather than as a catalog that cannot be called; a 404
(a resource or front without the v1 API) is not one."""

from collections.abc import Callable
from dataclasses import replace
from typing import Any

from providers.catalog import CatalogEntry, entry_from_name
from providers.fetchers.base import UpstreamError
from providers.models import Provider
from providers.options import azure_deployments


def fetch_catalog(provider: Provider, get: Callable[[str], Any]) -> list[CatalogEntry]:
    """One entry per deployment, after checking that the resource takes the credential."""
    try:
        get(f"{provider.base_url}/openai/v1/models")
    except UpstreamError as exc:
        if exc.upstream_status != 404:
            raise
    return [
        replace(entry_from_name(provider, model), model_id=name, display_name=f"{name} ({model})")
        for name, model in azure_deployments(provider.options).items()
    ]
