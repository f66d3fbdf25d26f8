"""The JSON Schema (draft 2020-12) of a tenant configuration document, served at
/api/config/schema, and :func:`document_check`, which validates a document against it and
words every error as ``<path>: <what is wrong>`` (``aliases[2].deployments[0].weight: must be
≥ 0``). The bounds are those of the REST serializers (providers/api.py, tenants/api.py,
billing/api.py); what only the database knows (which models exist, which keys) the services
check when the document is applied."""

from collections.abc import Iterable
from typing import Any

from jsonschema import Draft202012Validator

from billing.models import BudgetAction, BudgetPeriod, BudgetScope
from core.errors import InvalidInput
from providers.crypto import MAX_KEY_CHARS
from providers.models import MAX_PRICE, ProviderType, RoutingStrategy
from tenants.models import OutagePolicy

VERSION = 1
MAX_ERRORS = 20

PRICE = {"type": "string", "pattern": r"^[0-9]+(\.[0-9]+)?$", "maxLength": 40,
         "x-error": f'must be a decimal string of USD per million tokens, e.g. "2.50" (0 to {MAX_PRICE})',
         "description": "USD per million tokens, as a string (money is never a float)."}
SECRET = {"type": "string", "minLength": 1, "maxLength": MAX_KEY_CHARS,
          "description": "env:NAME (read from the environment when the file is applied with manage.py; a missing "
                         "variable is an error naming it) or the value itself. Omitted: the saved one is kept."}
NAME = {"type": "string", "minLength": 1, "maxLength": 64, "pattern": r"^[a-z0-9][a-z0-9._-]{0,63}$",
        "x-error": "must be 1-64 lowercase letters, digits, '.', '_' or '-' (no ':'; the name prefixes model "
                   "ids as <name>:<model>)"}
ALIAS_NAME = {"type": "string", "pattern": r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$",
              "x-error": "must be letters, digits, '.', '_' or '-', at most 100 (no ':', which marks "
                         "provider:model ids)"}
MODEL_REF = {"type": "string", "minLength": 3, "maxLength": 400, "pattern": r"^[^:\s]+:\S.*$",
             "x-error": "must be provider:model, e.g. openrouter:openai/gpt-4o-mini"}


def _int(minimum: int, maximum: int, *, nullable: bool = False, **extra) -> dict[str, Any]:
    return {"type": ["integer", "null"] if nullable else "integer", "minimum": minimum, "maximum": maximum, **extra}


def _num(minimum: float, maximum: float, *, nullable: bool = False, **extra) -> dict[str, Any]:
    return {"type": ["number", "null"] if nullable else "number", "minimum": minimum, "maximum": maximum, **extra}


def _obj(properties: dict[str, Any], *, required: Iterable[str] = (), **extra) -> dict[str, Any]:
    return {"type": "object", "properties": properties, "required": list(required), "additionalProperties": False,
            **extra}


FALLBACKS = {"type": "array", "maxItems": 10, "items": {"type": "string", "minLength": 1, "maxLength": 400}}

MODEL = _obj({
    "id": {"type": "string", "minLength": 1, "maxLength": 255},
    "enabled": {"type": "boolean", "default": True},
    "input_price": PRICE, "output_price": PRICE, "cached_input_price": PRICE, "cache_write_price": PRICE,
}, required=["id"], dependentRequired={"input_price": ["output_price"], "output_price": ["input_price"],
                                       "cached_input_price": ["input_price"], "cache_write_price": ["input_price"]},
    description="A model of this provider that differs from what a sync makes of it: disabled, or with a manual "
                "price (which later syncs keep). Models not listed are enabled at the synced or catalog price.")

