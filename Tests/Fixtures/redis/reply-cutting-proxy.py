#!/usr/bin/env python3
"""A TCP proxy in front of a Redis server that loses replies once.

    reply-cutting-proxy.py TARGET_PORT KEEP_BYTES

Prints the port it listens on. Traffic passes unchanged, except on the first
connection that sends an XADD: from then on the server's replies are held
back; once the client has sent nothing for 0.3 s (every command delivered and
run), only the first KEEP_BYTES of the held replies are passed on and both
sides are closed. The client is left with commands that ran but whose replies
never came: what a connection lost at the wrong moment does.
"""
import socket
import sys
import threading
import time

target, keep = int(sys.argv[1]), int(sys.argv[2])
listener = socket.socket()
listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
listener.bind(("127.0.0.1", 0))
listener.listen(16)
print(listener.getsockname()[1], flush=True)
cut_done = threading.Event()


def plain(a, b):
    try:
        while True:
            data = a.recv(65536)
            if not data:
                break
            b.sendall(data)
    except OSError:
        pass
    for s in (a, b):
        try:
            s.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


def cutting(client, server):
    state = {"xadd": False, "last": time.monotonic(), "held": b""}
    lock = threading.Lock()

    def upstream():
        try:
            while True:
                data = client.recv(65536)
                if not data:
                    break
                with lock:
                    if b"XADD" in data:
                        state["xadd"] = True
                    state["last"] = time.monotonic()
                server.sendall(data)
        except OSError:
            pass

    def downstream():
        try:
            while True:
                data = server.recv(65536)
                if not data:
                    break
                with lock:
                    if not state["xadd"]:
                        client.sendall(data)
                    else:
                        state["held"] += data
        except OSError:
            pass

    threading.Thread(target=upstream, daemon=True).start()
    threading.Thread(target=downstream, daemon=True).start()
    while True:
        time.sleep(0.05)
        with lock:
            if state["xadd"] and time.monotonic() - state["last"] > 0.3:
                client.sendall(state["held"][:keep])
                break
    for s in (client, server):
        try:
            s.shutdown(socket.SHUT_RDWR)
            s.close()
        except OSError:
            pass
    cut_done.set()


while True:
    client, _ = listener.accept()
    server = socket.create_connection(("127.0.0.1", target))
    if not cut_done.is_set() and not getattr(cutting, "started", False):
        cutting.started = True
        threading.Thread(target=cutting, args=(client, server), daemon=True).start()
    else:
        threading.Thread(target=plain, args=(client, server), daemon=True).start()
        threading.Thread(target=plain, args=(server, client), daemon=True).start()
