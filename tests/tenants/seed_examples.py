"""The examples of the seed's tenant-settings dialect, copied verbatim from
/work/shared/seeds/002_cb06acb23493c307.txt ("Option 4: Hybrid", "Migration Guide", "Testing Different
Providers", "Environment Variables Reference"). They are annotated JSON (``// Encrypted``): ``seed_json``
drops the comments, as a client sending them would, and reads every object of a block."""

import json
import re

# "Option 4: Hybrid" — "Then configure per tenant in database:"
HYBRID_TENANTS = """{
  "tenantId": "prod-client-1",
  "settings": {
    "llm": {
      "provider": "openai",
      "model": "gpt-4o",
      "apiKey": "sk-proj-..."  // Encrypted
    }
  }
}

{
  "tenantId": "test-client",
  "settings": {
    "llm": {
      "provider": "ollama",
      "model": "llama3.1:8b"
      // No API key needed for Ollama
    }
  }
}"""

# "Migration Guide" — the body of `curl -X PUT https://chat.genai.hr/api/tenants/:id`
SWITCH_TO_ANTHROPIC = """{
    "settings": {
      "llm": {
        "provider": "anthropic",
        "model": "claude-3-5-sonnet-20241022",
        "apiKey": "sk-ant-..."
      }
    }
  }"""

# "Testing Different Providers" — the bodies of `curl -X POST https://chat.genai.hr/api/test/llm`
TEST_OPENAI = '{"provider":"openai","prompt":"What is 2+2?"}'
TEST_ANTHROPIC = '{"provider":"anthropic","prompt":"What is 2+2?"}'
TEST_OLLAMA = '{"provider":"ollama","prompt":"What is 2+2?"}'

# "Environment Variables Reference" (the LLM, parameter, cost and embeddings parts)
ENV_REFERENCE = """# Default provider (openai | anthropic | ollama)
LLM_PROVIDER=openai

# OpenAI
OPENAI_API_KEY=sk-proj-...
OPENAI_MODEL=gpt-4o                          # or gpt-4o-mini
OPENAI_EMBEDDING_MODEL=text-embedding-3-small
OPENAI_ORG_ID=org-...                        # Optional

# Anthropic
ANTHROPIC_API_KEY=sk-ant-api03-...
ANTHROPIC_MODEL=claude-3-5-sonnet-20241022   # or claude-3-haiku-20240307

# Ollama (Local)
OLLAMA_BASE_URL=http://localhost:11434
OLLAMA_MODEL=llama3.1:8b                     # or mistral, phi3, etc.

# ============= LLM Parameters =============

# Default temperature (0-2)
LLM_TEMPERATURE=0.7

# Max output tokens
LLM_MAX_TOKENS=1000

# Request timeout (ms)
LLM_TIMEOUT=30000

# Max retries
LLM_MAX_RETRIES=3

# ============= Cost Tracking =============

# Enable cost tracking
ENABLE_COST_TRACKING=true

# Alert threshold (USD per day)
COST_ALERT_THRESHOLD=100

# ============= Embeddings =============

# Separate embeddings provider (if different from LLM)
EMBEDDINGS_PROVIDER=openai
EMBEDDINGS_API_KEY=sk-proj-...
EMBEDDINGS_MODEL=text-embedding-3-small
"""

_COMMENT = re.compile(r"^([^\"\n]*(?:\"[^\"\n]*\"[^\"\n]*)*?)\s*//.*$", re.M)


def seed_json(text: str) -> list[dict]:
    """Every JSON object in ``text``, its ``//`` comments dropped."""
    text = _COMMENT.sub(r"\1", text)
    decoder, objects, at = json.JSONDecoder(), [], 0
    while True:
        while at < len(text) and text[at].isspace():
            at += 1
        if at == len(text):
            return objects
        obj, at = decoder.raw_decode(text, at)
        objects.append(obj)


def seed_env(text: str) -> dict[str, str]:
    """The variables of a .env block, without comments."""
    out = {}
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if "=" in line:
            name, value = line.split("=", 1)
            out[name.strip()] = value.strip()
    return out
