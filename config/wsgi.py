"""WSGI entry point for a WSGI server; Django only, without the /v1 data plane, which needs ASGI
(config/asgi.py)."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
application = get_wsgi_application()
