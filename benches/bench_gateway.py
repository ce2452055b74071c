"""LLM gateway overhead: a streamed call through the gateway versus straight to the upstream.

    .venv/bin/python benches/bench_gateway.py           # 200 calls each way
    .venv/bin/python benches/bench_gateway.py --quick   # 30 calls each way
    .venv/bin/python benches/bench_gateway.py --postgres --baseline DIR   # PostgreSQL, two codes

A fresh SQLite file (--postgres: a fresh PostgreSQL database on BENCH_PG_URL,
default postgres://postgres@127.0.0.1:5432/postgres, named BENCH_PG_DATABASE or
agentloop_bench_gateway, dropped after), migrated, with one running run and its service key;
daphne serves agentloop.asgi in a subprocess with AGENTLOOP_LLM_UPSTREAM_URL
pointing at a fake upstream, itself a separate subprocess (a minimal asyncio
HTTP/1.1 server, keep-alive, chunked): every /v1/messages call is answered
with an Anthropic SSE stream of message_start, content_block_start, 20
content_block_delta events 5 ms apart, content_block_stop, message_delta and
message_stop, one HTTP chunk per event. Each event carries the upstream's
CLOCK_MONOTONIC time at sending, so the client (this process, same machine,
same clock) knows how long each event took to reach it.

Calls alternate (direct, gateway, gateway, direct, …) over two kept-alive
connections, one call at a time, so both paths see the same machine load; the
overhead is the difference of the two in the same run. Per call:
- first byte: request sent → first event line received;
- per chunk: upstream sent the event → the client read it (transit time of
  each event; the gateway's added per-chunk latency is the difference), and
  the inter-arrival gap between consecutive events;
- whole call: request sent → end of the stream (includes the span and
  counter writes the gateway does before it closes the response).
Target: ≤ 5 ms added at p50.

--baseline DIR also serves the gateway from another copy of the code (e.g.
`git archive <commit> agentloop | tar -x -C DIR`) in a second daphne on the
same database, and measures it in the same alternation: before/after figures
of a change from one run on the same load.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benches.bench_ingest import (  # noqa: E402
    bench_env,
    create_pg_database,
    django_python,
    drop_pg_database,
    free_port,
    wait_for_port,
)

DELTAS = 20
GAP_SECONDS = 0.005
TARGET_ADDED_P50_MS = 5.0
UPSTREAM_KEY = "sk-ant-bench-upstream-key"

SETUP_SCRIPT = """
import json
import django
django.setup()
from django.contrib.auth import get_user_model
from agentloop.runs.config import normalize_config
from agentloop.runs.models import Run, RunStatus, ServiceKey
from agentloop.teams.models import Project, Space

owner = get_user_model().objects.create_user("bench")
project = Project.objects.create(space=Space.create_with_owner("Bench", owner), name="bench")
snapshot, _ = normalize_config({"harness": "claude-code", "sandbox": "local"})
run = Run.objects.create(
    space=project.space, project=project, config=snapshot, prompt="gateway bench",
    status=RunStatus.RUNNING, creator=owner,
)
print(json.dumps({"code": str(run.code), "token": ServiceKey.mint(run, expires_at=None)[1]}))
"""

# The fake upstream, run as `python -c UPSTREAM_SCRIPT port deltas gap`.
UPSTREAM_SCRIPT = r"""
import asyncio, json, sys, time

PORT, DELTAS, GAP = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])

def now():
    return time.clock_gettime(time.CLOCK_MONOTONIC)

def event(kind, data):
    data["t"] = now()
    body = f"event: {kind}\ndata: {json.dumps(data)}\n\n".encode()
    return b"%x\r\n%s\r\n" % (len(body), body)

async def answer_openai(writer):
    # OpenAI Responses: created, item added, DELTAS text deltas, item done, completed.
    writer.write(
        b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
        b"transfer-encoding: chunked\r\n\r\n"
    )
    writer.write(event("response.created", {"type": "response.created", "response": {
        "id": "resp_bench", "model": "gpt-5", "status": "in_progress", "output": []}}))
    writer.write(event("response.output_item.added", {"type": "response.output_item.added",
        "output_index": 0, "item": {"id": "msg_bench", "type": "message", "content": []}}))
    await writer.drain()
    for i in range(DELTAS):
        await asyncio.sleep(GAP)
        writer.write(event("response.output_text.delta", {"type": "response.output_text.delta",
            "item_id": "msg_bench", "output_index": 0, "content_index": 0, "delta": f"word{i} "}))
        await writer.drain()
    writer.write(event("response.output_item.done", {"type": "response.output_item.done",
        "output_index": 0, "item": {"id": "msg_bench", "type": "message", "content": []}}))
    writer.write(event("response.completed", {"type": "response.completed", "response": {
        "id": "resp_bench", "model": "gpt-5", "status": "completed", "output": [],
        "usage": {"input_tokens": 12, "output_tokens": DELTAS}}}))
    writer.write(b"0\r\n\r\n")
    await writer.drain()

