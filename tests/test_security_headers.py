"""The security headers of every page, templates the policy can run, and `check --deploy`.

The browser test (tests/test_browser_csp.py) shows the pages work under the
policy; this checks the headers, that no template holds what the policy
refuses (inline script, on* handlers, hx-on), and that Django's deployment
check is clean with the production settings of the README.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from agentloop.security_headers import POLICY

ROOT = Path(__file__).resolve().parent.parent
TEMPLATES = sorted(
    path
    for top in ("templates", "agentloop", "studio", "swarms", "skills")
    for path in (ROOT / top).rglob("*.html")
)
INLINE_SCRIPT = re.compile(r"<script(?![^>]*\bsrc=)[^>]*>", re.IGNORECASE)
HANDLER = re.compile(r"\s(on[a-z]+|hx-on[:\w-]*)\s*=", re.IGNORECASE)


def test_every_page_has_the_policy_and_the_other_headers(client, client_for, alice, project):
    for response in [
        client.get("/login/"),
        client_for(alice).get("/"),
        client_for(alice).get(f"/projects/{project.pk}/traces/"),
    ]:
        assert response["Content-Security-Policy"] == POLICY
        assert response["Permissions-Policy"].startswith("camera=()")
        assert response["X-Content-Type-Options"] == "nosniff"
        assert response["Referrer-Policy"] == "same-origin"
        assert response["X-Frame-Options"] == "DENY"
        assert response["Cross-Origin-Opener-Policy"] == "same-origin"
    assert "script-src 'self';" in POLICY and "'unsafe-eval'" not in POLICY
    assert "script-src 'self' 'unsafe-inline'" not in POLICY


def test_the_api_docs_load_nothing_from_outside(client):
    for url, bundle in (
        ("/api/docs/", "/static/drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js"),
        ("/api/redoc/", "/static/drf_spectacular_sidecar/redoc/bundles/redoc.standalone.js"),
    ):
        page = client.get(url)
        html = page.content.decode()
        assert page["Content-Security-Policy"].startswith("default-src 'self'; script-src 'self';")
        assert "https://" not in html and "<script>" not in html, url
        assert bundle in html, url


def test_no_template_has_what_the_policy_refuses():
    assert len(TEMPLATES) > 30
    found = [
        f"{path.relative_to(ROOT)}: {match.group(0).strip()}"
        for path in TEMPLATES
        for pattern in (INLINE_SCRIPT, HANDLER)
        for match in pattern.finditer(path.read_text())
    ]
    assert found == []


PRODUCTION = {
    "SECRET_KEY": "a-production-secret-key-of-more-than-fifty-characters-0123456789",
    "AGENTLOOP_FERNET_KEYS": "0Ppv7u2_2hS1Qq8r3l2Yp3b5k8v8cXyq1Z2xT3wU4sA=",
    "ALLOWED_HOSTS": "agentloop.example.com",
    "SECURE_SSL_REDIRECT": "1",
    "SECURE_HSTS_SECONDS": "31536000",
    "SECURE_HSTS_INCLUDE_SUBDOMAINS": "1",
    "SECURE_HSTS_PRELOAD": "1",
}


def check_deploy(tmp_path, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env={
            "PATH": os.environ["PATH"],
            "PYTHONPATH": str(ROOT),
            "DJANGO_SETTINGS_MODULE": "agentloop.settings",
            "AGENTLOOP_VAR_DIR": str(tmp_path / "var"),
            **env,
        },
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_check_deploy_is_clean_with_the_production_settings(tmp_path):
    answer = check_deploy(tmp_path, PRODUCTION)
    assert answer.returncode == 0, answer.stderr
    assert "System check identified no issues" in answer.stdout


def test_check_deploy_names_what_is_missing_without_tls_settings(tmp_path):
    plain = {k: v for k, v in PRODUCTION.items() if not k.startswith("SECURE_")}
    answer = check_deploy(tmp_path, plain)
    assert answer.returncode != 0
    assert "security.W004" in answer.stderr and "security.W008" in answer.stderr
