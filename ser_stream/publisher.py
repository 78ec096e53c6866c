"""The ZeroMQ side of the wire format: a PUB socket that never blocks the pipeline, and a subscriber.

Every message is a two-frame multipart `[topic, json]` (both UTF-8); see `events` and
`schemas/events-v1.json` for the payloads.
"""

from __future__ import annotations

import errno
import json
import logging
import time
from collections.abc import Callable, Iterator
from types import TracebackType
from typing import Any

import zmq

from .errors import EndpointError, NoEventsError, UserError
from .link import ProxyLink
from .security import Authenticator, connect_curve
from .settings import DEFAULT_ENDPOINT, CurveClient, CurveServer

#: How long close() may wait to flush queued messages; short so a stopping daemon exits promptly.
LINGER_MS = 200
#: subscribe() waits in polls this long so that Ctrl-C is noticed between them.
POLL_MS = 100
#: subscribe() says it is still waiting when nothing arrived for this long.
WAITING_NOTICE_S = 3.0
#: subscribe() says at most this often that it skipped messages that are not events.
SKIP_NOTICE_S = 10.0

log = logging.getLogger("ser_stream")


def _echo(endpoint: str) -> str:
    """The endpoint as the user wrote it, quoted, and cut short if absurdly long: error messages stay one line."""
    return repr(endpoint) if len(endpoint) <= 80 else f"{endpoint[:60]!r}…({len(endpoint)} characters)"


def check_endpoint(endpoint: str) -> None:
    """Reject what libzmq would misread: it wraps a TCP port above 65535 into a different port silently."""
    transport, separator, address = endpoint.partition("://")
    if not (transport and separator and address):
        raise EndpointError(
            f"invalid endpoint {_echo(endpoint)}: expected transport://address, e.g. {DEFAULT_ENDPOINT}"
        )
    if transport == "tcp":
        port = address.rpartition(":")[2]
        if port != "*" and not (port.isdigit() and len(port) <= 5 and int(port) <= 65535):
            raise EndpointError(f"invalid endpoint {_echo(endpoint)}: the TCP port must be a number 0-65535 or *")


def attach(socket: zmq.Socket, endpoint: str, bind: bool) -> None:
    """Bind or connect ``socket`` to a checked ``endpoint``; EndpointError naming the real cause.

    An IPv6 address (``tcp://[::1]:5556``) turns on the socket's IPv6 option, without which libzmq
    cannot use one; other endpoints keep IPv4 only, as before.
    """
    host = endpoint.partition("://")[2].rpartition(":")[0]
    if host.startswith("["):
        socket.setsockopt(zmq.IPV6, 1)
    try:
        (socket.bind if bind else socket.connect)(endpoint)
    except zmq.ZMQError as error:
        raise endpoint_error("bind" if bind else "connect to", endpoint, error) from None


def endpoint_error(action: str, endpoint: str, error: zmq.ZMQError) -> EndpointError:
    host = endpoint.partition("://")[2].rpartition(":")[0]
    if error.errno == errno.ENODEV:  # libzmq binds to an address or an interface's name, and found neither
        reason = f"{host!r} is neither an IP address nor a network interface of this machine"
    elif error.errno == errno.EADDRNOTAVAIL:
        reason = f"{host} is not an address of this machine"
    else:
        reason = zmq.strerror(error.errno).lower()
    if error.errno in (zmq.EINVAL, zmq.EPROTONOSUPPORT):
        return EndpointError(f"invalid endpoint {_echo(endpoint)}: {reason}")
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
            attach(self._socket, endpoint, bind=not connect)
        except EndpointError:
            self.close()
            raise
        self._endpoint = self._socket.getsockopt_string(zmq.LAST_ENDPOINT)
        self._seq = 0
        self.sent = 0
        self.dropped = 0

    @property
    def endpoint(self) -> str:
        """The bound address, with the real port when bound to `tcp://HOST:*`."""
        return self._endpoint

    def wait_for_subscriber(self, timeout_s: float, stopped: Callable[[], bool] = lambda: False) -> bool:
        """Wait up to `timeout_s` for a first subscription; True if one arrived.  Ends early, False,
        once ``stopped()`` (a stop request), which is asked every POLL_MS."""
        deadline = time.monotonic() + timeout_s
        while not self._socket.poll(POLL_MS):
            self._check_link()
            if time.monotonic() >= deadline or stopped():
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
    timeout_s: float | None = None,
) -> Iterator[tuple[str, dict]]:
    """Yield `(topic, event)` from a publisher at `endpoint`, forever; for `ser-stream subscribe`.

    Waits in short polls rather than one blocking receive so that Ctrl-C interrupts it.  ZeroMQ
    filters topics by prefix, so the exact topic is checked here too.  A message that is not
    `[topic, JSON object]` (a foreign or rogue publisher on the port) is skipped with a warning,
    never fatal.  Nothing arriving is not an error: after WAITING_NOTICE_S it says, once, that it
    is waiting; with ``timeout_s`` it raises NoEventsError when that long passes without an event.
    ``curve`` holds the keys for a CURVE publisher.
    """
    check_endpoint(endpoint)
    owns_context = context is None
    context = zmq.Context() if context is None else context
    socket = context.socket(zmq.SUB)
    skipped = _Skipped()
    try:
        if curve is not None:
            connect_curve(socket, curve)
        for topic in topics:
            socket.setsockopt(zmq.SUBSCRIBE, topic.encode())
        attach(socket, endpoint, bind=False)
        started = last_event = time.monotonic()
        waiting_said = False
        while True:
            if not socket.poll(POLL_MS):
                idle = time.monotonic() - last_event
                if timeout_s is not None and idle >= timeout_s:
                    raise NoEventsError(f"no event from {endpoint} in {timeout_s:g} s")
                if not waiting_said and last_event == started and idle >= WAITING_NOTICE_S:
                    log.info(
                        "waiting for events from %s (none after %.0f s: is anything publishing there?)", endpoint, idle
                    )
                    waiting_said = True
                continue
            topic, event = _parse(socket.recv_multipart(), skipped)
            if topic in topics and isinstance(event, dict):
                last_event = time.monotonic()
                yield topic, event
    finally:
        socket.close(linger=0)
        if owns_context:
            context.term()


class _Skipped:
    """Says that messages were skipped: the first at once, then at most once per SKIP_NOTICE_S with a count."""

    def __init__(self) -> None:
        self._count = 0
        self._next_notice = 0.0

    def add(self, why: str) -> None:
        self._count += 1
        now = time.monotonic()
        if now >= self._next_notice:
            more = f" ({self._count - 1} more skipped before it)" if self._count > 1 else ""
            log.warning("skipped a message that is not an event: %s%s", why, more)
            self._count, self._next_notice = 0, now + SKIP_NOTICE_S


def _parse(frames: list[bytes], skipped: _Skipped) -> tuple[str | None, dict | None]:
    """``(topic, event)`` of a well-formed message; ``(None, None)`` for anything else, counted in ``skipped``."""
    if len(frames) != 2:
        skipped.add(f"{len(frames)} frames, not [topic, JSON]")
        return None, None
    try:
        topic, event = frames[0].decode(), json.loads(frames[1])
    except RecursionError:
        skipped.add("JSON nested too deeply")
        return None, None
    except ValueError:  # not UTF-8, not JSON
        skipped.add("not UTF-8 JSON")
        return None, None
    if not isinstance(event, dict):
        skipped.add(f"JSON {type(event).__name__}, not an object")
        return None, None
    return topic, event
