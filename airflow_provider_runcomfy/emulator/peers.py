"""Find which local process owns the client end of a TCP connection (Linux ``/proc`` only).

Real-process tests use this to prove *who* polled: for example that every status poll of a
deferred task came from Airflow's triggerer and none from a worker's task process. The lookup is
blocking file I/O, so the server runs it in its thread pool, once per connection.
"""

from __future__ import annotations

import os

_PROC_NET_FILES = ("/proc/net/tcp", "/proc/net/tcp6")


def _socket_inode(client_port: int, server_port: int) -> str | None:
    """The inode of the socket whose local port is ``client_port`` and remote port is ``server_port``."""
    for path in _PROC_NET_FILES:
        try:
            with open(path, encoding="ascii") as fh:
                lines = fh.readlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) < 10:
                continue
            local_port = int(fields[1].rsplit(":", 1)[1], 16)
            remote_port = int(fields[2].rsplit(":", 1)[1], 16)
            if local_port == client_port and remote_port == server_port and fields[9] != "0":
                return fields[9]
    return None


def find_peer_pid(client_port: int, server_port: int) -> int | None:
    """The PID of the local process holding the client socket ``client_port`` -> ``server_port``.

    Looks the socket's inode up in ``/proc/net/tcp`` and ``/proc/net/tcp6``, then scans
    ``/proc/[0-9]*/fd`` for a ``socket:[inode]`` link. Returns ``None`` when it cannot tell (not
    Linux, the client already closed, or another user's process that cannot be inspected). When
    several processes share the socket (a fork), the emulator's own process wins if it is one of
    them, else the lowest PID.
    """
    inode = _socket_inode(client_port, server_port)
    if inode is None:
        return None
    target = f"socket:[{inode}]"
    try:
        pids = sorted(int(name) for name in os.listdir("/proc") if name.isdigit())
    except OSError:
        return None
    me = os.getpid()
    if me in pids:  # an in-process client (a test using the emulator fixture) is the common case
        pids.remove(me)
        pids.insert(0, me)
    for pid in pids:
        fd_dir = f"/proc/{pid}/fd"
        try:
            fds = os.listdir(fd_dir)
        except OSError:
            continue
        for fd in fds:
            try:
                if os.readlink(f"{fd_dir}/{fd}") == target:
                    return pid
            except OSError:
                continue
    return None