async def answer_gemini(writer):
    # Gemini streamGenerateContent?alt=sse: DELTAS chunks, the last with usage.
    writer.write(
        b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
        b"transfer-encoding: chunked\r\n\r\n"
    )
    for i in range(DELTAS):
        if i:
            await asyncio.sleep(GAP)
        chunk = {"candidates": [{"content": {"parts": [{"text": f"word{i} "}], "role": "model"}}],
                 "modelVersion": "gemini-2.5-flash"}
        if i == DELTAS - 1:
            chunk["candidates"][0]["finishReason"] = "STOP"
            chunk["usageMetadata"] = {"promptTokenCount": 12, "candidatesTokenCount": DELTAS}
        chunk["t"] = now()
        body = f"data: {json.dumps(chunk)}\r\n\r\n".encode()
        writer.write(b"%x\r\n%s\r\n" % (len(body), body))
        await writer.drain()
    writer.write(b"0\r\n\r\n")
    await writer.drain()

async def answer(writer, path=b"/v1/messages"):
    if path.startswith(b"/v1/responses"):
        return await answer_openai(writer)
    if path.startswith(b"/v1beta/"):
        return await answer_gemini(writer)
    writer.write(
        b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
        b"transfer-encoding: chunked\r\nrequest-id: req_bench\r\n\r\n"
    )
    writer.write(event("message_start", {"type": "message_start", "message": {
        "id": "msg_bench", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5",
        "content": [], "stop_reason": None, "usage": {"input_tokens": 12, "output_tokens": 1}}}))
    writer.write(event("content_block_start", {"type": "content_block_start", "index": 0,
        "content_block": {"type": "text", "text": ""}}))
    await writer.drain()
    for i in range(DELTAS):
        await asyncio.sleep(GAP)
        writer.write(event("content_block_delta", {"type": "content_block_delta", "index": 0,
            "delta": {"type": "text_delta", "text": f"word{i} "}}))
        await writer.drain()
    writer.write(event("content_block_stop", {"type": "content_block_stop", "index": 0}))
    writer.write(event("message_delta", {"type": "message_delta",
        "delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": DELTAS}}))
    writer.write(event("message_stop", {"type": "message_stop"}))
    writer.write(b"0\r\n\r\n")
    await writer.drain()

async def serve(reader, writer):
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            if length:
                await reader.readexactly(length)
            await answer(writer, head.split(b" ")[1])
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()

async def main():
    server = await asyncio.start_server(serve, "127.0.0.1", PORT)
    async with server:
        await server.serve_forever()

