"""ASGI entry point: ``uvicorn config.asgi:application``.

``/v1/…`` (the data plane) goes to the gateway's own ASGI app, which skips Django's request
stack; everything else (management API, admin, console, health) is Django. The gateway also
takes the lifespan events: it starts its HTTP client and usage writer at startup and writes
every buffered usage row at shutdown. One wrapper around both enforces the request-body limit
(config/bodylimit.py) as the bytes arrive."""

import os

from django.core.asgi import get_asgi_application

from config.bodylimit import limit_request_body, with_content_length

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
django_application = with_content_length(get_asgi_application())

from gateway.app import gateway  # noqa: E402  (needs Django set up first)


async def route(scope, receive, send):
    if scope["type"] == "lifespan" or (scope["type"] == "http" and scope["path"].startswith("/v1/")):
        await gateway(scope, receive, send)
    else:
        await django_application(scope, receive, send)


application = limit_request_body(route)
