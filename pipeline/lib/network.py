"""Is a host there? One short probe, so an offline kernel fails in seconds, not after a client's retries."""
from __future__ import annotations

import socket

PROBE_SECONDS = 3.0  # offline kernels otherwise spend ~30 s in the download clients' retries


def answers(host: str, port: int = 443, seconds: float = PROBE_SECONDS) -> bool:
    try:
        socket.create_connection((host, port), timeout=seconds).close()
        return True
    except OSError:
        return False
