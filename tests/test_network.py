"""The one network probe (lib/network.py): a host that answers, and one that does not, in about the probe's time."""
import socket
import time

from pipeline.lib.network import answers


def test_a_listening_port_answers_and_a_closed_one_does_not():
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    port = server.getsockname()[1]
    try:
        assert answers("127.0.0.1", port, seconds=1)
    finally:
        server.close()
    started = time.monotonic()
    assert not answers("127.0.0.1", port, seconds=1)
    assert time.monotonic() - started < 2
