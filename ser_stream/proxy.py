"""`ser-stream proxy`: many daemons in, one endpoint out, on libzmq's own steerable proxy.

Daemons connect their PUB sockets (`run --publish-connect`) to the XSUB frontend; subscribers
connect to the XPUB backend, and their subscriptions travel upstream to every daemon, so
filtering still happens at the sender.  `zmq.proxy_steerable` does the forwarding in its own
thread; this module only steers it (STATISTICS, TERMINATE over an inproc control socket) and
publishes its own `proxy` heartbeats through the frontend, like one more device.

Under systemd (`systemd/ser-stream-proxy.service`) it says READY once both sides are bound, a
STATUS line with the counts every heartbeat, and pets the watchdog only after a statistics round
trip through the forwarder: a wedged forwarder stops the pings.

Either side can be a CURVE server with its own admitted keys: the frontend admits devices, the
backend admits subscribers.  The proxy's own heartbeats come in over inproc, which libzmq
never puts through a security mechanism.
"""

from __future__ import annotations

import logging
import struct
import threading
import time
from pathlib import Path
from typing import Any

import zmq

from .config import resolve
from .control import Control
from .errors import UserError
from .events import PROXY_COUNTERS, TOPIC_PROXY, proxy_event
from .logs import setup_logging
from .notify import Notifier
from .publisher import Publisher, attach, check_endpoint
from .security import Authenticator
from .settings import CurveServer, ProxySettings

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
        heartbeat_s: float,
        frontend_curve: CurveServer | None = None,
        backend_curve: CurveServer | None = None,
        notifier: Notifier | None = None,
    ) -> None:
        """With ``frontend_curve`` only admitted devices get their events in; with ``backend_curve``
        only admitted subscribers get anything out."""
        for endpoint in (frontend, backend):
            check_endpoint(endpoint)
        self.device_id = device_id
        self.heartbeat_s = heartbeat_s
        self.notifier = Notifier({}) if notifier is None else notifier
        self._context = zmq.Context()
        self._authenticator = Authenticator(self._context)
        self._frontend = self._bound(zmq.XSUB, frontend, _OWN_EVENTS, curve=frontend_curve, domain="frontend")
        self._backend = self._bound(zmq.XPUB, backend, curve=backend_curve, domain="backend")
        self._control = self._bound(zmq.REP, _CONTROL)
        self._steer = self._context.socket(zmq.REQ)
        self._steer.connect(_CONTROL)
        self._own = Publisher(_OWN_EVENTS, context=self._context, connect=True)
        self.control = Control()  # stop requests, from SIGTERM/SIGINT or request_stop

    def _bound(self, kind: int, *endpoints: str, curve: CurveServer | None = None, domain: str = "") -> zmq.Socket:
        sock = self._context.socket(kind)
        sock.setsockopt(zmq.LINGER, 0)
        try:
            if curve is not None:
                self._authenticator.serve(sock, curve, domain)
            for endpoint in endpoints:
                attach(sock, endpoint, bind=True)
        except UserError:
            self._authenticator.stop()
            self._context.destroy(linger=0)
            raise
        return sock

    def request_stop(self) -> None:
        """From any thread or a signal handler: the heartbeat loop wakes and stops."""
        self.control.request_stop()

    def statistics(self) -> dict[str, int]:
        self._steer.send(b"STATISTICS")
        frames = self._steer.recv_multipart()
        return {name: struct.unpack("=Q", frame)[0] for name, frame in zip(PROXY_COUNTERS, frames, strict=True)}

    def _forward(self) -> None:
        """libzmq's forwarding loop; it answers the control socket until told to TERMINATE."""
        zmq.proxy_steerable(self._frontend, self._backend, None, self._control)

    def run(self) -> int:
        forwarder = threading.Thread(target=self._forward, name="ser-stream-proxy", daemon=True)
        forwarder.start()
        started = time.monotonic()
        log.info("proxy %s: forwarding frontend → backend", self.device_id)
        self.notifier.ready(_status_line("forwarding", self.statistics()))
        watchdog_s = self.notifier.watchdog_interval_s
        next_heartbeat = started + self.heartbeat_s
        next_ping = started if watchdog_s is not None else float("inf")
        while not self.control.wait(min(next_heartbeat, next_ping) - time.monotonic()):
            counters = self.statistics()  # a round trip through the forwarder: it is alive
            now = time.monotonic()
            if watchdog_s is not None and now >= next_ping:
                self.notifier.watchdog()
                next_ping = now + watchdog_s
            if now >= next_heartbeat:
                self._publish("running", counters, now - started)
                self.notifier.status(_status_line("forwarding", counters))
                next_heartbeat = now + self.heartbeat_s
        counters = self.statistics()
        self.notifier.stopping(_status_line("stopping", counters))
        self._publish("stopping", counters, time.monotonic() - started)
        time.sleep(0.1)  # let the last heartbeat through before the forwarder stops
        self._steer.send(b"TERMINATE")
        forwarder.join(timeout=5)
        self._own.close()
        self._authenticator.stop()
        self._context.destroy(linger=0)
        return 0

    def _publish(self, state: str, counters: dict[str, int], uptime_s: float) -> None:
        self._own.publish(
            TOPIC_PROXY, proxy_event(state=state, counters=counters, uptime_s=uptime_s, device=self.device_id)
        )


def _status_line(state: str, counters: dict[str, int]) -> str:
    """One line for `systemctl status`."""
    return (
        f"{state}: {counters['frontend_messages_in']} messages in from devices, "
        f"{counters['backend_messages_out']} out to subscribers"
    )


def run_proxy(config_path: Path | None, flags: dict[str, Any]) -> int:
    """`ser-stream proxy`: settings (defaults ← file ← flags) → logging → the proxy, until SIGTERM/SIGINT."""
    config = resolve(config_path, flags, ProxySettings)
    setup_logging(config.log_level)
    proxy = Proxy(
        config.frontend,
        config.backend,
        config.device_id,
        config.heartbeat_s,
        frontend_curve=config.curve("frontend"),
        backend_curve=config.curve("backend"),
        notifier=Notifier(),
    )
    proxy.control.install(reload=False)
    try:
        return proxy.run()
    finally:
        proxy.control.ignore_signals()
