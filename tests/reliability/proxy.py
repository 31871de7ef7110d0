"""A small TCP proxy on 127.0.0.1 to put between a process and a real dependency (Redis)
and make the dependency slow, stalled, cut off or gone, from a test.

    with TcpProxy(6379) as proxy:      # listens on proxy.port, forwards to 127.0.0.1:6379
        proxy.delay = 0.8              # every chunk, each way, waits 0.8 s
        proxy.stalled = True           # connections stay open, nothing is forwarded
        proxy.cut()                    # every open connection is closed (new ones are fine)
        proxy.stop(); proxy.start()    # refused while stopped; back on the same port

Threads, not asyncio: the process under test is another process, and the test itself
is synchronous. Each connection has two pump threads that end when either side closes.
"""
from __future__ import annotations

import socket
import threading
import time

from tests.live import free_port

CHUNK = 65536
TICK = 0.02  # how often a stalled pump looks again


class TcpProxy:
    def __init__(self, target_port: int, target_host: str = "127.0.0.1", port: int | None = None):
        self.target = (target_host, target_port)
        self.port = port or free_port()
        self.delay = 0.0
        self.stalled = False
        self.accepted = 0
        self._listener: socket.socket | None = None
        self._conns: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._running = threading.Event()

    def __enter__(self) -> "TcpProxy":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def start(self) -> "TcpProxy":
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        listener.settimeout(0.2)  # so the accept loop sees stop()
        self._listener = listener
        self._running.set()
        threading.Thread(target=self._accept, args=(listener,), daemon=True, name=f"proxy-{self.port}").start()
        return self

    def stop(self) -> None:
        """Close the listener (new connections are refused) and every open connection."""
        self._running.clear()
        if self._listener is not None:
            self._listener.close()
            self._listener = None
        self.cut()

    def cut(self) -> None:
        """Close every open connection, both sides, as a network failure or a Redis restart would."""
        with self._lock:
            conns, self._conns = self._conns, set()
        for sock in conns:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()

    def _accept(self, listener: socket.socket) -> None:
        while self._running.is_set():
            try:
                client, _ = listener.accept()
            except socket.timeout:
                continue
            except OSError:  # the listener was closed
                return
            try:
                upstream = socket.create_connection(self.target, timeout=2)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            client.settimeout(None)
            with self._lock:
                self._conns |= {client, upstream}
                self.accepted += 1
            for src, dst in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(src, dst), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while True:
                data = src.recv(CHUNK)
                if not data:
                    break
                while self.stalled and self._running.is_set() and src in self._conns:
                    time.sleep(TICK)
                if self.delay:
                    time.sleep(self.delay)
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (src, dst):
                with self._lock:
                    self._conns.discard(sock)
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                sock.close()
