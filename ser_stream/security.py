"""CURVE on the wire, with pyzmq's zmq.auth: key pairs, a server that admits listed clients only.

A server (the daemon's PUB socket, or a proxy's backend) holds a secret key and a folder of the
public keys of the clients it admits; a client (a subscriber) holds its own secret key and the
server's public key.  Keys are ZeroMQ certificate files, as `ser-stream keygen` writes them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import zmq
import zmq.auth
from zmq.auth.thread import ThreadAuthenticator

from .errors import ConfigError


@dataclass(frozen=True)
class CurveServer:
    secret_key: Path  # the server's NAME.key_secret
    allowed_clients: Path  # a folder of admitted clients' NAME.key files


def keygen(directory: Path, name: str) -> tuple[Path, Path]:
    """Write ``name.key`` (public, to hand out) and ``name.key_secret`` (keep it) into ``directory``."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
        public, secret = zmq.auth.create_certificates(directory, name)
    except OSError as error:
        raise ConfigError(f"cannot write keys into {directory}: {error.strerror or error}") from None
    Path(secret).chmod(0o600)
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


def serve_curve(socket: zmq.Socket, context: zmq.Context, server: CurveServer) -> ThreadAuthenticator:
    """Make ``socket`` a CURVE server that admits only the clients in ``server.allowed_clients``.

    Returns the running authenticator; stop it when the socket closes.
    """
    public, secret = _load(server.secret_key, secret=True)
    if not server.allowed_clients.is_dir():
        raise ConfigError(f"{server.allowed_clients}: not a folder of client public keys")
    authenticator = ThreadAuthenticator(context)
    authenticator.start()
    authenticator.configure_curve(domain="*", location=str(server.allowed_clients))
    socket.curve_secretkey = secret
    socket.curve_publickey = public
    socket.curve_server = True
    return authenticator


def connect_curve(socket: zmq.Socket, server_public_key: Path, client_secret_key: Path) -> None:
    """Make ``socket`` a CURVE client of the server whose public key is given."""
    public, secret = _load(client_secret_key, secret=True)
    socket.curve_secretkey = secret
    socket.curve_publickey = public
    socket.curve_serverkey = _load(server_public_key, secret=False)[0]
