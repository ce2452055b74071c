"""A local double of the few Kubernetes API calls the sandbox provider makes.

A threaded HTTP server on 127.0.0.1 that answers the real REST paths and JSON
shapes of the core/v1 API for namespaced Pods and Secrets (and of
networking.k8s.io/v1 for NetworkPolicies), so a real
`kubernetes.client.ApiClient` pointed at it (Configuration.host = double.url)
goes through its whole request/response code path:

  POST   /api/v1/namespaces/{ns}/{pods|secrets}          201, 409 AlreadyExists, 422 Invalid
         (and the same four verbs of /apis/networking.k8s.io/v1/namespaces/{ns}/networkpolicies)
  GET    /api/v1/namespaces/{ns}/{pods|secrets}/{name}   200, 404 NotFound
  PATCH  /api/v1/namespaces/{ns}/{pods|secrets}/{name}   200 (merge of metadata), 404, 415
  DELETE /api/v1/namespaces/{ns}/{pods|secrets}/{name}   200, 404 NotFound
  GET    /api/v1/namespaces/{ns}/pods/{name}/log         200 text/plain, 404

Like the API server it assigns uid/resourceVersion/creationTimestamp, turns a
Secret's stringData into base64 data, starts Pods in phase Pending, and on a
graceful Pod delete only marks it terminating (the kubelet removes it later:
`kubelet_finishes`). Unknown namespaces answer 404. It does no scheduling and
no garbage collection: tests drive phases with `set_phase`.

Every request is recorded in `calls` (method, path, query, body).
"""

from __future__ import annotations

import base64
import copy
import json
import re
import threading
import uuid
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

PATH_RE = re.compile(
    r"^(?:/api/v1/namespaces/(?P<ns>[^/]+)/(?P<kind>pods|secrets)"
    r"|/apis/networking\.k8s\.io/v1/namespaces/(?P<netns>[^/]+)/(?P<netkind>networkpolicies))"
    r"(?:/(?P<name>[^/]+)(?P<log>/log)?)?$"
)
DNS_SUBDOMAIN_RE = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")
LABEL_VALUE_RE = re.compile(r"^([A-Za-z0-9]([A-Za-z0-9_.-]{0,61}[A-Za-z0-9])?)?$")
KIND = {"pods": "Pod", "secrets": "Secret", "networkpolicies": "NetworkPolicy"}
PATCH_TYPES = {
    "application/merge-patch+json",
    "application/strategic-merge-patch+json",
}


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _status(code: int, reason: str, message: str, details: dict | None = None) -> dict:
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Success" if code < 400 else "Failure",
        "message": message,
        "reason": reason,
        "details": details or {},
        "code": code,
    }


def _merge(target: dict, patch: dict) -> dict:
    """JSON merge patch (RFC 7386): dicts merge, None deletes, anything else replaces."""
    for key, value in patch.items():
        if value is None:
            target.pop(key, None)
        elif isinstance(value, dict) and isinstance(target.get(key), dict):
            _merge(target[key], value)
        else:
            target[key] = copy.deepcopy(value)
    return target