PROVIDER = _obj({
    "name": NAME,
    "type": {"enum": list(ProviderType.values)},
    "display_name": {"type": "string", "maxLength": 200},
    "base_url": {"type": "string", "maxLength": 500, "description": "Omitted: the type's default endpoint."},
    "api_key": SECRET,
    "extra_headers": {"type": "object", "maxProperties": 50,
                      "additionalProperties": {"type": "string", "minLength": 1, "maxLength": 2000},
                      "description": "Sent upstream with every request; values are env:NAME or the value. "
                                     "Omitted: the saved ones are kept."},
    "options": {"type": "object", "description": "Non-secret settings of the provider type (Azure api_version, "
                                                 "auth, deployments, and tenant_id, client_id, authority with auth "
                                                 "entra-client, whose api_key is the client secret; Gemini auth, "
                                                 "project, location, where a Vertex AI api_key may be a service "
                                                 "account's JSON key; Bedrock region, auth; OpenAI-compatible "
                                                 "preset)."},
    "priority": _int(-1000, 1000, default=0),
    "timeout_seconds": _num(0.5, 600, default=60.0),
    "max_retries": _int(0, 10, default=2),
    "enabled": {"type": "boolean", "default": True},
    "auto_sync": {"type": "boolean", "default": True},
    "sync_interval_minutes": _int(5, 43_200, default=1440),
    "models": {"type": "array", "maxItems": 5000, "items": MODEL,
               "description": "Omitted: the models are left as they are. Given (even empty): the complete list of "
                              "models that differ from their synced state."},
}, required=["name"], description="One of the tenant's own providers (bring your own key).")

DEPLOYMENT = _obj({
    "model": MODEL_REF,
    "priority": _int(0, 1000, description="Priority group, lower first. Omitted: the deployment's position."),
    "weight": _int(0, 1_000_000, default=1),
    "rpm_limit": _int(1, 100_000_000, nullable=True),
    "tpm_limit": _int(1, 10_000_000_000, nullable=True),
    "overrides": _obj({
        "temperature": _num(0, 2, nullable=True),
        "max_tokens": _int(1, 10_000_000, nullable=True),
        "top_p": _num(0, 1, nullable=True),
    }, description="Filled into requests that leave them unset."),
}, required=["model"])

ALIAS = _obj({
    "name": ALIAS_NAME,
    "project": {"type": ["string", "null"], "maxLength": 50,
                "description": "The slug of the project whose keys alone may send it (for them it shadows a "
                               "tenant-wide alias of the same name). Omitted or null: tenant-wide."},
    "description": {"type": "string", "maxLength": 300, "default": ""},
    "strategy": {"enum": list(RoutingStrategy.values), "default": RoutingStrategy.WEIGHTED.value},
    "session_affinity": {"type": "boolean", "default": False},
    "retries": _int(0, 10, default=1),
    "timeout_seconds": _num(0.5, 600, nullable=True, default=None),
    "allowed_fails": _int(0, 1000, default=3),
    "cooldown_seconds": _int(1, 86_400, default=60),
    "context_window_fallbacks": FALLBACKS,
    "content_policy_fallbacks": FALLBACKS,
    "deployments": {"type": "array", "minItems": 1, "maxItems": 20, "items": DEPLOYMENT},
}, required=["name", "deployments"])

TARGET = {
    "scope": {"enum": list(BudgetScope.values),
              "description": "tenant, project, key or end_user (each end user on their own). Default: key when key "
                             "is given, project when project is, else tenant."},
    "project": {"type": "string", "minLength": 1, "maxLength": 50,
                "description": "A project's slug: the project of scope project, or whose end users scope end_user "
                               "covers (left out: every end user of the tenant)."},
    "key": {"type": "string", "minLength": 1, "maxLength": 100, "description": "The API key's name (scope key)."},
    "model": {"type": "string", "maxLength": 255,
              "description": "Only requests to this alias or model (provider:model or a bare id); left out: all."},
}

BUDGET = _obj({
    "name": {"type": "string", "minLength": 1, "maxLength": 100},
    **TARGET,
    "amount": {"type": "string", "pattern": r"^[0-9]+(\.[0-9]{1,6})?$", "maxLength": 24,
               "x-error": 'must be a decimal string of USD with at most 6 decimals, e.g. "100.00"'},
    "period": {"enum": list(BudgetPeriod.values), "default": BudgetPeriod.MONTH.value},
    "thresholds": {"type": "array", "minItems": 1, "maxItems": 10, "uniqueItems": True,
                   "items": _int(1, 1000), "default": [50, 80, 100]},
    "action": {"enum": list(BudgetAction.values), "default": BudgetAction.ALERT.value},
    "downgrade_alias": {"type": "string", "maxLength": 100},
    "webhook_url": {**SECRET, "maxLength": 500, "description": "Alerts are also POSTed here. Never exported; "
                    "env:NAME or the URL; omitted: the saved one is kept."},
    "enabled": {"type": "boolean", "default": True},
}, required=["name", "amount"])

