"""CURVE on the wire, with pyzmq's zmq.auth: key pairs, servers that admit listed clients only.

A server socket holds a secret key and a folder of the public keys of the clients it admits; a
client socket holds its own secret key and the server's public key.  Which side is which does
not follow bind or connect: a daemon's bound PUB socket is a server to its subscribers, a
proxy's frontend is a server to the daemons that connect to it, and those daemons are its
clients.  Keys are ZeroMQ certificate files, as `ser-stream keygen` writes them.
"""

from __future__ import annotations

import os
from pathlib import Path

import zmq
import zmq.auth
from zmq.auth.thread import ThreadAuthenticator

from .errors import ConfigError
from .settings import CurveClient, CurveServer


def keygen(directory: Path, name: str) -> tuple[Path, Path]:
    """Write ``name.key`` (public, to hand out) and ``name.key_secret`` (keep it) into ``directory``.

    An existing pair is never replaced: its public key may be out with clients already.  The
    secret is created unreadable to others (umask 077), not restricted after the fact.
    """
    for existing in (directory / f"{name}.key", directory / f"{name}.key_secret"):
        if existing.exists():
            raise ConfigError(f"{existing} exists; keygen never replaces a key pair: remove it first, or pick --name")
    previous_umask = os.umask(0o077)
    try:
        directory.mkdir(parents=True, exist_ok=True)
        public, secret = zmq.auth.create_certificates(directory, name)
    except OSError as error:
        raise ConfigError(f"cannot write keys into {directory}: {error.strerror or error}") from None
    finally:
        os.umask(previous_umask)
    Path(public).chmod(0o644)  # to hand out
    return Path(public), Path(secret)


def _load(path: Path, secret: bool) -> tuple[bytes, bytes | None]:
    what = "secret key (.key_secret)" if secret else "public key (.key)"
    try:
        public, private = zmq.auth.load_certificate(path)
    except (OSError, ValueError) as error:
        raise ConfigError(f"{path}: not a readable CURVE {what} ({error})") from None
    if secret and private is None:
        raise ConfigError(f"{path}: holds no secret key; give the .key_secret file")
    return public, private


class Authenticator:
    """The ZAP handler of one context (libzmq takes one per context), started by the first server.

    Each server socket gets its own ZAP domain and its own folder of admitted keys, so a proxy's
    frontend admits devices and its backend admits subscribers.  The folders are read when a
    socket is set up: a key added later counts from the next start.
    """

    def __init__(self, context: zmq.Context) -> None:
        self._context = context
        self._thread: ThreadAuthenticator | None = None

    def serve(self, socket: zmq.Socket, server: CurveServer, domain: str) -> None:
        """Make ``socket`` a CURVE server that admits only the clients in ``server.allowed_clients``."""
        public, secret = _load(server.secret_key, secret=True)
        if not server.allowed_clients.is_dir():
            raise ConfigError(f"{server.allowed_clients}: not a folder of client public keys")
        if self._thread is None:
            self._thread = ThreadAuthenticator(self._context)
            self._thread.start()
        self._thread.configure_curve(domain=domain, location=str(server.allowed_clients))
        socket.zap_domain = domain.encode()
        socket.curve_secretkey = secret
        socket.curve_publickey = public
        socket.curve_server = True

    def stop(self) -> None:
        if self._thread is not None:
            self._thread.stop()
            self._thread = None


def connect_curve(socket: zmq.Socket, client: CurveClient) -> None:
    """Make ``socket`` a CURVE client of the server whose public key ``client`` names."""
    public, secret = _load(client.secret_key, secret=True)
    socket.curve_secretkey = secret
    socket.curve_publickey = public
    socket.curve_serverkey = _load(client.server_key, secret=False)[0]
