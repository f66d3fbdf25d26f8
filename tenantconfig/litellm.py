"""A LiteLLM proxy ``config.yaml`` as a Tollgate configuration document (:func:`litellm_translate`),
which tenantconfig/services.py then plans and applies like any other.

- ``model_list``: each entry's ``litellm_params.model`` prefix (``openai/``, ``anthropic/``,
  ``openrouter/``, ``ollama/``, ``azure/``, ``gemini/``, ``bedrock/``, and the OpenAI-compatible
  presets such as ``groq/``) with its ``api_base``, key and headers makes a provider: one per
  distinct endpoint, key and headers. ``os.environ/NAME`` becomes ``env:NAME``, read when the
  document is applied. ``model_name`` becomes an alias; entries sharing a ``model_name`` are its
  deployments (priority 0, or ``order`` - 1; ``weight``; ``rpm`` / ``tpm`` as limits), and
  ``temperature``, ``max_tokens``, ``top_p`` their overrides.
- ``router_settings``: ``routing_strategy`` (simple-shuffle → weighted, least-busy,
  latency-based-routing → latency, usage-based-routing(-v2) → usage, cost-based-routing → cost),
  ``num_retries``, ``timeout``, ``allowed_fails``, ``cooldown_time`` on every alias; ``fallbacks``
  (model_name → other model_names) as lower-priority deployments of the alias, one priority group
  per fallback; ``context_window_fallbacks`` / ``content_policy_fallbacks`` as the alias's own.
- ``general_settings``: ``model_cost`` (USD per token) as manual prices (per million tokens) of
  the models it names; ``max_budget`` / ``budget_duration`` / ``enforce_budget`` as a tenant
  budget alerting at 80 % and blocking at 100 % when enforced.

Whatever has no Tollgate counterpart is listed in the notes ("not imported: …"), never dropped
silently."""

import re
from decimal import Decimal, InvalidOperation
from typing import Any

from billing.models import BudgetAction, BudgetPeriod
from core.errors import TollgateError
from providers.base_urls import DEFAULT_BASE_URLS, detect_provider_type
from providers.models import ProviderType, RoutingStrategy
from providers.presets import preset_get
from tenantconfig.document import ENV_PREFIX, price_text, secret_resolve
from tenantconfig.schema import VERSION, ConfigInvalid

ENV_REF = "os.environ/"
STRATEGIES = {
    "simple-shuffle": RoutingStrategy.WEIGHTED.value,
    "least-busy": RoutingStrategy.LEAST_BUSY.value,
    "latency-based-routing": RoutingStrategy.LATENCY.value,
    "usage-based-routing": RoutingStrategy.USAGE.value,
    "usage-based-routing-v2": RoutingStrategy.USAGE.value,
    "cost-based-routing": RoutingStrategy.COST.value,
}
PREFIX_TYPES = {
    "openai": ProviderType.OPENAI, "anthropic": ProviderType.ANTHROPIC, "openrouter": ProviderType.OPENROUTER,
    "ollama": ProviderType.OLLAMA, "ollama_chat": ProviderType.OLLAMA, "azure": ProviderType.AZURE,
    "gemini": ProviderType.GEMINI, "bedrock": ProviderType.BEDROCK, "text-completion-openai": ProviderType.OPENAI,
}
PRESET_PREFIXES = {"together_ai": "together", "fireworks_ai": "fireworks", "perplexity": "perplexity",
                   "mistral": "mistral", "groq": "groq", "deepseek": "deepseek", "xai": "xai",
                   "cerebras": "cerebras"}
OVERRIDES = ("temperature", "max_tokens", "top_p")
HANDLED_PARAMS = {"model", "api_key", "api_base", "base_url", "api_version", "extra_headers", "rpm", "tpm",
                  "weight", "order", "aws_access_key_id", "aws_secret_access_key", "aws_session_token",
                  "aws_region_name", "base_model", "tenant_id", "client_id", "client_secret", *OVERRIDES}
ROUTER_FIELDS = {"num_retries": ("retries", 0, 10), "timeout": ("timeout_seconds", 0.5, 600),
                 "allowed_fails": ("allowed_fails", 0, 1000), "cooldown_time": ("cooldown_seconds", 1, 86_400)}
