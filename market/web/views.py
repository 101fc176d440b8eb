"""Pages of the market: catalogue, find compute, the public book, quotes, my
capacity, place order (with a live estimate through htmx), my orders and
leases."""

from django import forms
from django.conf import settings
from django.contrib import messages
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.http import require_POST

from accounts.permissions import buyer_page, provider_page
from core import clock
from core.db import replica_reads
from core.errors import ApplicationError
from core.pages import form_errors_apply
from core.throttles import page_throttled
from market import capacity, leases, maintenance, orders, resale
from market import selectors as search
from market.throttles import OrderPlacementThrottle
from market.web.forms import (
    BookForm,
    DrainForm,
    NodeForm,
    OfferForm,
    OfferSearchForm,
    OrderForm,
    QuoteForm,
    RepriceForm,
    ResellForm,
    SiteForm,
)


@replica_reads
def catalogue(request: HttpRequest) -> HttpResponse:
    return render(request, "market/catalogue.html", {"models": search.gpu_models()})


@replica_reads
def find_compute(request: HttpRequest) -> HttpResponse:
    form = OfferSearchForm(request.GET or None)
    if form.is_bound and not form.is_valid():
        # A filter the exchange cannot read is said, not silently dropped (which
        # would show every offer as if it matched).
        return render(request, "market/find_compute.html", {"form": form}, status=400)
    kwargs = form.search_kwargs() if form.is_bound else {}
    page = Paginator(search.OfferResults(**kwargs), 25).get_page(request.GET.get("page"))
    query = request.GET.copy()
    query.pop("page", None)
    return render(
        request,
        "market/find_compute.html",
        {"form": form, "page": page, "query": query.urlencode()},
    )


@provider_page
def my_capacity(request: HttpRequest, provider) -> HttpResponse:
    sites = search.sites_of(provider)
    nodes = search.nodes_of(provider).order_by("site__name", "name")
    return render(
        request,
        "market/capacity.html",
        {
            "summary": search.capacity_summary(provider),
            "sites": sites,
            "nodes": nodes,
            "offers": search.offers_of(provider).order_by("status", "-created_at"),
            "leases": search.leases_of(provider).filter(provider=provider).order_by("-id")[:50],
            "site_form": SiteForm(),
            "node_form": NodeForm(sites=sites),
            "offer_form": OfferForm(sites=sites, nodes=search.nodes_of(provider)),
            "new_token": request.session.pop("new_node_token", None),
            "now": clock.now(),
        },
    )


def _capacity_form_post(request, form, create) -> HttpResponse:
    if form.is_valid():
        try:
            create(form.cleaned_data)
        except ApplicationError as error:
            form_errors_apply(form, error)
        else:
            return redirect("market:capacity")
    messages.error(request, _("Please correct the errors below."))
    return render(request, "market/capacity_form.html", {"form": form})


@provider_page
@require_POST
def site_create(request: HttpRequest, provider) -> HttpResponse:
    def create(data):
        capacity.site_create(provider=provider, **data)
        messages.success(request, _("Site added."))

    return _capacity_form_post(request, SiteForm(request.POST), create)


@provider_page
@require_POST
def node_create(request: HttpRequest, provider) -> HttpResponse:
    created = []

    def create(data):
        node, token = capacity.node_create(**data)
        # Shown once on the next page, then gone: only its digest is stored.
        request.session["new_node_token"] = {"pk": node.pk, "node": node.name, "token": token}
        created.append(node)

    form = NodeForm(request.POST, sites=search.sites_of(provider))
    response = _capacity_form_post(request, form, create)
    if created:  # the agent's command, and a live wait for its first telemetry
        return redirect("market:node_connect", pk=created[0].pk)
    return response


@provider_page
@require_POST
def node_token(request: HttpRequest, provider, pk: int, action: str) -> HttpResponse:
    """Rotate (a new token, shown once) or revoke a node's agent token."""
    node = get_object_or_404(search.nodes_of(provider), pk=pk)
    if action == "rotate":
        token = capacity.node_token_rotate(node=node)
        # Shown once on the next page, then gone: only its digest is stored.
        request.session["new_node_token"] = {"pk": node.pk, "node": node.name, "token": token}
        return redirect("market:node_connect", pk=node.pk)
    elif action == "revoke":
        capacity.node_token_revoke(node=node)
        messages.success(
            request,
            _("The agent token of node %(node)s is revoked; its agent can no longer report.")
            % {"node": node.name},
        )
    else:
        raise Http404
    return redirect("market:capacity")


@provider_page
@require_POST
def offer_create(request: HttpRequest, provider) -> HttpResponse:
    def create(data):
        data = dict(data)
        data["price_amount"] = data.pop("price")
        capacity.offer_create(provider=provider, actor=request.user, **data)
        messages.success(request, _("Offer listed."))

    form = OfferForm(request.POST, sites=search.sites_of(provider), nodes=search.nodes_of(provider))
    return _capacity_form_post(request, form, create)


