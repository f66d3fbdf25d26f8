"""WSGI entry point for a WSGI server (``gunicorn config.wsgi:application``): Django only, without
the /v1 data plane, which needs ASGI (config/asgi.py). The request-body limit wraps it as it does
the ASGI application (config/bodylimit.py)."""

import os

from django.core.wsgi import get_wsgi_application

from config.bodylimit import limit_wsgi_request_body

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
application = limit_wsgi_request_body(get_wsgi_application())