class KubernetesDouble:
    def __init__(self, namespaces=("agentloop-runs",)):
        self.namespaces = set(namespaces)
        self.objects: dict[tuple[str, str, str], dict] = {}  # (kind, ns, name) -> object
        self.logs: dict[tuple[str, str], str] = {}
        self.calls: list[dict] = []
        self.lock = threading.Lock()
        self._resource_version = 0
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> KubernetesDouble:
        self.thread.start()
        return self

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    # -- what tests use to play the cluster's part --------------------------------

    def pod(self, name: str, ns: str = "agentloop-runs") -> dict | None:
        return self.objects.get(("pods", ns, name))

    def secret(self, name: str, ns: str = "agentloop-runs") -> dict | None:
        return self.objects.get(("secrets", ns, name))

    def network_policy(self, name: str, ns: str = "agentloop-runs") -> dict | None:
        return self.objects.get(("networkpolicies", ns, name))

    def set_phase(
        self,
        name: str,
        phase: str,
        exit_code: int | None = None,
        reason: str | None = None,
        ns: str = "agentloop-runs",
    ) -> None:
        """Play the kubelet: move a Pod to phase, with its container's exit code."""
        with self.lock:
            pod = self.objects[("pods", ns, name)]
            container = pod["spec"]["containers"][0]["name"]
            state: dict = {"waiting": {"reason": "ContainerCreating"}}
            if phase == "Running":
                state = {"running": {"startedAt": _now()}}
            elif phase in ("Succeeded", "Failed") and exit_code is not None:
                state = {
                    "terminated": {
                        "exitCode": exit_code,
                        "reason": "Completed" if exit_code == 0 else "Error",
                        "startedAt": _now(),
                        "finishedAt": _now(),
                    }
                }
            pod["status"] = {
                "phase": phase,
                "containerStatuses": [
                    {
                        "name": container,
                        "image": pod["spec"]["containers"][0]["image"],
                        "imageID": "",
                        "ready": phase == "Running",
                        "restartCount": 0,
                        "state": state,
                    }
                ],
            }
            if reason:
                pod["status"]["reason"] = reason

    def kubelet_finishes(self, name: str, ns: str = "agentloop-runs") -> None:
        """The grace period of a terminating Pod is over: it disappears."""
        with self.lock:
            self.objects.pop(("pods", ns, name), None)

    def calls_summary(self) -> list[str]:
        """['POST secrets', 'POST pods', 'PATCH secrets/x', ...] — the call sequence."""
        summary = []
        for call in self.calls:
            m = PATH_RE.match(call["path"])
            if not m:
                summary.append(f"{call['method']} {call['path']}")
                continue
            kind = m["kind"] or m["netkind"]
            target = kind + (f"/{m['name']}" if m["name"] else "") + (m["log"] or "")
            summary.append(f"{call['method']} {target}")
        return summary

    # -- the API server ---------------------------------------------------------------

    def _next_version(self) -> str:
        self._resource_version += 1
        return str(self._resource_version)

    def handle(self, method: str, path: str, query: dict, body, content_type: str):
        """-> (code, json-able body or str)."""
        self.calls.append({"method": method, "path": path, "query": query, "body": body})
        m = PATH_RE.match(path)
        if not m:
            return 404, _status(404, "NotFound", "the server could not find the requested resource")
        ns, kind, name = m["ns"] or m["netns"], m["kind"] or m["netkind"], m["name"]
        if ns not in self.namespaces:
            return 404, _status(
                404, "NotFound", f'namespaces "{ns}" not found', {"name": ns, "kind": "namespaces"}
            )
        with self.lock:
            if method == "POST" and not name:
                return self._create(ns, kind, body)
            if not name:
                return 405, _status(405, "MethodNotAllowed", "not implemented by the double")
            key = (kind, ns, name)
            if key not in self.objects:
                return 404, _status(
                    404, "NotFound", f'{kind} "{name}" not found', {"name": name, "kind": kind}
                )
            if m["log"]:
                if kind != "pods":
                    return 404, _status(404, "NotFound", "the server could not find the resource")
                return (200, self.logs.get((ns, name), "")) if method == "GET" else (405, {})
            if method == "GET":
                return 200, self.objects[key]
            if method == "PATCH":
                if content_type not in PATCH_TYPES:
                    return 415, _status(
                        415,
                        "UnsupportedMediaType",
                        f"the body of the request was in an unknown format: {content_type}",
                    )
                obj = self.objects[key]
                _merge(obj, {k: v for k, v in body.items() if k in ("metadata", "spec", "data")})
                obj["metadata"]["resourceVersion"] = self._next_version()
                return 200, obj
            if method == "DELETE":
                return self._delete(key, query, body)
        return 405, _status(405, "MethodNotAllowed", "not implemented by the double")

    def _create(self, ns: str, kind: str, body: dict):
        problems = self._validate(kind, body)
        meta = body.get("metadata") or {}
        name = meta.get("name", "")
        if problems:
            return 422, _status(
                422,
                "Invalid",
                f'{KIND[kind]} "{name}" is invalid: ' + "; ".join(problems),
                {"name": name, "kind": kind},
            )
        if meta.get("namespace", ns) != ns:
            return 400, _status(
                400,
                "BadRequest",
                "the namespace of the object does not match the namespace on the request",
            )
        key = (kind, ns, name)
        if key in self.objects:
            return 409, _status(
                409,
                "AlreadyExists",
                f'{kind} "{name}" already exists',
                {"name": name, "kind": kind},
            )
        obj = copy.deepcopy(body)
        obj["metadata"].update(
            {
                "namespace": ns,
                "uid": str(uuid.uuid4()),
                "resourceVersion": self._next_version(),
                "creationTimestamp": _now(),
            }
        )
        if kind == "networkpolicies":
            pass  # no status
        elif kind == "secrets":
            data = obj.setdefault("data", {})
            for k, v in (obj.pop("stringData", None) or {}).items():
                data[k] = base64.b64encode(v.encode()).decode()
            obj.setdefault("type", "Opaque")
        else:
            obj["status"] = {"phase": "Pending", "qosClass": "Guaranteed"}
        self.objects[key] = obj
        return 201, obj

    def _delete(self, key, query: dict, body):
        kind, ns, name = key
        obj = self.objects[key]
        if kind != "pods":
            del self.objects[key]
            return 200, _status(
                200, "", "", {"name": name, "kind": kind, "uid": obj["metadata"]["uid"]}
            )
        grace = query.get("gracePeriodSeconds")
        if grace is None and isinstance(body, dict):
            grace = body.get("gracePeriodSeconds")
        if grace is None:
            grace = obj["spec"].get("terminationGracePeriodSeconds", 30)
        grace = int(grace)
        if grace == 0 or obj["status"].get("phase") in ("Pending", "Succeeded", "Failed"):
            del self.objects[key]  # nothing to wait for (not running, or forced)
            return 200, obj
        obj["metadata"]["deletionTimestamp"] = _now()
        obj["metadata"]["deletionGracePeriodSeconds"] = grace
        return 200, obj

    @staticmethod
    def _validate(kind: str, body) -> list[str]:
        if not isinstance(body, dict):
            return ["body: must be an object"]
        problems = []
        meta = body.get("metadata") or {}
        if body.get("kind") not in (None, KIND[kind]):
            problems.append(f"kind: must be {KIND[kind]}")
        if not DNS_SUBDOMAIN_RE.match(meta.get("name") or ""):
            problems.append(
                "metadata.name: Invalid value: a lowercase RFC 1123 subdomain is required"
            )
        for v in (meta.get("labels") or {}).values():
            if not LABEL_VALUE_RE.match(str(v)):
                problems.append(f"metadata.labels: Invalid value: {v!r}")
        if kind == "networkpolicies" and "podSelector" not in (body.get("spec") or {}):
            problems.append("spec.podSelector: Required value")
        if kind == "pods":
            spec = body.get("spec") or {}
            containers = spec.get("containers") or []
            if not containers:
                problems.append("spec.containers: Required value")
            for i, c in enumerate(containers):
                for field in ("name", "image"):
                    if not c.get(field):
                        problems.append(f"spec.containers[{i}].{field}: Required value")
            if spec.get("restartPolicy", "Always") not in ("Always", "OnFailure", "Never"):
                problems.append("spec.restartPolicy: Unsupported value")
        return problems

    def _handler_class(self):
        double = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet test output
                pass

            def _serve(self, method):
                parts = urlsplit(self.path)
                query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                content_type = (self.headers.get("Content-Type") or "").split(";")[0].strip()
                try:
                    body = json.loads(raw) if raw else None
                except ValueError:
                    code, answer = 400, _status(400, "BadRequest", "invalid JSON body")
                else:
                    code, answer = double.handle(method, parts.path, query, body, content_type)
                if isinstance(answer, str):
                    payload, ctype = answer.encode(), "text/plain"
                else:
                    payload, ctype = json.dumps(answer).encode(), "application/json"
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def do_GET(self):
                self._serve("GET")

            def do_POST(self):
                self._serve("POST")

            def do_PATCH(self):
                self._serve("PATCH")

            def do_DELETE(self):
                self._serve("DELETE")

        return Handler