OFFER_ACTIONS = {
    "pause": capacity.offer_pause,
    "resume": capacity.offer_resume,
    "withdraw": capacity.offer_withdraw,
}


@provider_page
@require_POST
def offer_action(request: HttpRequest, provider, pk: int, action: str) -> HttpResponse:
    offer = get_object_or_404(search.offers_of(provider), pk=pk)
    try:
        if action == "reprice":
            form = RepriceForm(request.POST)
            if not form.is_valid():
                raise ApplicationError(_("Enter a price above zero."))
            capacity.offer_reprice(
                offer=offer, price_amount=form.cleaned_data["price"], actor=request.user
            )
        elif action in OFFER_ACTIONS:
            OFFER_ACTIONS[action](offer=offer, actor=request.user)
        else:
            raise Http404
    except ApplicationError as error:
        messages.error(request, error.message)
    else:
        messages.success(request, _("Offer updated."))
    return redirect("market:capacity")


def book(request: HttpRequest) -> HttpResponse:
    """The public book: depth by price level per GPU model, anonymised."""
    form = BookForm(request.GET or None)
    if form.is_bound and not form.is_valid():
        return render(request, "market/book.html", {"form": form, "now": clock.now()}, status=400)
    kwargs = form.book_kwargs() if form.is_bound else {}
    return render(
        request,
        "market/book.html",
        {"form": form, "books": search.book_depth(**kwargs), "now": clock.now()},
    )


def quote(request: HttpRequest) -> HttpResponse:
    """What an order would get now, from which offers, and why the others
    would not serve it; *Order this* opens the order form filled in alike."""
    form = QuoteForm(request.GET or None)
    view = None
    if request.GET and form.is_valid():
        data = form.order_kwargs()
        view = search.order_quote_view(
            order=data, currency=settings.DEFAULT_CURRENCY, now=clock.now()
        )
    excluded = [
        (e, view.offers[e.offer_id], [(code, QUOTE_REASONS[code]) for code in e.reasons])
        for e in (view.excluded if view else [])
    ]
    return render(
        request,
        "market/quote.html",
        {"form": form, "quote": view, "excluded": excluded, "query": request.GET.urlencode()},
    )


QUOTE_REASONS = {
    "model": gettext_lazy("GPU model not accepted"),
    "currency": gettext_lazy("another currency"),
    "price": gettext_lazy("ask above your maximum price"),
    "green_share": gettext_lazy("green share below your minimum"),
    "region": gettext_lazy("province not accepted"),
    "hub": gettext_lazy("hub not accepted"),
    "unverified": gettext_lazy("not verified by a self-test"),
    "hours": gettext_lazy("lease length outside the offer's minimum / maximum"),
    "window": gettext_lazy("its window cannot hold the lease"),
    "capacity": gettext_lazy("no free GPU on an online node"),
    "gang_site": gettext_lazy("gang: this site cannot hold all GPUs, or another site costs less"),
    "not_needed": gettext_lazy("better offers already cover the order"),
}


@buyer_page
def order_new(request: HttpRequest, buyer) -> HttpResponse:
    if throttled := page_throttled(request, OrderPlacementThrottle):
        return throttled
    if request.method == "POST":
        form = OrderForm(request.POST)
    else:  # *Order this* from a quote or the board: the same fields, filled in
        form = OrderForm(initial=_initial_from(request.GET))
    form.offered_first(search.board_summary(currency=settings.DEFAULT_CURRENCY).models)
    if request.method == "POST" and form.is_valid():
        try:
            order, _created = orders.order_create(
                buyer=buyer, placed_by=request.user, **form.order_kwargs()
            )
        except ApplicationError as error:
            form_errors_apply(form, error)
        else:
            if order.time_in_force == order.TimeInForce.IMMEDIATE_OR_CANCEL:
                messages.success(
                    request,
                    _("Immediate-or-cancel order matched: %(filled)s of %(asked)s GPUs.")
                    % {"filled": order.gpus_filled, "asked": order.gpu_count},
                )
            else:
                messages.success(request, _("Order placed; matching has started."))
            return redirect("market:orders")
    return render(request, "market/order_new.html", {"form": form})


def _initial_from(query) -> dict:
    initial = {}
    for name, field in OrderForm.base_fields.items():
        if name not in query:
            continue
        multiple = isinstance(field, forms.MultipleChoiceField | forms.ModelMultipleChoiceField)
        initial[name] = query.getlist(name) if multiple else query.get(name)
    return initial


