"""Non-human callers: a project API key or a run's service key.

DRF authentication puts a KeyPrincipal in `request.user`. It is bound to one
project and a set of scopes; the access helpers treat it like a user that can
see that project only, and only for what its scopes allow.
"""

from __future__ import annotations

from dataclasses import dataclass, field

# What a scope allows, in the access helpers' terms ("view", "use", "admin").
SCOPE_FOR_NEED = {"view": "traces:read", "use": "annotations:write"}


@dataclass(frozen=True)
class KeyPrincipal:
    project_id: int
    space_id: int
    scopes: frozenset[str]
    label: str
    key: object = field(default=None, compare=False, repr=False)
    # The project as the key check loaded it, when it did: the access helper
    # then opens the key's own project without a query of its own.
    project: object = field(default=None, compare=False, repr=False)
    # A project API key may write spans to any project of its space by name
    # (ingest creates one a resource names), so it reads and annotates them too
    # (Phoenix's client reads its "default" project with the same key). A run's
    # service key stays bound to its one project.
    space_wide: bool = False

    is_authenticated = True
    is_anonymous = False
    is_active = True
    is_staff = False
    is_superuser = False
    pk = None
    id = None

    def allows(self, need: str) -> bool:
        scope = SCOPE_FOR_NEED.get(need)
        return scope is not None and scope in self.scopes

    def has_perm(self, perm, obj=None) -> bool:
        return False

    def __str__(self) -> str:
        return self.label
