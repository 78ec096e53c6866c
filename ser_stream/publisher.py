"""The ZeroMQ side of the wire format: a PUB socket that never blocks the pipeline, and a subscriber.

Every message is a two-frame multipart `[topic, json]` (both UTF-8); see `events` and
`schemas/events-v1.json` for the payloads.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from types import TracebackType
from typing import Any

import zmq

from .errors import EndpointError, UserError
from .link import ProxyLink
from .security import Authenticator, connect_curve
from .settings import DEFAULT_ENDPOINT, CurveClient, CurveServer

#: How long close() may wait to flush queued messages; short so a stopping daemon exits promptly.
LINGER_MS = 200
#: subscribe() waits in polls this long so that Ctrl-C is noticed between them.
POLL_MS = 100


def check_endpoint(endpoint: str) -> None:
    """Reject what libzmq would misread: it wraps a TCP port above 65535 into a different port silently."""
    transport, separator, address = endpoint.partition("://")
    if not (transport and separator and address):
        raise EndpointError(f"invalid endpoint {endpoint!r}: expected transport://address, e.g. {DEFAULT_ENDPOINT}")
    if transport == "tcp":
        port = address.rpartition(":")[2]
        if port != "*" and not (port.isdigit() and int(port) <= 65535):
            raise EndpointError(f"invalid endpoint {endpoint!r}: the TCP port must be a number 0-65535 or *")


def endpoint_error(action: str, endpoint: str, error: zmq.ZMQError) -> EndpointError:
    reason = zmq.strerror(error.errno).lower()
    if error.errno in (zmq.EINVAL, zmq.EPROTONOSUPPORT):
        return EndpointError(f"invalid endpoint {endpoint!r}: {reason}")
    return EndpointError(f"cannot {action} {endpoint}: {reason}")


class Publisher:
    """A bound publishing socket that stamps `seq` (and `latency_ms`) and sends without ever waiting.

    Not thread-safe, like the ZeroMQ socket under it: one thread owns it (the daemon's worker).

    The socket is an XPUB, which sends exactly like PUB but also hears subscriptions, so a
    batch run can wait for its first subscriber.  Each subscriber has its own queue of `hwm`
    messages: a subscriber that falls that far behind loses messages (it sees the gap in `seq`)
    while every other subscriber keeps receiving — one stuck consumer never stalls the rest or
    the pipeline.  `sent` counts messages handed to ZeroMQ; `dropped` counts sends the socket
    refused outright (zmq.Again), which per-subscriber drops are not.
    """

    def __init__(
        self,
        endpoint: str = DEFAULT_ENDPOINT,
        hwm: int = 1000,
        context: zmq.Context | None = None,
        connect: bool = False,
        curve: CurveServer | CurveClient | None = None,
    ) -> None:
        """Bind ``endpoint``, or with ``connect`` connect to it (a `ser-stream proxy` frontend): ZeroMQ
        then reconnects by itself whenever the proxy restarts.  ``curve`` encrypts: as a server,
        only subscribers holding an admitted key get anything; as a client, the socket talks only
        to the proxy whose public key it holds, and only if the proxy admits its key."""
        check_endpoint(endpoint)
        self._owns_context = context is None
        self._context = zmq.Context() if context is None else context
        self._socket = self._context.socket(zmq.XPUB)
        self._link: ProxyLink | None = None
        self._authenticator = Authenticator(self._context)
        try:
            if isinstance(curve, CurveServer):
                self._authenticator.serve(self._socket, curve, domain="publisher")
            elif isinstance(curve, CurveClient):
                connect_curve(self._socket, curve)
        except UserError:
            self.close()
            raise
        self._socket.setsockopt(zmq.SNDHWM, hwm)
        self._socket.setsockopt(zmq.LINGER, LINGER_MS)
        # Watched from before the first handshake, so a refusal is never missed (inproc has none).
        if connect and not endpoint.startswith("inproc://"):
            self._link = ProxyLink(self._socket, endpoint, uses_curve=curve is not None)
        try:
            (self._socket.connect if connect else self._socket.bind)(endpoint)
        except zmq.ZMQError as error:
            self.close()
            raise endpoint_error("connect to" if connect else "bind", endpoint, error) from None
        self._endpoint = self._socket.getsockopt_string(zmq.LAST_ENDPOINT)
        self._seq = 0
        self.sent = 0
        self.dropped = 0

    @property
    def endpoint(self) -> str:
        """The bound address, with the real port when bound to `tcp://HOST:*`."""
        return self._endpoint

    def wait_for_subscriber(self, timeout_s: float) -> bool:
        """Wait up to `timeout_s` for a first subscription; True if one arrived."""
        deadline = time.monotonic() + timeout_s
        while not self._socket.poll(POLL_MS):
            self._check_link()
            if time.monotonic() >= deadline:
                return False
        self._drain_subscriptions()
        return True

    def _check_link(self) -> None:
        if self._link is not None:
            self._link.check()

    def _drain_subscriptions(self) -> None:
        """Read subscription notices so they never pile up in the socket (they carry no data we need)."""
        while self._socket.getsockopt(zmq.EVENTS) & zmq.POLLIN:
            self._socket.recv(zmq.NOBLOCK)

    def publish(self, topic: str, event: dict[str, Any], captured_at: float | None = None) -> bool:
        """Stamp and send `event` on `topic`; False if it was dropped because a subscriber is full.

        `event` is updated in place (`seq`, and `latency_ms` from the `time.monotonic()` value
        `captured_at`), so the caller can log exactly what went out.  `seq` advances on a drop
        too, which is what lets subscribers detect it.  Non-finite numbers raise ValueError: they
        are not JSON, and such an event is not sent and consumes no `seq`.
        """
        seq = self._seq + 1
        event["seq"] = seq
        if captured_at is not None:
            event["latency_ms"] = (time.monotonic() - captured_at) * 1000.0
        payload = json.dumps(event, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()
        self._seq = seq
        self._check_link()
        self._drain_subscriptions()
        try:
            self._socket.send_multipart([topic.encode(), payload], flags=zmq.NOBLOCK)
        except zmq.Again:
            self.dropped += 1
            return False
        self.sent += 1
        return True

    def close(self) -> None:
        """Close the socket, waiting at most LINGER_MS to flush; terminate the context if we made it."""
        if self._link is not None:
            self._link.close()
        self._socket.close()
        self._authenticator.stop()
        if self._owns_context and not self._context.closed:
            self._context.term()

    def __enter__(self) -> Publisher:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.close()


def subscribe(
    endpoint: str,
    topics: list[str],
    context: zmq.Context | None = None,
    curve: CurveClient | None = None,
) -> Iterator[tuple[str, dict]]:
    """Yield `(topic, event)` from a publisher at `endpoint`, forever; for `ser-stream subscribe`.

    Waits in short polls rather than one blocking receive so that Ctrl-C interrupts it.  ZeroMQ
    filters topics by prefix, so the exact topic is checked here too; messages that are not
    `[topic, JSON object]` (a foreign publisher on the port) are skipped rather than fatal.
    ``curve`` holds the keys for a CURVE publisher.
    """
    check_endpoint(endpoint)
    owns_context = context is None
    context = zmq.Context() if context is None else context
    socket = context.socket(zmq.SUB)
    try:
        if curve is not None:
            connect_curve(socket, curve)
        for topic in topics:
            socket.setsockopt(zmq.SUBSCRIBE, topic.encode())
        try:
            socket.connect(endpoint)
        except zmq.ZMQError as error:
            raise endpoint_error("connect to", endpoint, error) from None
        while True:
            if not socket.poll(POLL_MS):
                continue
            frames = socket.recv_multipart()
            if len(frames) != 2:
                continue
            try:
                topic, event = frames[0].decode(), json.loads(frames[1])
            except ValueError:
                continue
            if topic in topics and isinstance(event, dict):
                yield topic, event
    finally:
        socket.close(linger=0)
        if owns_context:
            context.term()
