"""Run a command under a systemd unit's NoNewPrivileges=, MemoryDenyWriteExecute= and SystemCallFilter=.

PID 1 here is not systemd, so this applies what systemd would, the way it does: in this process,
with the kernel's own mechanisms (prctl PR_SET_NO_NEW_PRIVS and PR_SET_MDWE, a seccomp filter
loaded with libseccomp), then exec.  The system call filter follows systemd.exec(5): the first
``SystemCallFilter=`` without ``~`` is an allow-list (``@default`` is always allowed), later
``~`` lines take groups away, and what is not allowed fails with ``SystemCallErrorNumber=``.
Groups come from ``systemd-analyze syscall-filter``, so they are this systemd's own.

    python -m tests.sandbox UNIT COMMAND [ARG...]

Exits 3 with one line if the kernel cannot enforce something the unit asks for.
"""

from __future__ import annotations

import ctypes
import errno
import os
import subprocess
import sys
from pathlib import Path

PR_SET_NO_NEW_PRIVS = 38
PR_SET_MDWE = 65
PR_MDWE_REFUSE_EXEC_GAIN = 1
SCMP_ACT_ALLOW = 0x7FFF0000
UNSUPPORTED = 3


def unit_settings(path: Path) -> dict[str, list[str]]:
    values: dict[str, list[str]] = {}
    for line in path.read_text().splitlines():  # repeated keys accumulate in systemd; keep them all
        if "=" in line and not line.startswith(("#", "[")):
            key, _, value = line.partition("=")
            values.setdefault(key, []).append(value)
    return values


def syscall_groups() -> dict[str, list[str]]:
    """Each ``@group`` of this systemd and its entries (system calls or nested groups)."""
    listing = subprocess.run(["systemd-analyze", "syscall-filter"], capture_output=True, text=True, check=True).stdout
    groups: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in listing.splitlines():
        if line.startswith("@"):
            current = groups.setdefault(line.strip(), [])
        elif not line.strip():
            current = None
        elif current is not None and not line.strip().startswith("#"):
            current.append(line.strip())
    return groups


def expand(item: str, groups: dict[str, list[str]]) -> set[str]:
    if not item.startswith("@"):
        return {item}
    return set().union(*(expand(entry, groups) for entry in groups[item]))


def allowed_syscalls(filters: list[str], groups: dict[str, list[str]]) -> set[str]:
    allowed = expand("@default", groups)
    for line in filters:
        deny = line.startswith("~")
        names = set().union(*(expand(item, groups) for item in line.lstrip("~").split()))
        allowed = allowed - names if deny else allowed | names
    return allowed


def load_syscall_filter(allowed: set[str], error_number: int) -> None:
    seccomp = ctypes.CDLL("libseccomp.so.2", use_errno=True)
    seccomp.seccomp_init.restype = ctypes.c_void_p
    seccomp.seccomp_syscall_resolve_name.argtypes = [ctypes.c_char_p]
    seccomp.seccomp_rule_add.argtypes = [ctypes.c_void_p, ctypes.c_uint32, ctypes.c_int, ctypes.c_uint]
    seccomp.seccomp_load.argtypes = [ctypes.c_void_p]
    context = seccomp.seccomp_init(0x00050000 | error_number)  # SCMP_ACT_ERRNO(error_number)
    for name in sorted(allowed):
        number = seccomp.seccomp_syscall_resolve_name(name.encode())
        # A negative number: not a system call of this architecture.
        if number >= 0 and seccomp.seccomp_rule_add(context, SCMP_ACT_ALLOW, number, 0) != 0:
            sys.exit(f"sandbox: cannot allow {name}")
    if seccomp.seccomp_load(context) != 0:
        sys.exit("sandbox: cannot load the seccomp filter")


def main(argv: list[str]) -> None:
    unit, command = Path(argv[0]), argv[1:]
    settings = unit_settings(unit)
    libc = ctypes.CDLL(None, use_errno=True)
    if settings.get("NoNewPrivileges") == ["yes"] and libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        sys.exit(f"sandbox: PR_SET_NO_NEW_PRIVS failed: errno {ctypes.get_errno()}")
    mdwe = settings.get("MemoryDenyWriteExecute") == ["yes"]
    if mdwe and libc.prctl(PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN, 0, 0, 0) != 0:
        print(f"sandbox: PR_SET_MDWE unsupported by this kernel: errno {ctypes.get_errno()}", file=sys.stderr)
        sys.exit(UNSUPPORTED)
    if "SystemCallFilter" in settings:
        error_name = settings.get("SystemCallErrorNumber", ["EPERM"])[0]
        load_syscall_filter(
            allowed_syscalls(settings["SystemCallFilter"], syscall_groups()), getattr(errno, error_name)
        )
    os.execv(command[0], command)


if __name__ == "__main__":
    main(sys.argv[1:])
