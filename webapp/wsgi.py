"""WSGI entry point (``make serve-prod``: granian, see ``webapp/serve.py``): Django's application, every
request through its request cycle."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "webapp.settings")
application = get_wsgi_application()

from django.urls import get_resolver  # noqa: E402 (needs the settings configured above)

# Import every view now, so that a worker (also one started after a crash) answers its first request
# without a second of lazy imports.
get_resolver().url_patterns  # noqa: B018 (the attribute access does the import)
