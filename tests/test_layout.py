"""The layout's rules that no import-linter contract can state."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def test_migrations_import_only_django_and_the_standard_library():
    # A migration records what the schema was; importing live app code makes an
    # old migration change (or break) when that code does.
    migrations = sorted(ROOT.glob("agentloop/*/migrations/0*.py"))
    assert migrations, "no migrations found"
    offending = {}
    for path in migrations:
        foreign = {
            name
            for name in _imported_modules(path)
            if name.split(".")[0] not in sys.stdlib_module_names and name.split(".")[0] != "django"
        }
        if foreign:
            offending[str(path.relative_to(ROOT))] = sorted(foreign)
    assert offending == {}


def test_every_setting_read_from_the_environment_is_in_the_readme():
    # settings.py reads each variable through agentloop.env's helpers.
    import re

    settings_source = (ROOT / "agentloop" / "settings.py").read_text()
    names = set(re.findall(r'env_(?:str|bool|int|list)\(\s*"([A-Z0-9_]+)"', settings_source))
    assert "DATABASE_URL" in names  # the pattern still finds them
    readme = (ROOT / "README.md").read_text()
    assert sorted(name for name in names if f"`{name}`" not in readme) == []
