"""Re-encrypt every stored secret under the current (first) key.

Covers skill secrets and the runs' secret env. Each row is rewritten with a
conditional UPDATE on the ciphertext it was read with, so a concurrent edit is
never overwritten with stale data (it is already under the current key anyway).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from agentloop.runs.models import Run
from agentloop.skills import crypto
from agentloop.skills.models import Skill

# (model, field) pairs holding MultiFernet ciphertexts.
ENCRYPTED_FIELDS = ((Skill, "secrets_encrypted"), (Run, "secret_env_encrypted"))


@dataclass
class RotationResult:
    rotated: dict[str, int] = field(default_factory=dict)
    unreadable: list[str] = field(default_factory=list)  # "skills.Skill 12"


def rotate_all(batch_size: int = 500) -> RotationResult:
    result = RotationResult()
    for model, name in ENCRYPTED_FIELDS:
        label = model._meta.label
        result.rotated[label] = 0
        rows = model.objects.exclude(**{name: ""}).values_list("pk", name)
        for pk, ciphertext in rows.iterator(chunk_size=batch_size):
            try:
                fresh = crypto.rotate(ciphertext)
            except crypto.SecretsUnreadable:
                result.unreadable.append(f"{label} {pk}")
                continue
            result.rotated[label] += model.objects.filter(pk=pk, **{name: ciphertext}).update(
                **{name: fresh}
            )
    return result
