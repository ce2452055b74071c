"""DRF authentication by a run's service key (`al_sk_…`). Filled in by the runs work."""

from rest_framework import authentication


class ServiceKeyAuthentication(authentication.BaseAuthentication):
    def authenticate(self, request):
        return None
