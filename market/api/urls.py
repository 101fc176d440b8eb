"""Market: every API route of the app, one include in config/urls.py."""

from django.urls import path

from market.api import book, capacity, catalogue, index, offers, orders, telemetry

urlpatterns = [
    path("gpu-models/", catalogue.GPUModelListView.as_view(), name="api-gpu-models"),
    path("gpu-models/<slug:slug>/", catalogue.GPUModelDetailView.as_view(), name="api-gpu-model"),
    path("sites/", capacity.SiteListCreateView.as_view(), name="api-sites"),
    path("sites/<int:pk>/", capacity.SiteDetailView.as_view(), name="api-site"),
    path("nodes/", capacity.NodeListCreateView.as_view(), name="api-nodes"),
    path("nodes/<int:pk>/", capacity.NodeDetailView.as_view(), name="api-node"),
    path(
        "nodes/<int:pk>/token/rotate/",
        capacity.NodeTokenRotateView.as_view(),
        name="api-node-token-rotate",
    ),
    path(
        "nodes/<int:pk>/token/revoke/",
        capacity.NodeTokenRevokeView.as_view(),
        name="api-node-token-revoke",
    ),
    path("nodes/<int:pk>/drain/", capacity.NodeDrainView.as_view(), name="api-node-drain"),
    path(
        "nodes/<int:pk>/drain/cancel/",
        capacity.NodeDrainCancelView.as_view(),
        name="api-node-drain-cancel",
    ),
    path("offers/", offers.OfferListCreateView.as_view(), name="api-offers"),
    path("offers/mine/", offers.OfferMineView.as_view(), name="api-offers-mine"),
    path("offers/<int:pk>/", offers.OfferDetailView.as_view(), name="api-offer"),
    path("offers/<int:pk>/pause/", offers.OfferPauseView.as_view(), name="api-offer-pause"),
    path("offers/<int:pk>/resume/", offers.OfferResumeView.as_view(), name="api-offer-resume"),
    path(
        "offers/<int:pk>/withdraw/", offers.OfferWithdrawView.as_view(), name="api-offer-withdraw"
    ),
    path("orders/", orders.OrderListCreateView.as_view(), name="api-orders"),
    path("orders/<int:pk>/", orders.OrderDetailView.as_view(), name="api-order"),
    path("orders/<int:pk>/cancel/", orders.OrderCancelView.as_view(), name="api-order-cancel"),
    path("book/", book.BookView.as_view(), name="api-book"),
    path("quotes/", book.QuoteView.as_view(), name="api-quotes"),
    path("price-index/", index.PriceIndexView.as_view(), name="api-price-index"),
    path(
        "price-index/verify/", index.PriceIndexVerifyView.as_view(), name="api-price-index-verify"
    ),
    path("leases/", orders.LeaseListView.as_view(), name="api-leases"),
    path("leases/<int:pk>/", orders.LeaseDetailView.as_view(), name="api-lease"),
    path("leases/<int:pk>/end/", orders.LeaseEndView.as_view(), name="api-lease-end"),
    path("leases/<int:pk>/resell/", orders.LeaseResellView.as_view(), name="api-lease-resell"),
    path(
        "leases/<int:pk>/resell/cancel/",
        orders.LeaseResaleCancelView.as_view(),
        name="api-lease-resale-cancel",
    ),
    path("telemetry/", telemetry.TelemetryIngestView.as_view(), name="api-telemetry"),
    path("telemetry/self-test/", telemetry.SelfTestView.as_view(), name="api-telemetry-self-test"),
    path("usage-records/", telemetry.UsageRecordListView.as_view(), name="api-usage-records"),
]
