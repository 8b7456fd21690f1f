from __future__ import annotations

from csp.decorators import csp_update
from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView

from copilot_site.core.views import healthz, metrics_scrape

# Swagger UI comes from its CDN (drf-spectacular's default) and styles its page inline;
# the split view serves its start-up script as a file, so no inline script is allowed.
_SWAGGER_CDN = "https://cdn.jsdelivr.net"
_api_docs = csp_update(
    {"script-src": [_SWAGGER_CDN], "style-src": [_SWAGGER_CDN, "'unsafe-inline'"], "img-src": [_SWAGGER_CDN]}
)(SpectacularSwaggerSplitView.as_view(url_name="api-schema"))

urlpatterns = [
    path("healthz", healthz, name="healthz"),
    path("metrics", metrics_scrape, name="metrics"),
    path("admin/", admin.site.urls),
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("api/docs/", _api_docs, name="api-docs"),
    path("api/chat/", include("chat.urls")),
    path("api/billing/", include("billing.urls")),
    path("api/", include("ratelimits.urls")),
    path("", include("copilot_site.accounts.urls")),
    path("", include("chat.page_urls")),
    path("", include("billing.page_urls")),
]
