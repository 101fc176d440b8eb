from django.urls import path

from market import api_market as api

urlpatterns = [
    path("gpu-models/", api.GPUModelListView.as_view(), name="api-gpu-models"),
    path("gpu-models/<slug:slug>/", api.GPUModelDetailView.as_view(), name="api-gpu-model"),
    path("sites/", api.SiteListCreateView.as_view(), name="api-sites"),
    path("sites/<int:pk>/", api.SiteDetailView.as_view(), name="api-site"),
    path("nodes/", api.NodeListCreateView.as_view(), name="api-nodes"),
    path("nodes/<int:pk>/", api.NodeDetailView.as_view(), name="api-node"),
    path(
        "nodes/<int:pk>/token/rotate/",
        api.NodeTokenRotateView.as_view(),
        name="api-node-token-rotate",
    ),
    path(
        "nodes/<int:pk>/token/revoke/",
        api.NodeTokenRevokeView.as_view(),
        name="api-node-token-revoke",
    ),
    path("offers/", api.OfferListCreateView.as_view(), name="api-offers"),
    path("offers/mine/", api.OfferMineView.as_view(), name="api-offers-mine"),
    path("offers/<int:pk>/", api.OfferDetailView.as_view(), name="api-offer"),
    path("offers/<int:pk>/pause/", api.OfferPauseView.as_view(), name="api-offer-pause"),
    path("offers/<int:pk>/resume/", api.OfferResumeView.as_view(), name="api-offer-resume"),
    path("offers/<int:pk>/withdraw/", api.OfferWithdrawView.as_view(), name="api-offer-withdraw"),
    path("orders/", api.OrderListCreateView.as_view(), name="api-orders"),
    path("orders/<int:pk>/", api.OrderDetailView.as_view(), name="api-order"),
    path("orders/<int:pk>/cancel/", api.OrderCancelView.as_view(), name="api-order-cancel"),
    path("leases/", api.LeaseListView.as_view(), name="api-leases"),
    path("leases/<int:pk>/", api.LeaseDetailView.as_view(), name="api-lease"),
]
