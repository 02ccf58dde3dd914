#!/usr/bin/env python3
"""A normal request's latency while `infer --serve` holds many slow connections (not a test).

Starts the server on loopback with a random-weight model and alternates, round by round, a
baseline (no other client) and a crowd of CONNECTIONS slow clients in four equal kinds:
request headers sent a byte at a time (slowloris), bodies trickled at a few bytes a second,
WebSocket sessions opened and left idle (they never read, so never answer a ping), and
connections opened and left silent. In each round it times REQUESTS normal stylize requests
(the photo scaled to SIZE by max_size), and reads the server's memory (VmRSS, VmHWM) and file
descriptors. After the last crowd it keeps the sockets open and waits for the server's own
timeouts to release every connection, counting the descriptors again.

    flock /work/bench.lock .venv/bin/python scripts/bench/slow_clients.py

Settings (environment): CONNECTIONS=1000 ROUNDS=3 REQUESTS=5 SIZE=256 TIMEOUT=30 (the
server's header, body and WebSocket idle timeouts, seconds; the pings every TIMEOUT/2)
PHOTO=datasets/sample/hubble_deep_field.jpg INFER=target/release/infer.
Prints a Markdown table and the figures as JSON.
"""
import json
import os
import resource
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CONNECTIONS = int(os.environ.get("CONNECTIONS", 1000))
ROUNDS = int(os.environ.get("ROUNDS", 3))
REQUESTS = int(os.environ.get("REQUESTS", 5))
SIZE = int(os.environ.get("SIZE", 256))
TIMEOUT = float(os.environ.get("TIMEOUT", 30))
PHOTO = os.environ.get("PHOTO", os.path.join(ROOT, "datasets/sample/hubble_deep_field.jpg"))
INFER = os.environ.get("INFER", os.path.join(ROOT, "target/release/infer"))


def random_model(path):
    """A random-weight style model (latency does not depend on the weights)."""
    sys.path.insert(0, os.path.join(ROOT, "scripts"))
    import torch
    from safetensors.torch import save_file
    from torch_net import TransformerNet

    torch.manual_seed(0)
    save_file({k: v.contiguous() for k, v in TransformerNet().state_dict().items()}, path)


def status(pid):
    fields = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            fields[key] = value.split()
    return int(fields["VmRSS"][0]) // 1024, int(fields["VmHWM"][0]) // 1024


