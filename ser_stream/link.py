"""The daemon's connection to a `ser-stream proxy`: say why the proxy refuses it, and try again.

libzmq retries a connection that drops, but not one the peer refused during the handshake: a
device whose CURVE key the proxy does not admit, or that disagrees with it on CURVE at all,
would stay silent for good, even after the operator fixes the proxy.  This watches the socket's
handshake events, logs each refusal once, in words an operator can act on, and reconnects with
capped backoff until the proxy accepts.  It runs in the thread that owns the socket.
"""

from __future__ import annotations

import logging
import time

import zmq
from zmq.utils.monitor import recv_monitor_message

log = logging.getLogger("ser_stream")

#: After a refusal, connect again after this long, doubling up to the cap.
RETRY_FIRST_S = 1.0
RETRY_MAX_S = 30.0

_WATCHED = (
    zmq.EVENT_HANDSHAKE_SUCCEEDED
    | zmq.EVENT_HANDSHAKE_FAILED_AUTH
    | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
    | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL
)


class ProxyLink:
    """Watches one connecting socket's handshakes with its proxy; ``check`` runs in its owner thread."""

    def __init__(self, socket: zmq.Socket, endpoint: str, uses_curve: bool) -> None:
        self._socket = socket
        self._endpoint = endpoint
        self._uses_curve = uses_curve
        self._monitor = socket.get_monitor_socket(_WATCHED)
        self._refusal: str | None = None  # the last reason logged, while refused
        self._retry_at: float | None = None
        self._delay = RETRY_FIRST_S

    def check(self) -> None:
        """Handle the handshake events so far; reconnect if a retry is due.  Never waits."""
        while self._monitor.poll(0):
            event = recv_monitor_message(self._monitor)
            self._handle(event["event"], event["value"])
        if self._retry_at is not None and time.monotonic() >= self._retry_at:
            self._retry_at = None
            self._socket.disconnect(self._endpoint)
            self._socket.connect(self._endpoint)

    def _handle(self, kind: int, value: int) -> None:
        if kind == zmq.EVENT_HANDSHAKE_SUCCEEDED:
            if self._refusal is not None:
                log.info("the proxy at %s accepted this device", self._endpoint)
            self._refusal, self._delay = None, RETRY_FIRST_S
            return
        if kind == zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL:  # libzmq retries these itself
            self._say(
                "the CURVE handshake failed: is curve_server_key the public key of the proxy's frontend?"
                if self._uses_curve
                else "the handshake failed"
            )
            return
        if kind == zmq.EVENT_HANDSHAKE_FAILED_AUTH:
            reason = f"it refused this device's CURVE key (not among its admitted devices; ZAP status {value})"
        elif value == zmq.PROTOCOL_ERROR_ZMTP_MECHANISM_MISMATCH and self._uses_curve:
            reason = "it does not use CURVE on its frontend, and this device does"
        elif value == zmq.PROTOCOL_ERROR_ZMTP_MECHANISM_MISMATCH:
            reason = "it expects CURVE: set curve_server_key and curve_secret_key"
        else:
            reason = f"protocol error {value:#x} in the handshake"
        self._say(reason, retry=True)
        self._retry_at = time.monotonic() + self._delay
        self._delay = min(2 * self._delay, RETRY_MAX_S)

    def _say(self, reason: str, retry: bool = False) -> None:
        if reason != self._refusal:  # once per cause, not once per attempt
            then = f"; trying again, every {RETRY_MAX_S:g} s at most" if retry else ""
            log.warning("the proxy at %s does not take this device's events: %s%s", self._endpoint, reason, then)
            self._refusal = reason

    def close(self) -> None:
        self._socket.disable_monitor()
        self._monitor.close(linger=0)