COSTS = {"input_cost_per_token": "input_price", "output_cost_per_token": "output_price",
         "cache_read_input_token_cost": "cached_input_price",
         "cache_creation_input_token_cost": "cache_write_price"}
DURATIONS = {"1d": BudgetPeriod.DAY, "24h": BudgetPeriod.DAY, "7d": BudgetPeriod.WEEK, "1w": BudgetPeriod.WEEK,
             "30d": BudgetPeriod.ROLLING_30D, "1mo": BudgetPeriod.MONTH, "1m": BudgetPeriod.MONTH}
ALIAS_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


def _ref(value: Any) -> Any:
    """``os.environ/NAME`` as Tollgate's ``env:NAME``; other values as they are."""
    if isinstance(value, str) and value.startswith(ENV_REF):
        return ENV_PREFIX + value[len(ENV_REF):]
    return value


def _alias_name(name: str) -> str:
    if ALIAS_NAME_RE.match(name):
        return name
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-._")[:100] or "alias"
    return cleaned


def _per_million(value: Any) -> str | None:
    try:
        return price_text(Decimal(str(value)) * 1_000_000)
    except (InvalidOperation, ValueError):
        return None


class _Translation:
    def __init__(self, config: dict[str, Any], *, allow_env: bool):
        self.config, self.allow_env = config, allow_env
        self.providers: dict[tuple, dict[str, Any]] = {}
        self.aliases: dict[str, dict[str, Any]] = {}  # by LiteLLM model_name
        self.names: dict[str, str] = {}  # LiteLLM model_name -> alias name
        self.notes: list[str] = []
        self.errors: list[str] = []

    def note(self, text: str) -> None:
        self.notes.append(text)

    # --- model_list ----------------------------------------------------------------------------

    def model_list(self) -> None:
        entries = self.config.get("model_list") or []
        if not isinstance(entries, list):
            self.errors.append("model_list: must be a list of {model_name, litellm_params} entries")
            return
        for index, entry in enumerate(entries):
            where = f"model_list[{index}]"
            if not isinstance(entry, dict) or not isinstance(entry.get("model_name"), str) or \
                    not isinstance(entry.get("litellm_params"), dict) or \
                    not isinstance(entry["litellm_params"].get("model"), str):
                self.errors.append(f"{where}: needs model_name and litellm_params.model")
                continue
            self.deployment(where, entry)

    def deployment(self, where: str, entry: dict[str, Any]) -> None:
        model_name, params = entry["model_name"], entry["litellm_params"]
        where = f"{where} ({model_name})"
        found = self.provider_for(where, params)
        if found is None:
            return
        provider, model_id = found
        unknown = sorted(set(params) - HANDLED_PARAMS)
        if unknown:
            self.note(f"{where}: litellm_params {', '.join(unknown)}: no Tollgate counterpart")
        extra = sorted(set(entry) - {"model_name", "litellm_params"})
        for key in extra:
            if key == "model_info":
                info = entry["model_info"] if isinstance(entry["model_info"], dict) else {}
                self.note(f"{where}: model_info ({', '.join(sorted(info)) or 'empty'}): Tollgate takes a model's "
                          "mode and capabilities from its provider's catalog")
            else:
                self.note(f"{where}: {key}: no Tollgate counterpart")
        deployment: dict[str, Any] = {"model": f"{provider['name']}:{model_id}", "priority": 0}
        if params.get("order") is not None:
            if isinstance(params["order"], int) and params["order"] >= 1:
                deployment["priority"] = params["order"] - 1
            else:
                self.note(f"{where}: order {params['order']!r} is not a whole number ≥ 1; priority 0 used")
        if params.get("weight") is not None:
            weight = params["weight"]
            if isinstance(weight, (int, float)) and float(weight).is_integer() and weight >= 0:
                deployment["weight"] = int(weight)
            else:
                self.note(f"{where}: weight {weight!r} is not a whole number; Tollgate weights are whole numbers "
                          "(weight 1 used)")
        for param, field in (("rpm", "rpm_limit"), ("tpm", "tpm_limit")):
            if params.get(param) is not None:
                deployment[field] = params[param]
        overrides = {k: params[k] for k in OVERRIDES if params.get(k) is not None}
        if overrides:
            deployment["overrides"] = overrides
        name = _alias_name(model_name)
        if model_name not in self.aliases:
            if name != model_name:
                self.note(f"{where}: model_name '{model_name}' is imported as alias '{name}' (alias names take "
                          "letters, digits, '.', '_' and '-')")
            if name in {a["name"] for a in self.aliases.values()}:
                self.errors.append(f"{where}: model_name '{model_name}' would be alias '{name}', which another "
                                   "model_name already is; rename one")
                return
            self.names[model_name] = name
            self.aliases[model_name] = {"name": name, "deployments": []}
        self.aliases[model_name]["deployments"].append(deployment)

    def provider_for(self, where: str, params: dict[str, Any]) -> tuple[dict[str, Any], str] | None:
        model = params["model"]
        prefix, _, rest = model.partition("/")
        if not rest:
            prefix, rest = self.guess_prefix(model), model
            if prefix is None:
                self.note(f"{where}: model '{model}' names no provider (openai/…, anthropic/…, openrouter/…) "
                          "and is not imported")
                return None
        api_base = params.get("api_base") or params.get("base_url") or ""
        options: dict[str, Any] = {}
        api_key = _ref(params.get("api_key")) if params.get("api_key") is not None else None
        if prefix in PRESET_PREFIXES:
            preset = preset_get(PRESET_PREFIXES[prefix])
            ptype, options = ProviderType.OPENAI_COMPATIBLE.value, {"preset": preset.name}
            api_base = api_base or preset.base_url
        elif prefix in PREFIX_TYPES:
            ptype = PREFIX_TYPES[prefix].value
            if ptype == ProviderType.OPENAI and api_base and detect_provider_type(api_base) != ProviderType.OPENAI:
                ptype = ProviderType.OPENAI_COMPATIBLE.value  # LiteLLM's openai/ with an api_base of its own
        else:
            self.note(f"{where}: provider '{prefix}/' has no Tollgate provider type; not imported")
            return None
        if ptype == ProviderType.AZURE:
            if not api_base:
                self.errors.append(f"{where}.litellm_params.api_base: an azure/ model needs its resource's api_base")
                return None
            options = {"deployments": {rest: str(params.get("base_model") or rest).removeprefix("azure/")}}
            if params.get("api_version"):
                options["api_version"] = str(params["api_version"])
            if params.get("client_secret") and params.get("tenant_id") and params.get("client_id"):
                # LiteLLM's Azure AD client credentials: Tollgate mints the tokens (auth "entra-client")
                options["auth"] = "entra-client"
                for name in ("tenant_id", "client_id"):
                    value = str(_ref(params[name]))
                    options[name] = (self.secret(value, f"{where}.litellm_params.{name}")
                                     if value.startswith(ENV_PREFIX) else value)
                api_key = _ref(params["client_secret"])
        elif params.get("api_version"):
            self.note(f"{where}: api_version is only used by azure/ models; not imported")
        entra = [p for p in ("tenant_id", "client_id", "client_secret") if params.get(p)]
        if entra and (ptype != ProviderType.AZURE or len(entra) < 3):
            self.note(f"{where}: {', '.join(entra)} are imported only as Azure AD client credentials (an azure/ "
                      "model with tenant_id, client_id and client_secret); not imported")
        if ptype == ProviderType.BEDROCK:
            region = params.get("aws_region_name")
            if not region:
                self.errors.append(f"{where}.litellm_params.aws_region_name: a bedrock/ model needs its AWS region")
                return None
            options = {"region": str(_ref(region))}
            if str(options["region"]).startswith(ENV_PREFIX):
                options["region"] = self.secret(options["region"], f"{where}.litellm_params.aws_region_name")
            if params.get("aws_access_key_id") and params.get("aws_secret_access_key"):
                parts = [self.secret(_ref(params[p]), f"{where}.litellm_params.{p}")
                         for p in ("aws_access_key_id", "aws_secret_access_key", "aws_session_token") if params.get(p)]
                api_key = ":".join(p or "" for p in parts) if None not in parts else None
            elif api_key is not None:
                options["auth"] = "bearer"
            else:
                self.note(f"{where}: no AWS credentials in litellm_params (the instance's role is not used by "
                          "Tollgate); set the provider's api_key before calling it")
        headers = params.get("extra_headers")
        if headers is not None and not isinstance(headers, dict):
            self.errors.append(f"{where}.litellm_params.extra_headers: must be a mapping of header to value")
            return None
        headers = {str(k): _ref(str(v)) for k, v in (headers or {}).items()}
        identity = (ptype, api_base, api_key, tuple(sorted(headers.items())), _frozen(options))
        if ptype == ProviderType.AZURE:  # one Azure resource holds many deployments
            identity = (ptype, api_base, api_key, tuple(sorted(headers.items())), options.get("api_version"))
        provider = self.providers.get(identity)
        if provider is None:
            taken = {p["name"] for p in self.providers.values()}
            base = options.get("preset") or ptype.replace("_", "-")
            name, n = base, 1
            while name in taken:
                n += 1
                name = f"{base}-{n}"
            provider = {"name": name, "type": ptype}
            if api_base or ptype not in DEFAULT_BASE_URLS:
                provider["base_url"] = api_base
            if api_key is not None:
                provider["api_key"] = api_key
            if headers:
                provider["extra_headers"] = headers
            if options:
                provider["options"] = options
            self.providers[identity] = provider
        elif ptype == ProviderType.AZURE:
            provider["options"]["deployments"].update(options["deployments"])
        return provider, rest

    def secret(self, value: str, path: str) -> str | None:
        try:
            return secret_resolve(value, path=path, allow_env=self.allow_env)
        except TollgateError as exc:  # its message names the variable
            self.errors.append(exc.message)
            return None

    @staticmethod
    def guess_prefix(model: str) -> str | None:
        """LiteLLM's own guess for a model without a provider prefix."""
        if re.match(r"^(gpt-|o[134]\b|o[134]-|text-embedding-|chatgpt-)", model):
            return "openai"
        if model.startswith("claude"):
            return "anthropic"
        if model.startswith("gemini"):
            return "gemini"
        return None

    # --- router_settings -------------------------------------------------------------------------

    def router_settings(self) -> None:
        router = self.config.get("router_settings") or {}
        if not isinstance(router, dict):
            self.errors.append("router_settings: must be a mapping")
            return
        settings: dict[str, Any] = {}
        for key, value in router.items():
            where = f"router_settings.{key}"
            if key == "routing_strategy":
                if value in STRATEGIES:
                    settings["strategy"] = STRATEGIES[value]
                else:
                    self.note(f"{where} '{value}': no Tollgate strategy of that name (weighted, least-busy, "
                              "latency, usage, cost)")
            elif key in ROUTER_FIELDS:
                field, low, high = ROUTER_FIELDS[key]
                if isinstance(value, bool) or not isinstance(value, (int, float)):
                    self.note(f"{where} {value!r}: not a number; not imported")
                    continue
                clamped = min(max(value, low), high)
                if clamped != value:
                    self.note(f"{where} {value}: Tollgate takes {low} to {high}; {clamped} used")
                settings[field] = float(clamped) if field == "timeout_seconds" else int(clamped)
            elif key == "fallbacks":
                self.fallbacks(where, value)
            elif key in ("context_window_fallbacks", "content_policy_fallbacks"):
                self.error_fallbacks(where, key, value)
            else:
                self.note(f"{where}: no Tollgate counterpart")
        if settings and not self.aliases:
            named = ", ".join(k for k in router if k in ROUTER_FIELDS or k == "routing_strategy")
            self.note(f"router_settings ({named}): set on the aliases a config's model_list makes, and this one "
                      "has none")
        for alias in self.aliases.values():
            strategy = settings.get("strategy")
            alias.update({k: v for k, v in settings.items() if k != "strategy"})
            if strategy is not None and strategy != RoutingStrategy.WEIGHTED:
                groups = [d["priority"] for d in alias["deployments"]]
                if len(set(groups)) < len(groups):
                    alias["strategy"] = strategy
        if settings.get("strategy") not in (None, RoutingStrategy.WEIGHTED.value):
            single = [a["name"] for a in self.aliases.values() if "strategy" not in a]
            if single:
                self.note(f"router_settings.routing_strategy '{router['routing_strategy']}' is set on the aliases "
                          f"whose deployments share a priority group; {', '.join(single)} keep weighted (one "
                          "deployment per group: nothing to choose between)")

    def _pairs(self, where: str, value: Any) -> list[tuple[str, list[str]]]:
        """LiteLLM's ``[{model_name: [names…]}, …]``."""
        pairs = []
        for index, item in enumerate(value if isinstance(value, list) else [value]):
            if not isinstance(item, dict):
                self.note(f"{where}[{index}]: not a mapping of model_name to fallbacks; not imported")
                continue
            for source, targets in item.items():
                names = targets if isinstance(targets, list) else [targets]
                pairs.append((str(source), [str(n) for n in names if n is not None]))
        return pairs

    def fallbacks(self, where: str, value: Any) -> None:
        for source, targets in self._pairs(where, value):
            alias = self.aliases.get(source)
            if alias is None:
                self.note(f"{where}: '{source}' → {', '.join(targets)}: '{source}' is not a model_name of this "
                          "config's model_list")
                continue
            missing = [t for t in targets if t not in self.aliases or t == source]
            for target in targets:
                if target not in self.aliases or target == source:
                    continue
                group = max(d["priority"] for d in alias["deployments"]) + 1
                for d in self.aliases[target]["deployments"]:
                    alias["deployments"].append({**d, "priority": group})
            if missing:
                self.note(f"{where}: '{source}' → {', '.join(missing)}: not model_names of this config's model_list "
                          "(a fallback names another model_list entry; add them there, or add them to the alias as "
                          "lower-priority deployments)")
            if len(alias["deployments"]) > 20:
                self.errors.append(f"{where}: '{source}' would have {len(alias['deployments'])} deployments with its "
                                   "fallbacks; an alias has at most 20")

    def error_fallbacks(self, where: str, key: str, value: Any) -> None:
        for source, targets in self._pairs(where, value):
            alias = self.aliases.get(source)
            if alias is None:
                self.note(f"{where}: '{source}' is not a model_name of this config's model_list")
                continue
            names = [self.names[t] for t in targets if t in self.aliases and t != source]
            missing = [t for t in targets if t not in self.aliases or t == source]
            alias[key] = names[:10]
            if missing:
                self.note(f"{where}: '{source}' → {', '.join(missing)}: not model_names of this config's model_list")

    # --- general_settings --------------------------------------------------------------------------

    def general_settings(self) -> dict[str, Any] | None:
        general = self.config.get("general_settings") or {}
        if not isinstance(general, dict):
            self.errors.append("general_settings: must be a mapping")
            return None
        budget = None
        for key, value in general.items():
            where = f"general_settings.{key}"
            if key == "model_cost":
                self.model_cost(where, value)
            elif key == "max_budget":
                budget = self.budget(general)
            elif key in ("budget_duration", "enforce_budget"):
                if "max_budget" not in general:
                    self.note(f"{where}: without max_budget there is no budget; not imported")
            elif key == "database_url":
                self.note(f"{where}: Tollgate keeps usage and cost in its own ledger (PostgreSQL); not imported")
            else:
                self.note(f"{where}: no Tollgate counterpart")
        return budget

    def budget(self, general: dict[str, Any]) -> dict[str, Any] | None:
        try:
            amount = Decimal(str(general["max_budget"]))
        except (InvalidOperation, ValueError):
            self.errors.append(f"general_settings.max_budget: {general['max_budget']!r} is not an amount of USD")
            return None
        duration = str(general.get("budget_duration") or "")
        period = DURATIONS.get(duration.strip().lower())
        if period is None:
            self.note(f"general_settings.budget_duration {duration or '(none)'!r}: Tollgate budgets are per day, "
                      "week, month or rolling 30 days; a calendar month is used")
            period = BudgetPeriod.MONTH
        enforced = general.get("enforce_budget") is True
        return {"name": "LiteLLM max_budget", "scope": "tenant", "amount": format(amount, "f"),
                "period": period.value, "thresholds": [80, 100],
                "action": BudgetAction.BLOCK.value if enforced else BudgetAction.ALERT.value}

    def model_cost(self, where: str, value: Any) -> None:
        if not isinstance(value, dict):
            self.note(f"{where}: not a mapping of model to costs; not imported")
            return
        for name, costs in value.items():
            targets = self.models_named(str(name))
            if not targets:
                self.note(f"{where}.{name}: no model or model_name of this config is called '{name}'; not imported")
                continue
            if not isinstance(costs, dict):
                self.note(f"{where}.{name}: not a mapping of costs; not imported")
                continue
            prices = {}
            for cost, field in COSTS.items():
                if costs.get(cost) is not None:
                    price = _per_million(costs[cost])
                    if price is None:
                        self.errors.append(f"{where}.{name}.{cost}: {costs[cost]!r} is not a number")
                    else:
                        prices[field] = price
            other = sorted(set(costs) - set(COSTS))
            if other:
                self.note(f"{where}.{name}: {', '.join(other)}: Tollgate prices input, output, cached input and cache "
                          "writes only")
            if "input_price" not in prices or "output_price" not in prices:
                self.note(f"{where}.{name}: a manual price needs input_cost_per_token and output_cost_per_token; "
                          "not imported")
                continue
            for provider, model_id in targets:
                models = provider.setdefault("models", [])
                entry = next((m for m in models if m["id"] == model_id), None)
                if entry is None:
                    models.append({"id": model_id, **prices})
                else:
                    entry.update(prices)

    def models_named(self, name: str) -> list[tuple[dict[str, Any], str]]:
        """The (provider, model id) pairs ``name`` means: an alias's deployments, or a model by its id."""
        by_ref = {f"{p['name']}:{m}": p for p in self.providers.values() for m in self.model_ids(p)}
        refs: list[str] = []
        if name in self.aliases:
            refs = [d["model"] for d in self.aliases[name]["deployments"]]
        else:
            bare = name.partition("/")[2] if name.split("/")[0] in PREFIX_TYPES else name
            refs = [ref for ref in by_ref if ref.partition(":")[2] in (name, bare)]
        return [(by_ref[r], r.partition(":")[2]) for r in dict.fromkeys(refs) if r in by_ref]

    def model_ids(self, provider: dict[str, Any]) -> set[str]:
        return {d["model"].partition(":")[2] for a in self.aliases.values() for d in a["deployments"]
                if d["model"].partition(":")[0] == provider["name"]}

    def rest(self) -> None:
        for key in self.config:
            if key not in ("model_list", "router_settings", "general_settings"):
                section = self.config[key]
                detail = f" ({', '.join(sorted(map(str, section)))})" if isinstance(section, dict) else ""
                self.note(f"{key}{detail}: no Tollgate counterpart")


