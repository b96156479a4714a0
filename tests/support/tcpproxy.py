"""A loopback TCP proxy the fault tests put between the engine and PostgreSQL.

It forwards bytes both ways and can, on command, *stall* every connection
(stop forwarding, keep the sockets open: a network that silently drops
traffic) or *cut* them (reset both sides: a broken link). Listens on
127.0.0.1 only; one thread accepts, one thread per connection pumps.
"""

from __future__ import annotations

import contextlib
import selectors
import socket
import struct
import threading
from typing import Any

_CHUNK = 65536


def _reset(sock: socket.socket) -> None:
    """Close with an RST rather than a FIN: the peer sees a broken connection."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    with contextlib.suppress(OSError):
        sock.close()


class _Link:
    """One client connection and its upstream connection."""

    def __init__(self, proxy: TcpProxy, client: socket.socket, upstream: socket.socket) -> None:
        self.proxy = proxy
        self.client = client
        self.upstream = upstream
        self.closed = threading.Event()

    def pump(self) -> None:
        peers = {self.client: self.upstream, self.upstream: self.client}
        with selectors.DefaultSelector() as sel:
            for sock in peers:
                sel.register(sock, selectors.EVENT_READ)
            while not self.closed.is_set():
                # While stalled nothing is read: the kernel buffers fill and the
                # senders block, as behind a dead network path.
                if not self.proxy._flowing.wait(0.05):
                    continue
                try:
                    ready = sel.select(0.05)
                except (OSError, ValueError):  # closed under us by cut()
                    break
                for key, _ in ready:
                    src: socket.socket = key.fileobj  # type: ignore[assignment]
                    try:
                        data = src.recv(_CHUNK)
                    except OSError:
                        data = b""
                    if not data:
                        self.close()
                        return
                    try:
                        peers[src].sendall(data)
                    except OSError:
                        self.close()
                        return
        self.close()

    def close(self, *, reset: bool = False) -> None:
        self.closed.set()
        for sock in (self.client, self.upstream):
            if reset:
                _reset(sock)
            else:
                with contextlib.suppress(OSError):
                    sock.close()


class TcpProxy:
    """Forward ``127.0.0.1:<port>`` to ``target``; :meth:`stall`, :meth:`resume`, :meth:`cut`."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._flowing = threading.Event()
        self._flowing.set()
        self._stopping = threading.Event()
        # Guards _links (accept thread adds, cut()/stop() read and clear).
        self._lock = threading.Lock()
        self._links: list[_Link] = []
        self._threads: list[threading.Thread] = []
        self.accepted = 0

    def start(self) -> TcpProxy:
        thread = threading.Thread(target=self._accept_loop, name="tcpproxy-accept", daemon=True)
        thread.start()
        self._threads.append(thread)
        return self

    def _accept_loop(self) -> None:
        self._listener.settimeout(0.1)
        while not self._stopping.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                _reset(client)
                continue
            upstream.settimeout(None)
            client.settimeout(None)
            link = _Link(self, client, upstream)
            with self._lock:
                self._links.append(link)
                self.accepted += 1
            thread = threading.Thread(target=link.pump, name="tcpproxy-pump", daemon=True)
            thread.start()
            self._threads.append(thread)

    @property
    def open_connections(self) -> int:
        with self._lock:
            return sum(1 for link in self._links if not link.closed.is_set())

    def stall(self) -> None:
        """Stop forwarding in both directions; connections stay open."""
        self._flowing.clear()

    def resume(self) -> None:
        self._flowing.set()

    def cut(self) -> int:
        """Reset every open connection (new ones are still accepted); return how many."""
        with self._lock:
            links, self._links = self._links, []
        live = [link for link in links if not link.closed.is_set()]
        for link in live:
            link.close(reset=True)
        return len(live)

    def stop(self) -> None:
        self._stopping.set()
        self._flowing.set()
        with contextlib.suppress(OSError):
            self._listener.close()
        self.cut()
        for thread in self._threads:
            thread.join(5)

    def __enter__(self) -> TcpProxy:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()
