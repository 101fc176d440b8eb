from django.urls import path

from market import api_telemetry

urlpatterns = [
    path("telemetry/", api_telemetry.TelemetryIngestView.as_view(), name="api-telemetry"),
    path("usage-records/", api_telemetry.UsageRecordListView.as_view(), name="api-usage-records"),
]
