"""Market: every page of the app, one include in config/urls.py."""

from django.urls import include, path

from market.web import index, telemetry, views

urlpatterns = [
    path(
        "market/",
        include(
            (
                [
                    path("gpus/", views.catalogue, name="catalogue"),
                    path("offers/", views.find_compute, name="find_compute"),
                    path("book/", views.book, name="book"),
                    path("quote/", views.quote, name="quote"),
                    path("index/", index.price_index, name="price_index"),
                    path("index.csv", index.price_index_csv, name="price_index_csv"),
                    path("index/method/", index.price_index_method, name="price_index_method"),
                    path("capacity/", views.my_capacity, name="capacity"),
                    path("capacity/sites/", views.site_create, name="site_create"),
                    path("capacity/nodes/", views.node_create, name="node_create"),
                    path(
                        "capacity/nodes/<int:pk>/token/<str:action>/",
                        views.node_token,
                        name="node_token",
                    ),
                    path("capacity/offers/", views.offer_create, name="offer_create"),
                    path(
                        "capacity/offers/<int:pk>/<str:action>/",
                        views.offer_action,
                        name="offer_action",
                    ),
                    path("orders/", views.my_orders, name="orders"),
                    path("orders/new/", views.order_new, name="order_new"),
                    path("orders/estimate/", views.order_estimate, name="order_estimate"),
                    path("orders/<int:pk>/cancel/", views.order_cancel, name="order_cancel"),
                    path("leases/<int:pk>/end/", views.lease_end, name="lease_end"),
                    path(
                        "leases/<int:pk>/resell/<str:action>/",
                        views.lease_resell,
                        name="lease_resell",
                    ),
                    path(
                        "capacity/nodes/<int:pk>/drain/<str:action>/",
                        views.node_drain,
                        name="node_drain",
                    ),
                ],
                "market",
            )
        ),
    ),
    path("leases/<int:pk>/usage/", telemetry.lease_usage, name="lease-usage"),
    path("nodes/<int:pk>/health/", telemetry.node_health, name="node-health"),
]