@buyer_page
def order_estimate(request: HttpRequest, buyer) -> HttpResponse:
    """The htmx partial beside the order form: what the book gives right now."""
    form = OrderForm(request.GET)
    estimate = None
    if form.is_valid():
        data = form.order_kwargs()
        estimate = search.order_estimate(
            model_ids=search.order_model_ids(data),
            gpu_count=data["gpu_count"],
            hours=data["hours"],
            max_price_amount=data["max_price_amount"],
            currency=settings.DEFAULT_CURRENCY,
            start_by=data["start_by"],
            regions=data["regions"],
            hubs=data["hubs"],
            min_green_share=data["min_green_share"],
            gang=data["gang"],
            verified_only=data["verified_only"],
            interruptible=data.get("interruptible", False),
            start_at=data.get("start_at"),
        )
    return render(
        request, "market/_estimate.html", {"estimate": estimate, "form": form, "asked": form.data}
    )


@buyer_page
def my_orders(request: HttpRequest, buyer) -> HttpResponse:
    placed = search.orders_of(buyer).order_by("-created_at")
    page = Paginator(placed, 20).get_page(request.GET.get("page"))
    leases = search.leases_of(buyer).filter(order__in=[o.pk for o in page]).order_by("id")
    by_order: dict[int, list] = {}
    for lease in leases:
        by_order.setdefault(lease.order_id, []).append(lease)
    for order in page:
        order.lease_list = by_order.get(order.pk, [])
    resales = search.open_resales(lease_ids=[lease.pk for lease in leases])
    for lease in leases:
        lease.open_resale = resales.get(lease.pk)
    return render(request, "market/orders.html", {"page": page})


@buyer_page
@require_POST
def order_cancel(request: HttpRequest, buyer, pk: int) -> HttpResponse:
    order = get_object_or_404(search.orders_of(buyer), pk=pk)
    end_running = request.POST.get("end_running_leases") in ("1", "on", "true")
    try:
        orders.order_cancel(order=order, actor=request.user, end_running_leases=end_running)
    except ApplicationError as error:
        messages.error(request, error.message)
    else:
        messages.success(request, _("Order cancelled."))
    return redirect("market:orders")


@buyer_page
@require_POST
def lease_end(request: HttpRequest, buyer, pk: int) -> HttpResponse:
    """End a lease now: billed to this second, the GPUs go back to the offer."""
    lease = get_object_or_404(search.leases_of(buyer).filter(buyer=buyer), pk=pk)
    try:
        leases.lease_end_now(lease=lease, actor=request.user)
    except ApplicationError as error:
        messages.error(request, error.message)
    else:
        messages.success(request, _("Lease %(pk)s ended.") % {"pk": lease.pk})
    return redirect("market:orders")


@buyer_page
@require_POST
def lease_resell(request: HttpRequest, buyer, pk: int, action: str) -> HttpResponse:
    """Put the rest of a lease up for resale at the buyer's ask, or take it off the book."""
    lease = get_object_or_404(search.leases_of(buyer).filter(buyer=buyer), pk=pk)
    try:
        if action == "cancel":
            resale.lease_resale_cancel(lease=lease, actor=request.user)
            messages.success(request, _("Resale of lease %(pk)s cancelled.") % {"pk": lease.pk})
        elif action == "offer":
            form = ResellForm(request.POST)
            if not form.is_valid():
                raise ApplicationError(_("Give the resale ask in yuan per GPU-hour."))
            offer = resale.lease_resell(
                lease=lease, price_amount=form.cleaned_data["price"], actor=request.user
            )
            messages.success(
                request,
                _("Lease %(pk)s is up for resale: %(gpus)s GPUs for %(hours)s hours.")
                % {"pk": lease.pk, "gpus": offer.gpus_total, "hours": offer.max_hours},
            )
        else:
            raise Http404
    except ApplicationError as error:
        messages.error(request, error.message)
    return redirect("market:orders")


@provider_page
@require_POST
def node_drain(request: HttpRequest, provider, pk: int, action: str) -> HttpResponse:
    """Announce a node's maintenance with notice, or withdraw it / end it."""
    node = get_object_or_404(search.nodes_of(provider), pk=pk)
    try:
        if action == "schedule":
            form = DrainForm(request.POST)
            if not form.is_valid():
                raise ApplicationError(_("Give the notice in minutes, 0 to 43200."))
            maintenance.node_drain_schedule(
                node=node,
                notice_minutes=form.cleaned_data["notice_minutes"],
                reason=form.cleaned_data["reason"],
                actor=request.user,
            )
        elif action == "cancel":
            maintenance.node_drain_cancel(node=node, actor=request.user)
        else:
            raise Http404
    except ApplicationError as error:
        messages.error(request, error.message)
    else:
        messages.success(request, _("Node %(node)s updated.") % {"node": node.name})
    return redirect("market:capacity")
