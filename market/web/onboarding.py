"""Node onboarding: after a node is created (or its token renewed), the exact
command that starts its agent, and a live wait until the agent's first
telemetry turns the node from *awaiting agent* to *online*."""

from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, render

from accounts.permissions import provider_page
from market import selectors as search
from market.models import Node

# htmx stops polling on this status: the node has left *awaiting agent*.
HTMX_STOP_POLLING = 286


def agent_command(*, url: str, token: str) -> str:
    """The agent's start command, its token in the environment (a command line is
    visible to every user of the machine; agent/cli.py reads EXCHANGE_NODE_TOKEN)."""
    return f"EXCHANGE_NODE_TOKEN='{token}' exchange-agent --url {url}"


def _exchange_url(request: HttpRequest) -> str:
    return request.build_absolute_uri("/").rstrip("/")


@provider_page
def node_connect(request: HttpRequest, provider, pk: int) -> HttpResponse:
    node = get_object_or_404(search.nodes_of(provider).select_related("site", "gpu_model"), pk=pk)
    shown = request.session.get("new_node_token") or {}
    token = None
    if shown.get("pk") == node.pk:  # shown once, then gone: only its digest is stored
        token = request.session.pop("new_node_token")["token"]
    url = _exchange_url(request)
    return render(
        request,
        "market/node_connect.html",
        {
            "node": node,
            "command": agent_command(url=url, token=token) if token else None,
            "command_without_token": agent_command(url=url, token="<token>"),  # noqa: S106
        },
    )


@provider_page
def node_status(request: HttpRequest, provider, pk: int) -> HttpResponse:
    """The htmx partial the onboarding page polls: the node's state and whether its
    agent ever connected; polling stops once the node is past *awaiting agent*."""
    node = get_object_or_404(search.nodes_of(provider), pk=pk)
    waiting = node.state == Node.State.AWAITING_AGENT
    response = render(request, "market/_node_status.html", {"node": node, "waiting": waiting})
    if not waiting and request.htmx:
        response.status_code = HTMX_STOP_POLLING
    return response
