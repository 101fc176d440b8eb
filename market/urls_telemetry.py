from django.urls import path

from market import views_telemetry

urlpatterns = [
    path("leases/<int:pk>/usage/", views_telemetry.lease_usage, name="lease-usage"),
    path("nodes/<int:pk>/health/", views_telemetry.node_health, name="node-health"),
]