asyncio.run(main())
"""

REQUEST_BODY = json.dumps(
    {
        "model": "claude-sonnet-4-5",
        "max_tokens": 1024,
        "stream": True,
        "system": "You are a benchmark.",
        "messages": [{"role": "user", "content": "Say twenty words."}],
    }
).encode()


def now() -> float:
    return time.clock_gettime(time.CLOCK_MONOTONIC)


# Per provider: (gateway prefix, path, body, the key's header, events per answer).
PROVIDERS = {
    "anthropic": (
        "/llm/anthropic",
        "/v1/messages?beta=true",
        REQUEST_BODY,
        "x-api-key",
        DELTAS + 5,
    ),
    "openai": (
        "/llm/openai",
        "/v1/responses",
        json.dumps({"model": "gpt-5", "stream": True, "input": "Say twenty words."}).encode(),
        "authorization",
        DELTAS + 4,
    ),
    "gemini": (
        "/llm/gemini",
        "/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse",
        json.dumps({"contents": [{"role": "user", "parts": [{"text": "Twenty words."}]}]}).encode(),
        "x-goog-api-key",
        DELTAS,
    ),
}


class Caller:
    """One kept-alive connection making streamed calls of one provider's API, one at a time."""

    def __init__(self, port: int, path_prefix: str, key: str, provider: str = "anthropic"):
        prefix, path, self.body, key_header, self.expected = PROVIDERS[provider]
        self.connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        self.path = f"{path_prefix}{path}"
        self.headers = {
            "anthropic-version": "2023-06-01",
            "content-type": "application/json",
            "accept": "application/json",
            "user-agent": "agentloop-bench/1",
        }
        self.headers[key_header] = f"Bearer {key}" if key_header == "authorization" else key

    def call(self) -> dict:
        """Times in ms: first byte, per-event transit, inter-arrival gaps, whole call."""
        started = now()
        self.connection.request("POST", self.path, body=self.body, headers=self.headers)
        response = self.connection.getresponse()
        if response.status != 200:
            raise RuntimeError(f"{self.path} answered {response.status}: {response.read()[:300]!r}")
        arrivals: list[float] = []
        transits: list[float] = []
        while True:
            line = response.readline()
            if not line:
                break
            if line.startswith(b"data: "):
                arrived = now()
                arrivals.append(arrived)
                transits.append((arrived - json.loads(line[6:])["t"]) * 1000)
        ended = now()
        if len(arrivals) != self.expected:
            raise RuntimeError(f"{self.path}: {len(arrivals)} events, expected {self.expected}")
        return {
            "first_byte": (arrivals[0] - started) * 1000,
            "transit": transits,
            "gaps": [(b - a) * 1000 for a, b in zip(arrivals, arrivals[1:], strict=False)],
            "total": (ended - started) * 1000,
        }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="30 calls each way instead of 200")
    parser.add_argument("--calls", type=int, default=0, help="calls each way (overrides --quick)")
    parser.add_argument(
        "--baseline",
        type=Path,
        help="a directory holding another copy of the agentloop package, measured as well",
    )
    parser.add_argument("--postgres", action="store_true", help="PostgreSQL instead of SQLite")
    args = parser.parse_args(argv)
    calls = args.calls or (30 if args.quick else 200)
    load_before = os.getloadavg()[0]
    if not args.postgres:
        return measure(args, calls, load_before, None)
    admin_url = os.environ.get("BENCH_PG_URL", "postgres://postgres@127.0.0.1:5432/postgres")
    name = os.environ.get("BENCH_PG_DATABASE", "agentloop_bench_gateway")
    database_url = create_pg_database(admin_url, name)
    try:
        return measure(args, calls, load_before, database_url)
    finally:
        drop_pg_database(admin_url, name)


def measure(args, calls: int, load_before: float, database_url: str | None) -> int:
    with tempfile.TemporaryDirectory(prefix="agentloop-bench-gateway-") as tmp:
        upstream_port, gateway_port = free_port(), free_port()
        env = bench_env(database_url or f"sqlite:///{tmp}/bench.sqlite3", Path(tmp))
        env.update(
            AGENTLOOP_LLM_UPSTREAM_URL=f"http://127.0.0.1:{upstream_port}",
            AGENTLOOP_ANTHROPIC_API_KEY=UPSTREAM_KEY,
            AGENTLOOP_OPENAI_UPSTREAM_URL=f"http://127.0.0.1:{upstream_port}",
            AGENTLOOP_OPENAI_API_KEY=UPSTREAM_KEY,
            AGENTLOOP_GEMINI_UPSTREAM_URL=f"http://127.0.0.1:{upstream_port}",
            AGENTLOOP_GEMINI_API_KEY=UPSTREAM_KEY,
        )
        for name in ("ANTHROPIC", "OPENAI", "GEMINI"):
            env.pop(f"AGENTLOOP_{name}_API_KEY_FILE", None)
        django_python([str(ROOT / "manage.py"), "migrate", "--noinput", "-v", "0"], env)
        setup = json.loads(django_python(["-c", SETUP_SCRIPT], env).splitlines()[-1])
        upstream = subprocess.Popen(
            [sys.executable, "-c", UPSTREAM_SCRIPT, str(upstream_port), str(DELTAS)]
            + [str(GAP_SECONDS)]
        )
        servers = {"gateway": (ROOT, gateway_port)}
        if args.baseline:
            servers["baseline"] = (args.baseline.resolve(), free_port())
        processes = [upstream]
        try:
            for code_dir, port in servers.values():
                processes.append(daphne(code_dir, port, env))
            wait_for_port(upstream_port, upstream)
            callers = {"direct": Caller(upstream_port, "", UPSTREAM_KEY)}
            for (name, (_, port)), process in zip(servers.items(), processes[1:], strict=True):
                wait_for_port(port, process)
                callers[name] = Caller(port, "/llm/anthropic", setup["token"])
            # The other providers' APIs, interleaved in the same loop: direct and gateway.
            for provider in ("openai", "gemini"):
                prefix = PROVIDERS[provider][0]
                callers[f"direct {provider}"] = Caller(upstream_port, "", UPSTREAM_KEY, provider)
                callers[f"gateway {provider}"] = Caller(
                    gateway_port, prefix, setup["token"], provider
                )
            for _ in range(5):  # warm up: imports, first connections, first queries
                for caller in callers.values():
                    caller.call()
            results: dict[str, list[dict]] = {name: [] for name in callers}
            order = list(callers.items())
            for i in range(calls):
                # Alternate the order so no path always follows another's writes.
                for name, caller in order if i % 2 == 0 else reversed(order):
                    results[name].append(caller.call())
        finally:
            for process in processes:
                process.terminate()
            for process in processes:
                process.wait(timeout=30)

    providers = {name: results.pop(name) for name in list(results) if " " in name}
    print_report(results, calls, load_before, "PostgreSQL" if database_url else "SQLite")
    print_providers(results, providers)
    return 0