LIMIT = _obj({
    **TARGET,
    "requests_per_minute": _int(1, 10_000_000),
    "tokens_per_minute": _int(1, 10**12),
    "tokens_per_day": _int(1, 10**15),
    "enabled": {"type": "boolean", "default": True},
}, anyOf=[{"required": ["requests_per_minute"]}, {"required": ["tokens_per_minute"]},
          {"required": ["tokens_per_day"]}],
    **{"x-error-anyof": "needs at least one limit: requests_per_minute, tokens_per_minute or tokens_per_day"},
    description="A limit rule: requests per minute, tokens per minute and tokens per day in a scope, optionally for "
                "one model; at least one limit. Rules have no name: one per scope, project, key and model.")

KEY = _obj({
    "name": {"type": "string", "minLength": 1, "maxLength": 100},
    "allowed_models": {"type": "array", "maxItems": 500, "items": {"type": "string", "minLength": 1,
                                                                   "maxLength": 400}},
    "requests_per_minute": _int(1, 10_000_000, nullable=True),
    "tokens_per_minute": _int(1, 10**12, nullable=True),
    "tokens_per_day": _int(1, 10**15, nullable=True),
}, required=["name"], description="An existing API key, by name: its own limits and models. Keys are never created "
                                  "by a configuration file and their secrets never appear in one.")

PROJECT = _obj({
    "slug": {"type": "string", "minLength": 1, "maxLength": 50},
    "name": {"type": "string", "minLength": 1, "maxLength": 200},
    "default_model": {"type": ["string", "null"], "maxLength": 255},
    "requests_per_minute": _int(1, 100_000_000, nullable=True),
    "tokens_per_minute": _int(1, 10**12, nullable=True),
    "tokens_per_day": _int(1, 10**15, nullable=True),
}, required=["slug", "name"], description="A project: its slug (a letter at least; lowercase letters, digits and "
   "hyphens), name, default model and its own limits (across its keys).")

SETTINGS = _obj({
    "timezone": {"type": "string", "minLength": 1, "maxLength": 64},
    "default_model": {"type": ["string", "null"], "maxLength": 255},
    "default_embedding_model": {"type": ["string", "null"], "maxLength": 255},
    "temperature": _num(0, 2, nullable=True),
    "max_tokens": _int(1, 10_000_000, nullable=True),
    "top_p": _num(0, 1, nullable=True),
    "requests_per_minute": _int(1, 10_000_000, nullable=True),
    "tokens_per_minute": _int(1, 10**12, nullable=True),
    "tokens_per_day": _int(1, 10**15, nullable=True),
    "redis_outage": {"enum": list(OutagePolicy.values)},
    "usage_retention_days": _int(1, 3650, nullable=True),
    "cache": _obj({"enabled": {"type": "boolean"}, "ttl_seconds": _int(1, 30 * 86400)}),
}, description="The tenant's LLM defaults and limits; a setting left out keeps its value.")

SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "$id": "https://tollgate.invalid/schemas/tenant-config-v1.json",
    "title": "Tollgate tenant configuration",
    "description": "Everything a tenant configures, as one document: apply it with manage.py tenant_config apply or "
                   "POST /api/config/apply. Providers, aliases (with their project) and budgets are matched by "
                   "name, limit rules by their scope, project, key and model; with prune, those the document does "
                   "not name are deleted.",
    **_obj({
        "version": {"const": VERSION},
        "tenant": _obj({"slug": {"type": "string", "maxLength": 50}, "name": {"type": "string", "minLength": 1,
                                                                              "maxLength": 200}}),
        "settings": SETTINGS,
        "providers": {"type": "array", "maxItems": 200, "items": PROVIDER},
        "platform_models": {"type": "array", "maxItems": 5000, "items": _obj(
            {"model": MODEL_REF, "enabled": {"type": "boolean", "default": True}}, required=["model"],
        ), "description": "Models of the platform's providers the tenant uses. Given: the complete list (models "
                          "not listed are not used)."},
        "aliases": {"type": "array", "maxItems": 1000, "items": ALIAS},
        "budgets": {"type": "array", "maxItems": 200, "items": BUDGET},
        "limits": {"type": "array", "maxItems": 1000, "items": LIMIT,
                   "description": "Limit rules, matched by scope, project, key and model. With --prune, a rule the "
                                  "file does not name is deleted."},
        "keys": {"type": "array", "maxItems": 1000, "items": KEY},
        "projects": {"type": "array", "maxItems": 1000, "items": PROJECT,
                     "description": "The tenant's projects, by slug (the default project included). With --prune, "
                                    "a project the file does not name is deleted (refused while it has active "
                                    "keys; the default project never is)."},
    }, required=["version"]),
}

