"""Reading a configuration document from text: YAML (which JSON also is) or JSON, with limits a
file from anywhere needs (size, nesting, no YAML anchors or aliases, which could make a few
bytes expand into a huge tree), and telling a LiteLLM ``config.yaml`` from a Tollgate document."""

from typing import Any

import orjson
import yaml

from core.parsers import _depth_exceeds
from tenantconfig.schema import ConfigInvalid

MAX_BYTES = 1024 * 1024  # far beyond any tenant's configuration
MAX_DEPTH = 32
LITELLM_KEYS = ("model_list", "router_settings", "general_settings", "litellm_settings")


class _Loader(yaml.SafeLoader):
    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            mark = self.peek_event().start_mark
            raise yaml.YAMLError(f"line {mark.line + 1}: YAML aliases (*name) are not accepted; write the value out")
        return super().compose_node(parent, index)


class TooLarge(ConfigInvalid):
    status = 413
    type = "request_too_large"


def document_load(raw: bytes | str, *, json: bool = False) -> Any:
    """The document in ``raw``; ConfigInvalid saying what is wrong with the text otherwise."""
    data = raw.encode() if isinstance(raw, str) else raw
    if len(data) > MAX_BYTES:
        raise TooLarge([f"(document): {len(data)} bytes; a configuration document is at most {MAX_BYTES} bytes"])
    if not data.strip():
        raise ConfigInvalid(["(document): empty; send a YAML or JSON document with version: 1 at the top"])
    try:
        document = orjson.loads(data) if json else yaml.load(data, Loader=_Loader)  # noqa: S506 (a SafeLoader)
    except (orjson.JSONDecodeError, yaml.YAMLError, UnicodeDecodeError) as exc:
        kind = "JSON" if json else "YAML"
        raise ConfigInvalid([f"(document): not valid {kind}: {str(exc).strip()}"]) from None
    if _depth_exceeds(document, MAX_DEPTH):
        raise ConfigInvalid([f"(document): nested more than {MAX_DEPTH} levels deep"])
    return document


def is_litellm(document: Any) -> bool:
    """A LiteLLM proxy config (``model_list`` and its settings sections), not a Tollgate document."""
    return isinstance(document, dict) and "version" not in document and any(k in document for k in LITELLM_KEYS)
