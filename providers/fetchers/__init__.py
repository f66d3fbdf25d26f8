"""Catalog fetchers: what each provider type says it offers (its model list, and for some its
prices and capabilities), read over HTTP and normalised into ``CatalogEntry`` rows. One module
per provider type; ``registry`` maps a type to its fetcher and runs one fetch. Chat
translation is elsewhere (providers/adapters/)."""
