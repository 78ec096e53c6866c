"""`ser-stream proxy`: many daemons in, one endpoint out, on libzmq's own steerable proxy.

Daemons connect their PUB sockets (`run --publish-connect`) to the XSUB frontend; subscribers
connect to the XPUB backend, and their subscriptions travel upstream to every daemon, so
filtering still happens at the sender.  `zmq.proxy_steerable` does the forwarding in its own
thread; this module only steers it (STATISTICS, TERMINATE over an inproc control socket) and
publishes its own `proxy` heartbeats through the frontend, like one more device.

Either side can be a CURVE server with its own admitted keys: the frontend admits devices, the
backend admits subscribers.  The proxy's own heartbeats come in over inproc, which libzmq
never puts through a security mechanism.
"""

from __future__ import annotations

import logging
import signal
import struct
import threading
import time

import zmq

from .errors import UserError
from .events import PROXY_COUNTERS, TOPIC_PROXY, proxy_event
from .publisher import Publisher, check_endpoint, endpoint_error
from .security import Authenticator, CurveServer

log = logging.getLogger("ser_stream")

_CONTROL = "inproc://ser-stream-proxy-control"
_OWN_EVENTS = "inproc://ser-stream-proxy-events"


class Proxy:
    """An XSUB/XPUB forwarder with statistics; ``run`` until ``request_stop``."""

    def __init__(
        self,
        frontend: str,
        backend: str,
        device_id: str,
        heartbeat_s: float = 5.0,
        frontend_curve: CurveServer | None = None,
        backend_curve: CurveServer | None = None,
    ) -> None:
        """With ``frontend_curve`` only admitted devices get their events in; with ``backend_curve``
        only admitted subscribers get anything out."""
        for endpoint in (frontend, backend):
            check_endpoint(endpoint)
        self.device_id = device_id
        self.heartbeat_s = heartbeat_s
        self._context = zmq.Context()
        self._authenticator = Authenticator(self._context)
        self._frontend = self._bound(zmq.XSUB, frontend, _OWN_EVENTS, curve=frontend_curve, domain="frontend")
        self._backend = self._bound(zmq.XPUB, backend, curve=backend_curve, domain="backend")
        self._control = self._bound(zmq.REP, _CONTROL)
        self._steer = self._context.socket(zmq.REQ)
        self._steer.connect(_CONTROL)
        self._own = Publisher(_OWN_EVENTS, context=self._context, connect=True)
        self._stop = threading.Event()

    def _bound(self, kind: int, *endpoints: str, curve: CurveServer | None = None, domain: str = "") -> zmq.Socket:
        sock = self._context.socket(kind)
        sock.setsockopt(zmq.LINGER, 0)
        try:
            if curve is not None:
                self._authenticator.serve(sock, curve, domain)
            for endpoint in endpoints:
                try:
                    sock.bind(endpoint)
                except zmq.ZMQError as error:
                    raise endpoint_error("bind", endpoint, error) from None
        except UserError:
            self._authenticator.stop()
            self._context.destroy(linger=0)
            raise
        return sock

    def request_stop(self, *_: object) -> None:
        """Signal-handler safe: only sets a flag the heartbeat loop polls."""
        self._stop.set()

    def statistics(self) -> dict[str, int]:
        self._steer.send(b"STATISTICS")
        frames = self._steer.recv_multipart()
        return {name: struct.unpack("=Q", frame)[0] for name, frame in zip(PROXY_COUNTERS, frames, strict=True)}

    def run(self) -> int:
        forwarder = threading.Thread(
            target=zmq.proxy_steerable,
            args=(self._frontend, self._backend, None, self._control),
            name="ser-stream-proxy",
            daemon=True,
        )
        forwarder.start()
        started = time.monotonic()
        log.info("proxy %s: forwarding frontend → backend", self.device_id)
        while not self._stop.wait(self.heartbeat_s):
            self._publish("running", time.monotonic() - started)
        self._publish("stopping", time.monotonic() - started)
        time.sleep(0.1)  # let the last heartbeat through before the forwarder stops
        self._steer.send(b"TERMINATE")
        forwarder.join(timeout=5)
        self._own.close()
        self._authenticator.stop()
        self._context.destroy(linger=0)
        return 0

    def _publish(self, state: str, uptime_s: float) -> None:
        event = proxy_event(state=state, counters=self.statistics(), uptime_s=uptime_s, device=self.device_id)
        self._own.publish(TOPIC_PROXY, event)


def run_proxy(
    frontend: str,
    backend: str,
    device_id: str,
    heartbeat_s: float,
    frontend_curve: CurveServer | None = None,
    backend_curve: CurveServer | None = None,
) -> int:
    proxy = Proxy(frontend, backend, device_id, heartbeat_s, frontend_curve, backend_curve)
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, proxy.request_stop)
    return proxy.run()
