"""Rate limits on the market's writes (rates: settings.THROTTLE_RATES)."""

from accounts.throttles import OrganisationThrottle
from core.throttles import ClientAddressThrottle, WriteRateThrottle


class OrderPlacementThrottle(OrganisationThrottle):
    """Orders placed by one buyer organisation, all its members and tokens together."""

    scope = "orders"


class TelemetryThrottle(WriteRateThrottle):
    """Telemetry batches from one node (its agent token's node)."""

    scope = "telemetry"

    def ident(self, request) -> str | None:
        node = request.auth
        return None if node is None else str(node.pk)


class QuoteThrottle(ClientAddressThrottle):
    """Quotes asked from one client address (each reads the whole live book)."""

    scope = "quotes"
