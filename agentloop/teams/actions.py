"""What people do to spaces, members, projects and API keys.

Views check access (agentloop.teams.access) and validate input (forms), then call
exactly one of these. An action either does all of its work or raises
ActionError with a message fit to show the user, having stored nothing.
"""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.db import IntegrityError, transaction

from agentloop.teams.models import Membership, Project, ProjectApiKey, Role, Space, UserSettings


class ActionError(Exception):
    """A refusal the user should read, e.g. "Acme must keep at least one admin."."""


def create_space(name: str, owner) -> Space:
    return Space.create_with_owner(name, owner)


def find_user(username_or_email: str):
    """The user with this username (exact) or, failing that, this email (any case)."""
    User = get_user_model()
    wanted = username_or_email.strip()
    user = User.objects.filter(username=wanted, is_active=True).first()
    if user is not None:
        return user
    by_email = list(User.objects.filter(email__iexact=wanted, is_active=True)[:2])
    if len(by_email) == 1:
        return by_email[0]
    if len(by_email) > 1:
        raise ActionError(f"Several users have the email {wanted}; invite them by username.")
    raise ActionError(f"No user has the username or email {wanted}.")


@transaction.atomic
def invite_member(space: Space, username_or_email: str, role: str) -> Membership:
    user = find_user(username_or_email)
    if space.memberships.filter(user=user).exists():
        raise ActionError(f"{user.get_username()} is already a member of {space.name}.")
    try:
        with transaction.atomic():
            return Membership.objects.create(space=space, user=user, role=Role(role))
    except IntegrityError:
        # Two admins inviting the same person at once: the constraint decides.
        raise ActionError(f"{user.get_username()} is already a member of {space.name}.") from None


def _lock_memberships(space: Space) -> list[Membership]:
    # Lock every membership row of the space so two admins demoting each other
    # at the same moment cannot leave the space without an admin.
    return list(space.memberships.select_for_update().order_by("pk"))


def _membership(memberships: list[Membership], membership_id) -> Membership:
    for membership in memberships:
        if str(membership.pk) == str(membership_id):
            return membership
    raise ActionError("That person is not a member of this space.")


def _admins_besides(memberships: list[Membership], membership: Membership) -> int:
    return sum(1 for m in memberships if m.role == Role.ADMIN and m.pk != membership.pk)


@transaction.atomic
def change_role(space: Space, membership_id, role: str) -> Membership:
    memberships = _lock_memberships(space)
    membership = _membership(memberships, membership_id)
    role = Role(role)
    if membership.role == Role.ADMIN and role != Role.ADMIN:
        if _admins_besides(memberships, membership) == 0:
            raise ActionError(
                f"{space.name} must keep at least one admin: make someone else admin first."
            )
    if membership.role != role:
        membership.role = role
        membership.save()
    return membership


@transaction.atomic
def remove_member(space: Space, membership_id) -> Membership:
    memberships = _lock_memberships(space)
    membership = _membership(memberships, membership_id)
    if membership.role == Role.ADMIN and _admins_besides(memberships, membership) == 0:
        raise ActionError(
            f"{space.name} must keep at least one admin: make someone else admin first."
        )
    membership.delete()
    return membership


def set_refuse_unknown_projects(space: Space, refuse: bool) -> Space:
    space.refuse_unknown_projects = refuse
    space.save(update_fields=["refuse_unknown_projects"])
    return space


def set_retention(project: Project, days: int | None) -> Project:
    project.retention_days = days
    project.save(update_fields=["retention_days"])
    return project


def create_project(space: Space, name: str, description: str = "") -> Project:
    try:
        with transaction.atomic():
            return Project.objects.create(space=space, name=name, description=description)
    except IntegrityError:
        raise ActionError(f"{space.name} already has a project named {name}.") from None


def create_api_key(project: Project, name: str, created_by) -> tuple[ProjectApiKey, str]:
    """The new key and its raw value, which exists only in this return value."""
    return ProjectApiKey.mint(project, name, created_by=created_by)


def revoke_api_key(project: Project, key_id) -> ProjectApiKey:
    key = project.api_keys.filter(pk=key_id).first()
    if key is None:
        raise ActionError("No such key in this project.")
    key.revoke()
    return key


def set_time_zone(user, name: str) -> None:
    """The zone the person's pages show times in (an IANA name the form checked)."""
    UserSettings.objects.update_or_create(user=user, defaults={"time_zone": name})


def create_personal_token(user, name: str, expires_in_days: int | None, spaces=()):
    """(token, raw): the raw token is for showing once, never stored."""
    from datetime import timedelta

    from django.utils import timezone

    from agentloop.teams.models import PersonalToken

    expires_at = timezone.now() + timedelta(days=expires_in_days) if expires_in_days else None
    return PersonalToken.mint(user, name, expires_at=expires_at, spaces=spaces)


def revoke_personal_token(user, token_id):
    """Revoke one of the user's own tokens (someone else's is not found)."""
    from agentloop.teams.models import PersonalToken

    token = PersonalToken.objects.filter(user=user, pk=token_id).first()
    if token is None:
        raise ActionError("No such token.")
    token.revoke()
    return token
