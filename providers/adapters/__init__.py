"""Wire adapters: pure translation between the OpenAI shape clients speak and each provider's
wire format (requests, answers, streams, errors). No I/O, no Django, no other app: they import
only ``core``, the standard library and plain libraries (an import contract checks it). The
vocabulary is ``types``; ``registry`` maps a provider type to its adapter."""
