"""API token authentication: knox's, minus a read of the user's other tokens
on every request.

knox's `_cleanup_token` loads all of the user's tokens on each request to
delete the expired ones among them. Here they are deleted when the user next
creates a token (`accounts.services.api_token_create`), and the token list
shows unexpired tokens only, so an expired token costs nothing but a row.
The presented token itself is still checked: expired, it is deleted and
refused, as knox does.
"""

from drf_spectacular.contrib.knox_auth_token import KnoxTokenScheme
from knox.auth import TokenAuthentication as KnoxTokenAuthentication
from knox.signals import token_expired

from core import clock


class TokenAuthentication(KnoxTokenAuthentication):
    def _cleanup_token(self, auth_token) -> bool:
        if auth_token.expiry is not None and auth_token.expiry < clock.now():
            username = auth_token.user.get_username()
            auth_token.delete()
            token_expired.send(sender=self.__class__, username=username, source="auth_token")
            return True
        return False


class TokenScheme(KnoxTokenScheme):
    """The OpenAPI security scheme knox's class has (`Authorization: Token …`)."""

    target_class = "accounts.authentication.TokenAuthentication"