def print_providers(results: dict[str, list[dict]], providers: dict[str, list[dict]]) -> None:
    """First byte per provider, p50, each gateway path against its own direct calls."""
    rows = {"anthropic": (results["direct"], results["gateway"])}
    for provider in ("openai", "gemini"):
        rows[provider] = (providers[f"direct {provider}"], providers[f"gateway {provider}"])
    print(
        "\n| provider (API) | direct first byte p50 ms | gateway first byte p50 ms | added p50 ms |"
    )
    print("|---|---:|---:|---:|")
    apis = {"anthropic": "Messages", "openai": "Responses", "gemini": "streamGenerateContent"}
    for provider, (direct, gateway) in rows.items():
        d50 = percentile([r["first_byte"] for r in direct], 50)
        g50 = percentile([r["first_byte"] for r in gateway], 50)
        print(f"| {provider} ({apis[provider]}) | {d50:.2f} | {g50:.2f} | {g50 - d50:+.2f} |")


def daphne(code_dir: Path, port: int, env: dict) -> subprocess.Popen:
    """daphne serving agentloop.asgi from code_dir (this checkout, or a baseline copy)."""
    env = dict(env, PYTHONPATH=os.pathsep.join([str(code_dir), env.get("PYTHONPATH", "")]))
    return subprocess.Popen(
        [sys.executable, "-m", "daphne", "-v", "0", "-b", "127.0.0.1", "-p", str(port)]
        + ["agentloop.asgi:application"],
        cwd=code_dir,
        env=env,
    )


def percentile(samples: list[float], p: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def print_report(
    results: dict[str, list[dict]], calls: int, load_before: float, database: str
) -> None:
    def flat(name: str, key: str) -> list[float]:
        values = [r[key] for r in results[name]]
        return [v for vs in values for v in vs] if isinstance(values[0], list) else values

    print(
        f"\n### LLM gateway overhead, {date.today().isoformat()}, {database}, "
        f"{calls} streamed calls each way ({DELTAS + 5} events, {DELTAS} deltas "
        f"{GAP_SECONDS * 1000:.0f} ms apart), "
        f"load average {load_before:.1f} before and {os.getloadavg()[0]:.1f} after "
        f"({os.cpu_count()} cores)\n"
    )
    paths = [name for name in results if name != "direct"]
    print(
        "| measure | direct p50 / p99 ms | "
        + " | ".join(f"{name} p50 / p99 ms | {name} added p50 / p99 ms" for name in paths)
        + " |"
    )
    print("|---|---:|" + "---:|---:|" * len(paths))
    added_p50 = {}
    for label, key in (
        ("first byte", "first_byte"),
        ("per chunk: transit of each event", "transit"),
        ("per chunk: inter-arrival gap", "gaps"),
        ("whole call (to end of stream)", "total"),
    ):
        d = flat("direct", key)
        d50, d99 = percentile(d, 50), percentile(d, 99)
        cells = [f"{d50:.2f} / {d99:.2f}"]
        for name in paths:
            g = flat(name, key)
            g50, g99 = percentile(g, 50), percentile(g, 99)
            if name == "gateway":
                added_p50[key] = g50 - d50
            cells += [f"{g50:.2f} / {g99:.2f}", f"{g50 - d50:+.2f} / {g99 - d99:+.2f}"]
        print(f"| {label} | " + " | ".join(cells) + " |")
    worst = max(added_p50["first_byte"], added_p50["transit"])
    verdict = "meets" if worst <= TARGET_ADDED_P50_MS else "MISSES"
    print(
        f"\nAdded at p50: first byte {added_p50['first_byte']:.2f} ms, per chunk "
        f"{added_p50['transit']:.2f} ms: {verdict} the target (≤ {TARGET_ADDED_P50_MS:.0f} ms)."
    )


if __name__ == "__main__":
    sys.exit(main())
