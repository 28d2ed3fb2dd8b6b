"""A TCP proxy in front of the S3 server that can make S3 "go away" and come back.

The outage is triggered by the request we want to break (e.g. the first PUT under
``predictions/``): that connection is cut before the server sees the whole request,
then the listener is closed (connection refused) for ``down_seconds`` and reopened.
"""

from __future__ import annotations

import socket
import threading
import time


class FlakyS3Proxy:
    def __init__(self, upstream_port: int, port: int, down_seconds: float = 6.0):
        self.upstream_port, self.port, self.down_seconds = upstream_port, port, down_seconds
        self.trigger: bytes | None = None  # transparent until armed
        self.triggered = threading.Event()
        self.restored = threading.Event()
        self._listener: socket.socket | None = None
        self._stop = threading.Event()
        self._conns: list[socket.socket] = []
        self._lock = threading.Lock()

    def arm(self, trigger: bytes) -> None:
        """Cause one outage at the first request that contains ``trigger``."""
        self.triggered.clear()
        self.restored.clear()
        self.trigger = trigger

    # --- lifecycle -------------------------------------------------------------
    def start(self) -> FlakyS3Proxy:
        self._listen()
        threading.Thread(target=self._accept_loop, daemon=True).start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._close_listener()
        self._drop_all()

    def _listen(self) -> None:
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", self.port))
        sock.listen(64)
        sock.settimeout(0.2)
        self._listener = sock

    def _close_listener(self) -> None:
        if self._listener is not None:
            self._listener.close()
            self._listener = None

    def _drop_all(self) -> None:
        with self._lock:
            for conn in self._conns:
                try:
                    conn.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                conn.close()
            self._conns.clear()

    def _outage(self) -> None:
        time.sleep(self.down_seconds)
        if not self._stop.is_set():
            self._listen()
            self.restored.set()

    # --- data path ---------------------------------------------------------------
    def _accept_loop(self) -> None:
        while not self._stop.is_set():
            listener = self._listener
            if listener is None:
                time.sleep(0.05)
                continue
            try:
                client, _ = listener.accept()
            except (TimeoutError, OSError):
                continue
            upstream = socket.create_connection(("127.0.0.1", self.upstream_port))
            with self._lock:
                self._conns += [client, upstream]
            threading.Thread(target=self._pipe, args=(client, upstream, True), daemon=True).start()
            threading.Thread(target=self._pipe, args=(upstream, client, False), daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket, from_client: bool) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                if from_client and self.trigger and not self.triggered.is_set() and self.trigger in data:
                    self.triggered.set()
                    # S3 is gone before this call returns: no new connection is accepted and no pooled
                    # keep-alive connection survives, so a client's immediate retry cannot slip through.
                    self._close_listener()
                    self._drop_all()
                    threading.Thread(target=self._outage, daemon=True).start()
                    return  # the request never reaches S3 whole
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (src, dst):
                try:
                    sock.close()
                except OSError:
                    pass
