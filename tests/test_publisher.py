"""Publisher and subscribe() over real ZeroMQ TCP sockets on 127.0.0.1."""

from __future__ import annotations

import json
import threading
import time
from datetime import datetime, timezone

import pytest
import zmq

from ser_stream.counters import Counters
from ser_stream.errors import EndpointError, UserError
from ser_stream.events import TOPIC_EMOTION, TOPIC_STATUS, emotion_event, status_event, validator_for
from ser_stream.publisher import Publisher, subscribe

ANY_PORT = "tcp://127.0.0.1:*"
MODEL = {"name": "ser-mlp", "sha256": "ab" * 32}
ATTEMPTS = 100_000
COUNTERS = Counters()


def an_emotion() -> dict:
    return emotion_event(
        label="calm",
        confidence=0.7,
        probabilities={"calm": 0.7, "sad": 0.3},
        start_s=0.5,
        end_s=2.0,
        wall_end=datetime.now(timezone.utc),
        source="mic",
        model=MODEL,
        device="test",
    )


def a_status() -> dict:
    return status_event(state="running", counters=COUNTERS, uptime_s=1.0, source="mic", model=MODEL, device="test")


@pytest.fixture
def context():
    context = zmq.Context()
    yield context
    context.destroy(linger=0)


def sub_socket(context: zmq.Context, endpoint: str, *topics: str, rcvhwm: int = 1000) -> zmq.Socket:
    socket = context.socket(zmq.SUB)
    socket.setsockopt(zmq.RCVHWM, rcvhwm)
    for topic in topics:
        socket.setsockopt(zmq.SUBSCRIBE, topic.encode())
    socket.connect(endpoint)
    return socket


def receive(socket: zmq.Socket) -> tuple[str, dict]:
    assert socket.poll(2000), "nothing received"
    frames = socket.recv_multipart()
    assert len(frames) == 2
    return frames[0].decode(), json.loads(frames[1])


def join(publisher: Publisher, socket: zmq.Socket, topic: str) -> None:
    """Beat the slow joiner: ping until the subscription is live, then read up to a last marker."""
    deadline = time.monotonic() + 5
    while not socket.poll(20):
        assert time.monotonic() < deadline, "subscriber never joined"
        publisher.publish(topic, {"ping": True})
    publisher.publish(topic, {"ping": "last"})
    while receive(socket)[1]["ping"] != "last":
        pass


def publish_in_thread(publisher: Publisher, topic: str, attempts: int) -> list[bool]:
    """Publish `attempts` times; fail if that does not finish promptly (publish must never block)."""
    results: list[bool] = []
    event = an_emotion()
    thread = threading.Thread(
        target=lambda: results.extend(publisher.publish(topic, event) for _ in range(attempts)), daemon=True
    )
    thread.start()
    thread.join(timeout=30)
    assert not thread.is_alive(), "publish blocked"
    assert len(results) == attempts
    return results


def test_frames_seq_and_latency(context):
    with Publisher(ANY_PORT, context=context) as publisher:
        subscriber = sub_socket(context, publisher.endpoint, "")
        join(publisher, subscriber, TOPIC_STATUS)
        sent_before = publisher.sent
        captured_at = time.monotonic() - 0.05
        for _ in range(3):
            assert publisher.publish(TOPIC_EMOTION, an_emotion(), captured_at)
            assert publisher.publish(TOPIC_STATUS, a_status())
        received = [receive(subscriber) for _ in range(6)]
        assert publisher.sent == sent_before + 6 and publisher.dropped == 0

    assert [topic for topic, _ in received] == [TOPIC_EMOTION, TOPIC_STATUS] * 3
    seqs = [event["seq"] for _, event in received]
    assert seqs == list(range(seqs[0], seqs[0] + 6))
    for topic, event in received:
        validator_for(topic).validate(event)
        if topic == TOPIC_EMOTION:
            assert 50 <= event["latency_ms"] < 10_000
        else:
            assert "latency_ms" not in event


def test_payload_is_compact_utf8_json_and_event_is_stamped_in_place(context):
    with Publisher(ANY_PORT, context=context) as publisher:
        subscriber = sub_socket(context, publisher.endpoint, TOPIC_EMOTION)
        join(publisher, subscriber, TOPIC_EMOTION)
        event = an_emotion() | {"source": "Micro «USB»"}
        publisher.publish(TOPIC_EMOTION, event, time.monotonic())
        assert subscriber.poll(2000)
        topic, payload = subscriber.recv_multipart()
    assert topic == b"emotion"
    assert payload == json.dumps(event, separators=(",", ":"), ensure_ascii=False).encode()
    assert {"seq", "latency_ms"} <= event.keys()


def test_topic_filtering(context):
    with Publisher(ANY_PORT, context=context) as publisher:
        subscriber = sub_socket(context, publisher.endpoint, TOPIC_EMOTION)
        join(publisher, subscriber, TOPIC_EMOTION)
        for _ in range(3):
            publisher.publish(TOPIC_STATUS, a_status())
            publisher.publish(TOPIC_EMOTION, an_emotion())
        publisher.publish(TOPIC_EMOTION, {"ping": "last"})
        received = []
        while not received or received[-1][1].get("ping") != "last":
            received.append(receive(subscriber))
    assert [topic for topic, _ in received] == [TOPIC_EMOTION] * 4


