from __future__ import annotations

from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from copilot_site.core.views import healthz

urlpatterns = [
    path("healthz", healthz, name="healthz"),
    path("admin/", admin.site.urls),
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="api-schema"), name="api-docs"),
    path("api/chat/", include("chat.urls")),
    path("api/billing/", include("billing.urls")),
    path("api/", include("ratelimits.urls")),
    path("", include("copilot_site.accounts.urls")),
    path("", include("chat.page_urls")),
    path("", include("billing.page_urls")),
]
