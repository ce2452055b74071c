"""What validating a runner's event batch costs, inside `runner_api.post_events`.

    .venv/bin/python benches/bench_runner_events.py           # full sizes
    .venv/bin/python benches/bench_runner_events.py --quick   # fewer repetitions

In one process, on a fresh SQLite file (migrated): one running run with its
service key. For batches of 1, 20 and 500 message events (payloads shaped like
the runner's), it times `recording.validate_events` alone and the whole
`runner_api.post_events` (token, JSON, validation, redaction, insert, commit),
each new batch with fresh keys. The code measured is whatever `agentloop` is
first on PYTHONPATH. Between processes the SQLite commit makes medians wander
by a few tenths of a millisecond, so `--against DIR` compares in one process:
posts alternate between this checkout's `validate_events` and DIR's (e.g. an
older commit, `git archive <commit> | tar -x -C DIR`), everything else equal:

    .venv/bin/python benches/bench_runner_events.py --against /tmp/before
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

BATCHES = (1, 20, 500)


def event(key: str, n: int) -> dict:
    return {
        "key": key,
        "source": "agent",
        "kind": "message",
        "payload": {
            "role": "assistant",
            "text": f"Step {n}: the refund tool timed out after 30 s on trace ab01.",
            "message_id": f"msg-{n}",
        },
    }


def setup_django(tmp: Path) -> None:
    os.environ.update(
        DJANGO_SETTINGS_MODULE="agentloop.settings",
        DATABASE_URL=f"sqlite:///{tmp / 'bench.sqlite3'}",
        SECRET_KEY="bench-only-secret-key",
        AGENTLOOP_DERIVE_FERNET_KEY="1",
        AGENTLOOP_VAR_DIR=str(tmp / "var"),
        DEBUG="0",
        LOG_LEVEL="WARNING",
    )
    os.environ.pop("REDIS_URL", None)
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def ms(seconds: list[float]) -> str:
    median = statistics.median(seconds) * 1000
    p90 = sorted(seconds)[int(len(seconds) * 0.9)] * 1000
    return f"median {median:8.3f} ms  p90 {p90:8.3f} ms"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repetitions")
    parser.add_argument("--against", type=Path, help="a checkout whose validate_events to compare")
    args = parser.parse_args(argv)
    reps = {1: 200, 20: 100, 500: 20} if not args.quick else {1: 40, 20: 20, 500: 5}
    with tempfile.TemporaryDirectory() as tmp:
        setup_django(Path(tmp))
        from django.contrib.auth import get_user_model

        import agentloop
        from agentloop.runs import recording, runner_api
        from agentloop.runs.models import Run, RunStatus, ServiceKey
        from agentloop.teams.models import Project, Space

        owner = get_user_model().objects.create_user("bench")
        project = Project.objects.create(space=Space.create_with_owner("Bench", owner), name="b")
        run = Run.objects.create(
            space=project.space,
            project=project,
            config={"harness": "analyst", "secret_env_names": []},
            prompt="bench",
            status=RunStatus.RUNNING,
            creator=owner,
        )
        _, token = ServiceKey.mint(run, expires_at=None)
        print(f"code: {Path(agentloop.__file__).parent.parent}")
        if args.against:
            return compare(args.against, token, reps, recording, runner_api)
        counter = 0
        for size in BATCHES:
            bodies = []
            for _ in range(reps[size]):
                batch = []
                for _ in range(size):
                    counter += 1
                    batch.append(event(f"e-{counter}", counter))
                bodies.append(json.dumps({"events": batch}).encode())
            validate, post = [], []
            for body in bodies:
                data = json.loads(body)
                started = time.perf_counter()
                recording.validate_events(data)
                validate.append(time.perf_counter() - started)
            for body in bodies:
                started = time.perf_counter()
                status, answer = runner_api.post_events(token, body)
                post.append(time.perf_counter() - started)
                assert status == 200 and answer["stored"] == size, answer
            print(f"batch of {size:3d}: validate_events {ms(validate)}")
            print(f"              post_events     {ms(post)}")
    return 0


def other_recording(checkout: Path):
    path = checkout / "agentloop" / "runs" / "recording.py"
    spec = importlib.util.spec_from_file_location("other_recording", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules["other_recording"] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def compare(checkout: Path, token: str, reps: dict, recording, runner_api) -> int:
    validators = {
        "this": recording.validate_events,
        "other": other_recording(checkout).validate_events,
    }
    print(f"other: {checkout}")
    counter = 0
    for size in BATCHES:
        times = {name: [] for name in validators}
        for i in range(reps[size] * 2):
            name = "this" if i % 2 else "other"
            recording.validate_events = validators[name]
            batch = []
            for _ in range(size):
                counter += 1
                batch.append(event(f"c-{counter}", counter))
            body = json.dumps({"events": batch}).encode()
            started = time.perf_counter()
            status, answer = runner_api.post_events(token, body)
            times[name].append(time.perf_counter() - started)
            assert status == 200 and answer["stored"] == size, answer
        for name, seconds in times.items():
            print(f"batch of {size:3d}: post_events, {name:5s} validate_events {ms(seconds)}")
    recording.validate_events = validators["this"]
    return 0


if __name__ == "__main__":
    sys.exit(main())
