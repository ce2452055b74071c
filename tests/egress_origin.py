"""An outside host for the egress proxy tests: run inside a network namespace the test creates.

    python egress_origin.py <port> <git_root> <public_name>

Serves, over plain HTTP:
- /hello                     a greeting;
- /git/<repo>/...            git's smart HTTP protocol (git http-backend): clone and push;
- /simple/alhello/, /files/  a PEP 503 package index with one hand-built wheel (pip);
- /alhello, /alhello/-/…     an npm registry with one package (npm).
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import subprocess
import sys
import tarfile
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PORT, GIT_ROOT, NAME = int(sys.argv[1]), sys.argv[2], sys.argv[3]


def build_wheel() -> bytes:
    files = {
        "alhello/__init__.py": b"GREETING = 'hello from a wheel'\n",
        "alhello-1.0.dist-info/METADATA": b"Metadata-Version: 2.1\nName: alhello\nVersion: 1.0\n",
        "alhello-1.0.dist-info/WHEEL": b"Wheel-Version: 1.0\nGenerator: agentloop-tests\n"
        b"Root-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = []
    for name, data in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record.append(f"{name},sha256={digest},{len(data)}")
    record.append("alhello-1.0.dist-info/RECORD,,")
    files["alhello-1.0.dist-info/RECORD"] = ("\n".join(record) + "\n").encode()
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as wheel:
        for name, data in files.items():
            wheel.writestr(name, data)
    return buffer.getvalue()


def build_npm_tarball() -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, data in {
            "package/package.json": json.dumps(
                {"name": "alhello", "version": "1.0.0", "main": "index.js"}
            ).encode(),
            "package/index.js": b"module.exports = 'hello from npm';\n",
        }.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


WHEEL = build_wheel()
TARBALL = build_npm_tarball()
WHEEL_NAME = "alhello-1.0-py3-none-any.whl"


def npm_metadata() -> bytes:
    integrity = "sha512-" + base64.b64encode(hashlib.sha512(TARBALL).digest()).decode()
    version = {
        "name": "alhello",
        "version": "1.0.0",
        "dist": {
            "tarball": f"http://{NAME}/alhello/-/alhello-1.0.0.tgz",
            "shasum": hashlib.sha1(TARBALL).hexdigest(),
            "integrity": integrity,
        },
    }
    return json.dumps(
        {"name": "alhello", "dist-tags": {"latest": "1.0.0"}, "versions": {"1.0.0": version}}
    ).encode()


class Origin(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def _send(self, status: int, body: bytes, content_type: str = "text/plain") -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        path = self.path.split("?")[0]
        if path.startswith("/git/"):
            return self._git()
        if path == "/hello":
            return self._send(200, f"hello from {NAME} via {self.headers['Host']}".encode())
        if path in ("/simple/alhello/", "/simple/alhello"):
            link = f'<a href="/files/{WHEEL_NAME}#sha256={hashlib.sha256(WHEEL).hexdigest()}">'
            return self._send(200, f"<html><body>{link}{WHEEL_NAME}</a></body></html>".encode(),
                              "text/html")  # fmt: skip
        if path == f"/files/{WHEEL_NAME}":
            return self._send(200, WHEEL, "application/octet-stream")
        if path == "/alhello":
            return self._send(200, npm_metadata(), "application/json")
        if path == "/alhello/-/alhello-1.0.0.tgz":
            return self._send(200, TARBALL, "application/octet-stream")
        return self._send(404, b"not here")

    def do_POST(self):
        if self.path.startswith("/git/"):
            return self._git()
        return self._send(404, b"not here")

    def _git(self):
        """git http-backend as a CGI script."""
        path, _, query = self.path[len("/git") :].partition("?")
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "GIT_PROJECT_ROOT": GIT_ROOT,
            "GIT_HTTP_EXPORT_ALL": "1",
            "REMOTE_USER": "agent",  # lets receive-pack (push) run
            "REQUEST_METHOD": self.command,
            "PATH_INFO": path,
            "QUERY_STRING": query,
            "CONTENT_TYPE": self.headers.get("Content-Type", ""),
            "CONTENT_LENGTH": str(len(body)),
            "GIT_HTTP_MAX_REQUEST_BUFFER": "100M",
        }
        if self.headers.get("Content-Encoding"):
            env["HTTP_CONTENT_ENCODING"] = self.headers["Content-Encoding"]
        if self.headers.get("Git-Protocol"):
            env["GIT_PROTOCOL"] = self.headers["Git-Protocol"]
        done = subprocess.run(["git", "http-backend"], input=body, env=env, capture_output=True)
        head, _, payload = done.stdout.partition(b"\r\n\r\n")
        if not _:
            head, _, payload = done.stdout.partition(b"\n\n")
        status, headers = 200, []
        for line in head.decode("latin-1").splitlines():
            name, _, value = line.partition(":")
            if name.lower() == "status":
                status = int(value.split()[0])
            elif name:
                headers.append((name, value.strip()))
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args):
        pass


if __name__ == "__main__":
    server = ThreadingHTTPServer(("0.0.0.0", PORT), Origin)
    print("ready", flush=True)
    server.serve_forever()