def _frozen(value: Any) -> Any:
    if isinstance(value, dict):
        return tuple(sorted((k, _frozen(v)) for k, v in value.items()))
    return value


def litellm_translate(config: dict[str, Any], *, allow_env: bool = True) -> tuple[dict[str, Any], list[str]]:
    """The Tollgate document for a LiteLLM ``config``, and the notes on what it could not map.
    ConfigInvalid naming each entry that cannot be translated at all."""
    t = _Translation(config, allow_env=allow_env)
    t.model_list()
    t.router_settings()
    budget = t.general_settings()
    t.rest()
    if t.errors:
        raise ConfigInvalid(t.errors)
    document: dict[str, Any] = {"version": VERSION, "providers": list(t.providers.values())}
    aliases = []
    for alias in t.aliases.values():
        if any(d["weight"] != 1 for d in alias["deployments"] if "weight" in d) and \
                len({d["priority"] for d in alias["deployments"]}) == len(alias["deployments"]) > 1:
            for d in alias["deployments"]:
                d.pop("weight", None)
            t.note(f"alias '{alias['name']}': weights dropped (each deployment is alone in its priority group)")
        aliases.append(alias)
    document["aliases"] = aliases
    if budget is not None:
        document["budgets"] = [budget]
    return document, t.notes
