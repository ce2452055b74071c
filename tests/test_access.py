"""The access helpers: what each role may see and do in a space."""

import pytest
from django.contrib.auth.models import AnonymousUser
from django.core.exceptions import PermissionDenied
from django.http import Http404

from agentloop.teams.access import (
    get_project_for_user,
    get_space_for_user,
    projects_for_user,
    spaces_for_user,
)
from agentloop.teams.models import Membership, Role

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    "who,view,use,admin",
    [
        ("owner", True, True, True),
        ("member", True, True, False),
        ("viewer", True, False, False),
    ],
)
def test_each_role_gets_what_it_may(users, project, who, view, use, admin):
    user = users[who]
    for need, allowed in (("view", view), ("use", use), ("admin", admin)):
        if allowed:
            assert get_project_for_user(user, project.pk, need) == project
        else:
            with pytest.raises(PermissionDenied):
                get_project_for_user(user, project.pk, need)


def test_an_outsider_cannot_tell_the_project_exists(dave, project):
    with pytest.raises(Http404):
        get_project_for_user(dave, project.pk, "view")
    with pytest.raises(Http404):
        get_space_for_user(dave, project.space_id, "view")


def test_anonymous_sees_nothing(project):
    with pytest.raises(Http404):
        get_project_for_user(AnonymousUser(), project.pk)
    assert list(spaces_for_user(AnonymousUser())) == []


def test_a_user_lists_only_their_spaces(alice, dave, space, other_space, project, other_project):
    assert list(spaces_for_user(alice)) == [space]
    assert list(projects_for_user(dave)) == [other_project]


def test_changing_a_role_changes_permissions(bob, project):
    membership = Membership.objects.get(user=bob, space=project.space)
    membership.role = Role.VIEWER
    membership.save()
    bob = type(bob).objects.get(pk=bob.pk)  # fresh object: guardian caches perms per instance
    with pytest.raises(PermissionDenied):
        get_project_for_user(bob, project.pk, "use")


def test_removing_a_member_hides_the_space(bob, project):
    Membership.objects.get(user=bob, space=project.space).delete()
    bob = type(bob).objects.get(pk=bob.pk)
    with pytest.raises(Http404):
        get_project_for_user(bob, project.pk)


def test_unknown_ids_are_404(alice):
    with pytest.raises(Http404):
        get_project_for_user(alice, 999999)
    with pytest.raises(Http404):
        get_project_for_user(alice, "not-a-number")
