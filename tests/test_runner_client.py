"""The runner's HTTP client and event queue, against the in-process double (no Django)."""

from __future__ import annotations

import json

import pytest

from agentloop.runner.client import ApiError, HttpClient, RunnerClient
from agentloop.runner.events import EventQueue
from tests.runner_double import RunnerDouble


@pytest.fixture
def double():
    with RunnerDouble() as running:
        yield running


def client_for(double, **kwargs) -> tuple[RunnerClient, list[float]]:
    sleeps: list[float] = []
    kwargs.setdefault("jitter", lambda: 1.0)
    client = RunnerClient(
        double.url, double.token, sleep=sleeps.append, log=lambda m: None, **kwargs
    )
    return client, sleeps


def test_it_sends_the_bearer_token_and_reads_json(double):
    client, _ = client_for(double)

    spec = client.spec()

    assert spec["harness"] == "analyst"
    assert double.requests[-1]["auth"] == "Bearer al_sk_test"


def test_it_retries_a_503_then_succeeds(double):
    double.fail_next("GET", "/spec", status=503, times=2)
    client, sleeps = client_for(double)

    spec = client.spec()

    assert spec["project"]["name"] == "Shop assistant"
    assert len(double.requests_to("GET", "/spec")) == 3
    assert sleeps == [0.5, 1.0]  # exponential, jitter pinned at its maximum


def test_it_retries_429(double):
    double.fail_next("POST", "/heartbeat", status=429)
    client, sleeps = client_for(double)

    answer = client.post("/api/runner/v1/heartbeat", {})

    assert answer == {"status": "provisioning", "stop": False}
    assert len(sleeps) == 1


def test_it_does_not_retry_a_400_and_says_what_the_server_said(double):
    double.fail_next("POST", "/status", status=400, detail="state: unknown value")
    client, sleeps = client_for(double)

    with pytest.raises(ApiError) as raised:
        client.post_status("running")

    assert raised.value.status == 400
    assert raised.value.message == "HTTP 400: state: unknown value"
    assert sleeps == []
    assert len(double.requests_to("POST", "/status")) == 1
    assert double.status == "provisioning"


def test_a_409_is_raised_without_retry(double):
    client, sleeps = client_for(double)

    with pytest.raises(ApiError) as raised:
        client.post_status("waiting")  # provisioning → waiting is not a legal transition

    assert raised.value.status == 409
    assert raised.value.message == "HTTP 409: A run cannot go from provisioning to waiting."
    assert sleeps == []


def test_a_wrong_token_gets_401_at_once(double):
    client = RunnerClient(double.url, "al_sk_wrong", sleep=lambda s: None)

    with pytest.raises(ApiError) as raised:
        client.spec()

    assert raised.value.status == 401


def test_backoff_is_exponential_jittered_and_capped():
    client = HttpClient(
        "http://127.0.0.1:9", "t", base_delay=0.5, max_delay=4.0, jitter=lambda: 0.0
    )
    assert [client.backoff(n) for n in range(1, 7)] == [0.25, 0.5, 1.0, 2.0, 2.0, 2.0]
    client.jitter = lambda: 1.0
    assert [client.backoff(n) for n in range(1, 7)] == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]


def test_connection_errors_are_retried_then_raised_with_the_reason():
    sleeps: list[float] = []
    # Port 9 (discard) on localhost: nothing listens, the connection is refused.
    client = HttpClient(
        "http://127.0.0.1:9",
        "t",
        max_attempts=3,
        sleep=sleeps.append,
        jitter=lambda: 0.5,
        log=lambda m: None,
    )

    with pytest.raises(ApiError) as raised:
        client.get("/api/runner/v1/spec")

    assert raised.value.status is None
    assert "cannot reach http://127.0.0.1:9" in raised.value.message
    assert len(sleeps) == 2
    assert all(0 < delay <= client.max_delay for delay in sleeps)


# -- the event queue ----------------------------------------------------------------------


def queue_for(double, **kwargs) -> EventQueue:
    client, _ = client_for(double, max_attempts=1)
    kwargs.setdefault("sleep", lambda s: None)
    return EventQueue(client, instance_id="inst", log=lambda m: None, **kwargs)


def test_events_are_batched_by_size(double):
    events = queue_for(double, max_batch=3, max_delay=5.0)
    for n in range(7):
        events.emit("message", {"role": "assistant", "text": f"m{n}"})

    events.start()
    assert events.close(timeout=10)

    assert [len(keys) for keys in double.event_posts] == [3, 3, 1]
    assert [e["payload"]["text"] for e in double.events] == [f"m{n}" for n in range(7)]
    assert [e["seq"] for e in double.events] == list(range(1, 8))


