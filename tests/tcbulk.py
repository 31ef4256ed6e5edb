"""A bulk TCP transfer between two named namespaces, measured at the receiver: run inside a
hermetic host (`python tcbulk.py SRC_NS DST_NS DST_ADDRESS BYTES`), prints JSON {bytes,
seconds}. Both ends live in this one process (each socket made in its namespace by a thread
that entered it), so the test needs no background server to clean up."""

from __future__ import annotations

import json
import socket
import sys
import threading
import time

from netdecl.backends import namespaces

PORT = 5201


def main(src_ns: str, dst_ns: str, address: str, size: int) -> None:
    def listen() -> socket.socket:
        server = socket.socket()
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.bind((address, PORT))
        server.listen(1)
        return server

    server = namespaces.run_in(dst_ns, listen)
    result: dict[str, float] = {}

    def receive() -> None:
        conn, _ = server.accept()
        got, first = 0, None
        while True:
            data = conn.recv(1 << 16)
            if not data:
                break
            if first is None:
                first = time.monotonic()
            got += len(data)
        result.update(bytes=got, seconds=time.monotonic() - (first or time.monotonic()))

    receiver = threading.Thread(target=receive)
    receiver.start()

    def send() -> None:
        with socket.create_connection((address, PORT), timeout=30) as conn:
            conn.sendall(b"x" * size)

    namespaces.run_in(src_ns, send)
    receiver.join(60)
    print(json.dumps(result))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]))
