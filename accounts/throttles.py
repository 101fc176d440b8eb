"""Rate limits on signing in, signing up and making API tokens (rates: settings.THROTTLE_RATES)."""

from accounts.selectors import organisation_for_user
from core.throttles import ClientAddressThrottle, UserThrottle, WriteRateThrottle


class TokenObtainThrottle(ClientAddressThrottle):
    """Username + password exchanged for a token, per client address (guessing across
    many usernames; the lockout holds one username)."""

    scope = "auth-token"


class SignUpThrottle(ClientAddressThrottle):
    """Accounts and organisations registered, per client address (page and API)."""

    scope = "sign-up"


class TokenCreateThrottle(UserThrottle):
    """API tokens made by a signed-in user (account page and API)."""

    scope = "token-create"


class OrganisationThrottle(WriteRateThrottle):
    """Counted per organisation: all its members share one budget."""

    def ident(self, request) -> str | None:
        organisation = organisation_for_user(request.user)
        return None if organisation is None else str(organisation.pk)


class WebhookThrottle(OrganisationThrottle):
    """Webhook endpoints made or changed, test events and redeliveries, per
    organisation: each one makes the exchange call a URL of its choosing."""

    scope = "webhooks"