def test_events_are_sent_after_the_delay_without_waiting_for_a_full_batch(double):
    events = queue_for(double, max_batch=100, max_delay=0.05).start()

    events.emit("status", {"state": "running", "detail": "x"}, source="system")

    assert double.wait_for(lambda: len(double.events) == 1, timeout=5)
    assert double.events[0]["kind"] == "status"
    events.close(timeout=5)


def test_a_retried_batch_carries_the_same_keys_and_is_stored_once(double):
    double.fail_next("POST", "/events", status=500)
    events = queue_for(double, max_batch=10)
    keys = [events.emit("message", {"role": "assistant", "text": str(n)}) for n in range(4)]

    events.start()
    assert events.close(timeout=10)

    assert keys == ["inst-1", "inst-2", "inst-3", "inst-4"]
    posted = [
        [e["key"] for e in json.loads(r["raw"])["events"]]
        for r in double.requests_to("POST", "/events")
    ]
    assert posted == [keys, keys]  # refused once, re-posted unchanged
    assert [e["key"] for e in double.events] == keys


def test_a_batch_whose_answer_was_lost_is_deduplicated_by_the_server(double):
    events = queue_for(double)
    events.emit("message", {"role": "assistant", "text": "once"})
    batch = list(events._pending)
    events.start()
    events.close(timeout=10)

    # The same batch again, as after a timeout with the answer lost on the way back.
    answer = events.client.post_events(batch)

    assert answer["stored"] == 0 and answer["duplicates"] == 1
    assert len(double.events) == 1


def test_nothing_is_dropped_while_the_server_is_down_for_a_while(double):
    double.fail_next("POST", "/events", status=503, times=5)
    waits: list[float] = []
    events = queue_for(double, max_batch=50, sleep=waits.append)
    for n in range(120):
        events.emit("tool_result", {"tool_call_id": str(n), "output": "", "is_error": False})

    events.start()
    assert events.close(timeout=10)

    assert len(waits) == 5
    assert waits == sorted(waits)  # backing off, not hammering
    assert [e["payload"]["tool_call_id"] for e in double.events] == [str(n) for n in range(120)]


def test_flush_waits_until_emitted_events_are_stored(double):
    events = queue_for(double, max_delay=10.0).start()
    events.emit("message", {"role": "assistant", "text": "a"})
    events.emit("message", {"role": "assistant", "text": "b"})

    assert events.flush(timeout=10)  # does not wait out the 10 s batching delay

    assert len(double.events) == 2
    events.close(timeout=5)


def test_events_refused_for_good_are_reported_not_retried_forever(double):
    double.status = "succeeded"  # the run finished: the server answers 409
    logs: list[str] = []
    client, _ = client_for(double, max_attempts=1)
    events = EventQueue(client, instance_id="inst", sleep=lambda s: None, log=logs.append)
    events.emit("message", {"role": "assistant", "text": "late"})

    events.start()
    assert events.close(timeout=10) is False

    assert [e["key"] for e in events.undeliverable] == ["inst-1"]
    assert "1 events refused (HTTP 409: The run has already finished (succeeded).)" in logs[0]


def test_an_unknown_event_kind_is_refused_when_emitted(double):
    events = queue_for(double)
    with pytest.raises(ValueError):
        events.emit("thought", {})


def test_an_idle_queue_sends_at_once_and_batches_what_arrives_during_a_post(double):
    """The first event is not held back to fill a batch (it is what the user waits
    for); events emitted while that POST is in flight go together in the next one."""
    import threading

    client, _ = client_for(double, max_attempts=1)
    first_post_started, release = threading.Event(), threading.Event()
    real_post = client.post_events

    def slow_first_post(batch):
        if not first_post_started.is_set():
            first_post_started.set()
            assert release.wait(10)
        return real_post(batch)

    client.post_events = slow_first_post
    events = EventQueue(client, instance_id="inst", log=lambda m: None)  # defaults
    sender_timed_waits: list[float] = []
    real_wait = events._cond.wait

    def recording_wait(timeout=None):
        if timeout is not None and threading.current_thread().name == "agentloop-events":
            sender_timed_waits.append(timeout)  # lingering for a fuller batch
        return real_wait(timeout)

    events._cond.wait = recording_wait
    events.start()
    events.emit("message", {"role": "assistant", "text": "first"})
    assert first_post_started.wait(10)  # sent without anything else arriving
    for n in range(3):
        events.emit("message", {"role": "assistant", "text": f"during {n}"})
    release.set()
    assert events.close(timeout=10)

    assert [len(keys) for keys in double.event_posts] == [1, 3]
    assert [e["key"] for e in double.events] == ["inst-1", "inst-2", "inst-3", "inst-4"]
    assert sender_timed_waits == []