def fds(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


def metric(url, series):
    text = urllib.request.urlopen(url + "/metrics", timeout=60).read().decode()
    for line in text.splitlines():
        if line.startswith(series + " "):
            return float(line.split()[1])
    return None


def stylize(url, body):
    start = time.perf_counter()
    request = urllib.request.Request(
        f"{url}/v1/stylize?model=bench&max_size={SIZE}&format=jpeg", data=body, method="POST"
    )
    with urllib.request.urlopen(request, timeout=120) as reply:
        assert reply.status == 200, reply.status
        reply.read()
    return time.perf_counter() - start


class Crowd:
    """CONNECTIONS slow connections of four kinds, a trickler thread feeding two of them."""

    def __init__(self, addr):
        host, port = addr
        quarter = CONNECTIONS // 4
        self.sockets, trickled = [], []
        for i in range(2 * quarter):
            s = socket.create_connection((host, port))
            if i % 2 == 0:
                s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")
            else:
                s.sendall(
                    b"POST /v1/stylize?model=bench HTTP/1.1\r\nHost: x\r\n"
                    b"Content-Length: 1000000\r\n\r\n"
                )
            trickled.append(s)
        for _ in range(quarter):
            s = socket.create_connection((host, port))
            s.sendall(
                b"GET /v1/live?model=bench HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
                b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                b"Sec-WebSocket-Version: 13\r\n\r\n"
            )
            head = b""
            while b"\r\n\r\n" not in head:
                head += s.recv(1024)
            assert head.startswith(b"HTTP/1.1 101"), head
            self.sockets.append(s)
        for _ in range(CONNECTIONS - 3 * quarter):
            self.sockets.append(socket.create_connection((host, port)))
        self.sockets += trickled
        self.stop = threading.Event()

        def trickle():
            while not self.stop.wait(1.0):
                for s in trickled:
                    try:
                        s.send(b"a")
                    except OSError:
                        pass

        self.thread = threading.Thread(target=trickle, daemon=True)
        self.thread.start()

    def close(self):
        self.stop.set()
        self.thread.join()
        for s in self.sockets:
            s.close()


def main():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    with open(PHOTO, "rb") as f:
        body = f.read()
    work = tempfile.mkdtemp(prefix="bench-slow-")
    os.makedirs(f"{work}/models")
    random_model(f"{work}/models/bench.safetensors")
    t = str(TIMEOUT)
    server = subprocess.Popen(
        [INFER, "--serve", "127.0.0.1:0", "--device", "cpu", "--models", f"{work}/models",
         "--max-connections", str(CONNECTIONS + 100), "--header-timeout", t,
         "--body-timeout", t, "--ws-idle-timeout", t, "--ws-ping-timeout", str(TIMEOUT / 3)],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )
    try:
        line = server.stdout.readline()
        url = line[line.index("http://"):].split()[0].rstrip("/")
        host, port = url[len("http://"):].split(":")
        stylize(url, body)  # warm
        time.sleep(1)
        fds_idle = fds(server.pid)
        rss_idle, _ = status(server.pid)
        rows, crowd = [], None
        for r in range(ROUNDS):
            base = [stylize(url, body) for _ in range(REQUESTS)]
            opened = time.perf_counter()
            crowd = Crowd((host, int(port)))
            opened = time.perf_counter() - opened
            held = metric(url, "faststyle_connections_open")
            fds_held = fds(server.pid)
            loaded = [stylize(url, body) for _ in range(REQUESTS)]
            rss, peak = status(server.pid)
            rows.append(dict(base=statistics.median(base), loaded=statistics.median(loaded),
                             opened=opened, held=held, fds=fds_held, rss=rss, peak=peak))
            if r < ROUNDS - 1:
                crowd.close()
                time.sleep(2)
        # The last crowd stays open on the client's side: the server's timeouts end it.
        start = time.perf_counter()
        while metric(url, "faststyle_connections_open") != 1.0:
            if time.perf_counter() - start > 3 * TIMEOUT + 30:
                break
            time.sleep(0.5)
        released_after = time.perf_counter() - start
        time.sleep(1)
        fds_after = fds(server.pid)
        timeouts = {p: metric(url, f'faststyle_timeouts_total{{phase="{p}"}}')
                    for p in ["header", "body", "ws_ping", "ws_idle"]}
        crowd.close()
        after = stylize(url, body)
    finally:
        server.terminate()
        server.wait(timeout=60)
    print(f"| round | p50 alone | p50 with {CONNECTIONS} slow | ratio | held | fds | RSS | peak |")
    print("|---|---|---|---|---|---|---|---|")
    for i, r in enumerate(rows, 1):
        print(f"| {i} | {r['base'] * 1000:.0f} ms | {r['loaded'] * 1000:.0f} ms | "
              f"{r['loaded'] / r['base']:.2f}× | {r['held']:.0f} | {r['fds']} | "
              f"{r['rss']} MiB | {r['peak']} MiB |")
    ratio = statistics.median(r["loaded"] / r["base"] for r in rows)
    print(f"\nmedian ratio {ratio:.2f}×; idle: {fds_idle} fds, {rss_idle} MiB; after the "
          f"server's timeouts ({released_after:.0f} s): {fds_after} fds; timeouts {timeouts}; "
          f"a request afterwards {after * 1000:.0f} ms")
    print(json.dumps(dict(rows=rows, ratio=ratio, fds_idle=fds_idle, rss_idle=rss_idle,
                          fds_after=fds_after, released_after=released_after,
                          timeouts=timeouts, after=after)))


if __name__ == "__main__":
    main()