_VALIDATOR = Draft202012Validator(SCHEMA)


def path_text(parts: Iterable[Any]) -> str:
    """``["aliases", 2, "deployments", 0, "weight"]`` as ``aliases[2].deployments[0].weight``."""
    out = ""
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _type_words(types: Any) -> str:
    words = {"string": "a string", "integer": "a whole number", "number": "a number", "boolean": "true or false",
             "object": "a mapping", "array": "a list", "null": "null"}
    types = types if isinstance(types, list) else [types]
    return " or ".join(words.get(t, t) for t in types)


def _message(error) -> tuple[list[Any], str]:
    """The path and the words of one jsonschema error."""
    path, schema, kind = list(error.absolute_path), error.schema, error.validator
    if kind == "required":
        missing = error.message.split("'")[1]
        return [*path, missing], "is required"
    if kind == "additionalProperties":
        allowed = ", ".join(sorted(schema.get("properties", {})))
        extra = sorted(set(error.instance) - set(schema.get("properties", {})))
        return [*path, extra[0]], f"is not a known field here; known: {allowed}"
    if kind == "dependentRequired":
        return path, error.message.replace("'", "").replace("is a dependency of", "is needed with")
    if kind == "anyOf" and "x-error-anyof" in schema:
        return path, schema["x-error-anyof"]
    if "x-error" in schema and kind in ("pattern", "maxItems", "type", "maxLength"):
        return path, schema["x-error"]
    words = {
        "minimum": lambda: f"must be ≥ {error.validator_value}",
        "maximum": lambda: f"must be ≤ {error.validator_value}",
        "type": lambda: f"must be {_type_words(error.validator_value)}",
        "enum": lambda: f"must be one of: {', '.join(map(str, error.validator_value))}",
        "const": lambda: f"must be {error.validator_value}",
        "minLength": lambda: "must not be empty" if error.validator_value == 1
        else f"must be at least {error.validator_value} characters",
        "maxLength": lambda: f"must be at most {error.validator_value} characters",
        "minItems": lambda: f"must have at least {error.validator_value} item(s)",
        "maxItems": lambda: f"must have at most {error.validator_value} item(s)",
        "uniqueItems": lambda: "must not repeat a value",
        "maxProperties": lambda: f"must have at most {error.validator_value} entries",
        "pattern": lambda: f"must match {error.validator_value}",
    }
    return path, words.get(kind, lambda: error.message)()


def document_errors(document: Any) -> list[str]:
    """Every schema error of ``document`` as ``path: words``, in document order (at most MAX_ERRORS)."""
    if not isinstance(document, dict):
        return ["(document): must be a mapping with version: 1 at the top"]
    found = []
    for error in sorted(_VALIDATOR.iter_errors(document), key=lambda e: [str(p) for p in e.absolute_path]):
        path, words = _message(error)
        found.append(f"{path_text(path) or '(document)'}: {words}")
    return list(dict.fromkeys(found))[:MAX_ERRORS]


def document_check(document: Any) -> None:
    """InvalidInput listing every schema error of ``document``, each naming its path."""
    errors = document_errors(document)
    if errors:
        raise ConfigInvalid(errors)


class ConfigInvalid(InvalidInput):
    """A document the schema or a service refused: ``errors`` is one ``path: words`` per problem."""

    def __init__(self, errors: list[str]):
        super().__init__("; ".join(errors), field=None)
        self.errors = errors
