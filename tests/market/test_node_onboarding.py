"""Node onboarding: the agent's exact command (token in the environment), then a
live wait until its first telemetry turns the node online."""

import json
import re
import time

import pytest

from market.models import Node
from tests.factories import SiteFactory, gpu
from tests.market.telemetry.conftest import sample

pytestmark = pytest.mark.django_db


def test_a_new_node_shows_the_agents_command_once_and_waits_for_its_telemetry(
    client, provider, provider_org
):
    site = SiteFactory(provider=provider_org)
    client.force_login(provider)
    client.cookies["django_language"] = "en"

    created = client.post(
        "/market/capacity/nodes/",
        {"site": site.pk, "name": "zw-07", "gpu_model": gpu("nvidia-h20").pk, "gpu_count": 2},
    )

    node = Node.objects.get(site=site)
    assert created["Location"] == f"/market/capacity/nodes/{node.pk}/connect/"
    page = client.get(created["Location"]).content.decode()
    command = re.search(r'<code class="command" id="agent-command">([^<]+)</code>', page).group(1)
    token = re.fullmatch(
        r"EXCHANGE_NODE_TOKEN=&#x27;(\S+)&#x27; exchange-agent --url http://testserver", command
    ).group(1)
    assert token.startswith(f"{node.pk}.")
    assert "awaiting agent" in page and "Waiting for the agent's first telemetry" in page
    assert 'hx-trigger="every 2s"' in page
    # shown once: the page again has no token
    assert token not in client.get(created["Location"]).content.decode()

    # the agent posts its first batch with that token
    answer = client.post(
        "/api/v1/telemetry/",
        data=json.dumps({"samples": [sample(1, ts=time.time())]}),
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Node {token}",
    )
    assert answer.status_code in (200, 201, 202), answer.content

    status = client.get(f"/market/capacity/nodes/{node.pk}/status/", HTTP_HX_REQUEST="true")
    assert status.status_code == 286  # htmx stops polling
    text = status.content.decode()
    assert "online" in text and "The agent connected" in text and "hx-trigger" not in text
    assert "connected · last telemetry" in client.get(f"/nodes/{node.pk}/health/").content.decode()


def test_a_node_whose_agent_never_reported_says_so(client, provider, provider_org):
    from tests.factories import NodeFactory

    node = NodeFactory(site=SiteFactory(provider=provider_org), state=Node.State.AWAITING_AGENT)
    client.force_login(provider)
    client.cookies["django_language"] = "en"

    assert (
        "its agent has never connected" in client.get(f"/nodes/{node.pk}/health/").content.decode()
    )
    capacity = client.get("/market/capacity/").content.decode()
    assert "agent never connected" in capacity
    assert f'href="/market/capacity/nodes/{node.pk}/connect/"' in capacity
