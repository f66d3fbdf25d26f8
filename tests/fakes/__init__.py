"""Loopback fake upstream LLM providers for tests (standard library; the OAuth token endpoints
also use PyJWT and cryptography).

Each fake is a real HTTP/1.1 server on 127.0.0.1 (OS-assigned port, daemon thread) speaking one
documented wire format (``/work/shared/reference/wire-formats.md``)::

    with FakeOpenAI(api_key="sk-test") as fake:
        client = httpx.Client(base_url=fake.base_url)          # http://127.0.0.1:PORT/v1
        fake.set_fault("status", status=429, times=1)           # next request: 429 + retry-after
        ...
        assert fake.requests[-1].headers["authorization"] == "Bearer sk-test"

See ``tests.fakes.base`` for the fault kinds and options.
"""

from .anthropic import FakeAnthropic
from .azure import FakeAzure, FakeEntra
from .base import FAULT_KINDS, FakeServer, Fault, RecordedRequest, Usage, make_models
from .bedrock import FakeBedrock
from .gemini import FakeGemini, FakeGoogleOAuth
from .ollama import FakeOllama
from .openai import FakeOpenAI, FakeOpenRouter

__all__ = [
    "FAULT_KINDS",
    "FakeAnthropic",
    "FakeAzure",
    "FakeBedrock",
    "FakeEntra",
    "FakeGemini",
    "FakeGoogleOAuth",
    "FakeOllama",
    "FakeOpenAI",
    "FakeOpenRouter",
    "FakeServer",
    "Fault",
    "RecordedRequest",
    "Usage",
    "make_models",
]