def test_endpoint_reports_the_port_zmq_picked():
    with Publisher(ANY_PORT) as publisher:
        host, _, port = publisher.endpoint.rpartition(":")
        assert host == "tcp://127.0.0.1" and port.isdigit() and int(port) > 0


def test_port_in_use_is_a_one_line_user_error():
    with Publisher(ANY_PORT) as first, pytest.raises(EndpointError) as raised:
        Publisher(first.endpoint)
    assert str(raised.value) == f"cannot bind {first.endpoint}: address already in use"
    assert isinstance(raised.value, UserError) and raised.value.exit_code == 4


@pytest.mark.parametrize(
    "endpoint", ["nonsense", "", "foo://127.0.0.1:5556", "tcp://127.0.0.1:99999", "tcp://127.0.0.1:abc", "tcp://"]
)
def test_malformed_endpoint_is_a_one_line_user_error(endpoint):
    with pytest.raises(EndpointError) as raised:
        Publisher(endpoint)
    message = str(raised.value)
    assert message.startswith(f"invalid endpoint {endpoint!r}: ") and "\n" not in message


def test_close_releases_the_port():
    publisher = Publisher(ANY_PORT)
    publisher.close()
    publisher.close()  # idempotent
    with Publisher(publisher.endpoint):
        pass


def test_close_spares_a_given_context(context):
    Publisher(ANY_PORT, context=context).close()
    assert not context.closed


def test_no_subscriber_never_blocks_and_drops_nothing():
    with Publisher(ANY_PORT, hwm=10) as publisher:
        results = publish_in_thread(publisher, TOPIC_EMOTION, ATTEMPTS)
        assert all(results)
        assert (publisher.sent, publisher.dropped) == (ATTEMPTS, 0)


def test_never_reading_subscriber_never_blocks_nor_stalls_others_and_sees_gaps(context):
    """inproc has no kernel buffers, so each subscriber holds exactly its high-water marks."""
    with Publisher("inproc://stuck-subscriber", context=context) as publisher:
        stuck = sub_socket(context, publisher.endpoint, TOPIC_EMOTION, rcvhwm=10)
        join(publisher, stuck, TOPIC_EMOTION)
        healthy = sub_socket(context, publisher.endpoint, TOPIC_EMOTION, rcvhwm=100_000)
        join(publisher, healthy, TOPIC_EMOTION)
        seq_before = publisher.sent
        attempts = 5000
        assert all(publish_in_thread(publisher, TOPIC_EMOTION, attempts))
        assert publisher.dropped == 0

        def drain(socket):
            seqs = []
            while socket.poll(200):
                seqs.append(json.loads(socket.recv_multipart()[1])["seq"])
            return seqs

        assert drain(healthy) == list(range(seq_before + 1, seq_before + attempts + 1))  # nothing lost
        seqs = drain(stuck)
        assert len(seqs) <= 1000 + 10  # its queues held what they could; the rest was dropped for it alone
        publisher.publish(TOPIC_EMOTION, an_emotion())  # once it reads again, the next message shows the gap
        seqs += drain(stuck)
    assert seqs == sorted(set(seqs)) and seqs[-1] == seq_before + attempts + 1
    assert seqs[-1] - seqs[0] + 1 > len(seqs)


def test_wait_for_subscriber(context):
    with Publisher(ANY_PORT, context=context) as publisher:
        assert not publisher.wait_for_subscriber(0.1)
        subscriber = sub_socket(context, publisher.endpoint, TOPIC_EMOTION)
        assert publisher.wait_for_subscriber(5)
        publisher.publish(TOPIC_EMOTION, an_emotion())
        topic, event = receive(subscriber)
    assert topic == TOPIC_EMOTION and event["seq"] == 1


def test_subscribe_yields_what_was_published(context):
    publisher = Publisher(ANY_PORT, context=context)
    published: list[dict] = []
    stop = threading.Event()

    def keep_publishing():  # the slow joiner means the first messages may go nowhere
        while not stop.is_set():
            for topic, event in ((TOPIC_STATUS, a_status()), (TOPIC_EMOTION, an_emotion())):
                publisher.publish(topic, event)
                if topic == TOPIC_EMOTION:
                    published.append(event)
            time.sleep(0.005)  # a steady stream, not a busy loop

    thread = threading.Thread(target=keep_publishing, daemon=True)
    thread.start()
    messages = subscribe(publisher.endpoint, [TOPIC_EMOTION])
    try:
        received = [next(messages) for _ in range(5)]
    finally:
        messages.close()
        stop.set()
        thread.join()
        publisher.close()
    assert all(topic == TOPIC_EMOTION for topic, _ in received)
    for _, event in received:
        assert event in published
    seqs = [event["seq"] for _, event in received]
    assert seqs == sorted(set(seqs))


def test_subscribe_malformed_endpoint():
    with pytest.raises(EndpointError, match="invalid endpoint 'nonsense'"):
        next(subscribe("nonsense", [TOPIC_EMOTION]))
