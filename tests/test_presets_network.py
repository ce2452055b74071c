"""A preset's network: runner-only with an allow-list for the egress proxy, or open —
labelled for trusted workloads only — and what a run started from it gets."""

from __future__ import annotations

from agentloop.presets.actions import preset_to_config
from agentloop.presets.models import AgentPreset
from agentloop.runs.config import normalize_config
from tests.test_presets_pages import form_data, make_skill


def test_the_form_labels_open_as_trusted_only_and_stores_the_allow_list(client_for, alice, space):
    form = client_for(alice).get(f"/studio/presets/space/{space.pk}/new/").content.decode()
    assert "Open (trusted workloads only)" in form
    assert "including services bound to its loopback" in form

    gh = make_skill(space)
    response = client_for(alice).post(
        f"/studio/presets/space/{space.pk}/new/",
        form_data(
            skills=[gh.pk],
            repository_url="https://github.com/acme/shop",
            egress_hosts_text="pypi.org\n*.pythonhosted.org, registry.npmjs.org:443",
        ),
    )

    assert response.status_code == 302
    preset = AgentPreset.objects.get(name="Investigator")
    assert preset.network == ""
    assert preset.egress_hosts == ["pypi.org", "*.pythonhosted.org", "registry.npmjs.org:443"]
    snapshot, _ = normalize_config(preset_to_config(preset))
    assert snapshot["network"] == "runner-only"
    assert snapshot["egress_hosts"] == [
        "pypi.org", "*.pythonhosted.org", "registry.npmjs.org:443", "github.com",
    ]  # fmt: skip
    detail = client_for(alice).get(f"/studio/presets/{preset.pk}/").content.decode()
    assert "through the egress proxy" in detail and "pypi.org" in detail


def test_an_open_preset_says_so_on_its_page(client_for, alice, space):
    response = client_for(alice).post(
        f"/studio/presets/space/{space.pk}/new/", form_data(network="open")
    )

    assert response.status_code == 302
    preset = AgentPreset.objects.get(name="Investigator")
    assert normalize_config(preset_to_config(preset))[0]["network"] == "open"
    detail = client_for(alice).get(f"/studio/presets/{preset.pk}/").content.decode()
    assert "open — trusted workloads only" in detail


def test_a_bad_allowed_host_is_explained_on_the_form_and_nothing_is_stored(
    client_for, alice, space
):
    response = client_for(alice).post(
        f"/studio/presets/space/{space.pk}/new/", form_data(egress_hosts_text="pypi.org, a b")
    )

    assert response.status_code == 400
    assert "is not a host name" in response.content.decode()
    assert not AgentPreset.objects.exists()
