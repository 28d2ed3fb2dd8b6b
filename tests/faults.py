"""A TCP proxy in front of the S3 server that can make S3 "go away" and come back.

The outage is triggered by the request we want to break (e.g. the first PUT under
``predictions/``): that connection is cut before the server sees the whole request,
then the listener is closed (connection refused) for ``down_seconds`` and reopened.
With ``hang=True`` the server hangs instead: connections are accepted and requests read,
but nothing is answered (the worst case for a client's timeouts) until ``down_seconds`` pass.
"""

from __future__ import annotations

import socket
import threading
import time


class FlakyS3Proxy:
    def __init__(self, upstream_port: int, port: int, down_seconds: float = 6.0):
        self.upstream_port, self.port, self.down_seconds = upstream_port, port, down_seconds
        self.trigger: bytes | None = None  # transparent until armed
        self.hang = False  # the outage's kind: refused connections (False) or a server that never answers
        self._hanging = threading.Event()
        self._end = threading.Event()
        self.triggered = threading.Event()
        self.restored = threading.Event()
        self._listener: socket.socket | None = None
        self._stop = threading.Event()
        self._conns: list[socket.socket] = []
        self._lock = threading.Lock()

    def arm(self, trigger: bytes, hang: bool = False) -> None:
        """Cause one outage at the first request that contains ``trigger``."""
        self.triggered.clear()
        self.restored.clear()
        self._end.clear()
        self.hang = hang
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

    def end_outage(self) -> None:
        """End the outage now, before ``down_seconds`` have passed."""
        self._end.set()

    def _outage(self) -> None:
        self._end.wait(self.down_seconds)
        self._end.clear()
        if self._hanging.is_set():
            self._hanging.clear()
            self._drop_all()  # the held connections end; clients reconnect
            self.restored.set()
        elif not self._stop.is_set():
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
            if self._hanging.is_set():  # accepted, never answered
                with self._lock:
                    self._conns.append(client)
                threading.Thread(target=self._swallow, args=(client,), daemon=True).start()
                continue
            upstream = socket.create_connection(("127.0.0.1", self.upstream_port))
            with self._lock:
                self._conns += [client, upstream]
            threading.Thread(target=self._pipe, args=(client, upstream, True), daemon=True).start()
            threading.Thread(target=self._pipe, args=(upstream, client, False), daemon=True).start()

    def _swallow(self, client: socket.socket) -> None:
        try:
            while client.recv(65536):
                pass
        except OSError:
            pass

    def _pipe(self, src: socket.socket, dst: socket.socket, from_client: bool) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                if self._hanging.is_set():
                    continue  # read, never forwarded: no answer comes back
                if from_client and self.trigger and not self.triggered.is_set() and self.trigger in data:
                    self.triggered.set()
                    if self.hang:
                        self._hanging.set()
                        threading.Thread(target=self._outage, daemon=True).start()
                        continue
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
