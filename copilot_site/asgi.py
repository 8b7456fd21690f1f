"""ASGI entry point: HTTP to Django, WebSockets through origin validation and auth.

`get_asgi_application()` must run before importing anything that touches models.
"""

from __future__ import annotations

import os
import sys

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "copilot_site.settings.local")
django_asgi_app = get_asgi_application()

# Streams share the GIL with the threads running sync views and ORM calls; CPython's
# default 5 ms switch interval would let one of those delay every open stream by 5 ms.
sys.setswitchinterval(0.0005)

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402

from chat.routing import websocket_urlpatterns  # noqa: E402
from copilot_site.accounts.channels_auth import (  # noqa: E402
    ApiKeyOrSessionAuthMiddlewareStack,
    WebSocketOriginValidator,
)

application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        "websocket": WebSocketOriginValidator(ApiKeyOrSessionAuthMiddlewareStack(URLRouter(websocket_urlpatterns))),
    }
)

# What is loaded by now is never garbage; keep full collections from walking it (and
# pausing every open stream). See chat.turns.loop.quiet_gc.
from chat.turns.loop import quiet_gc  # noqa: E402

quiet_gc()

if "twisted.internet.reactor" in sys.modules:  # served by daphne
    from copilot_site.core.transport_patches import transport_patches_install  # noqa: E402

    transport_patches_install()  # each behind its setting, see copilot_site.core.transport_patches

    from copilot_site.core.daphne_uploads import multipart_parsing_off  # noqa: E402

    multipart_parsing_off()  # upload bodies reach Django unparsed (see that module)
