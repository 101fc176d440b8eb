from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView

from core import views as core_views

api_v1 = [
    path("", include("accounts.api_urls")),
    path("", include("market.api_urls_market")),
    path("", include("billing.api_urls_billing")),
    path("", include("billing.api_urls_vouchers")),
    path("", include("market.api_urls_telemetry")),
]

urlpatterns = [
    path("", core_views.home, name="home"),
    path("healthz", core_views.healthz, name="healthz"),
    path("i18n/", include("django.conf.urls.i18n")),
    path("admin/", admin.site.urls),
    path("", include("accounts.urls")),
    path("market/", include("market.urls_market")),
    path("", include("billing.urls_billing")),
    path("", include("billing.urls_vouchers")),
    path("", include("billing.urls_programmes")),
    path("", include("billing.urls_operator")),
    path("", include("billing.urls_claims")),
    path("", include("market.urls_telemetry")),
    path("api/v1/", include(api_v1)),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    # The split view serves Swagger UI's start-up script as a file, not inline (CSP).
    path(
        "api/docs/",
        SpectacularSwaggerSplitView.as_view(url_name="schema", template_name="api/swagger_ui.html"),
        name="swagger-ui",
    ),
]

# The API answers every error in its JSON format, including addresses that match no route.
handler400 = "core.views.bad_request"
handler403 = "core.views.permission_denied"
handler404 = "core.views.page_not_found"
handler500 = "core.views.server_error"
