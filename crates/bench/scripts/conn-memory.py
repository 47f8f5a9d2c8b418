#!/usr/bin/env python3
"""Server memory per idle connection, by kind (docs/BENCHMARKS.md, "Edge push to 1,000 agents").

Usage: conn-memory.py PORT MODE [N]     (FLEETREG_ADMIN_TOKEN in the environment)
  MODE  bare    N TCP connections that send nothing
        stream  N `GET /api/v1/nodes/{name}/config/stream`, each read until its first frame
        ack     N `POST /api/v1/nodes/{name}/ack {}`, each answered, the connection kept open
        events  N `GET /api/v1/events/stream`, each read until `: connected`
  stream and ack register N laptop nodes (conn-mem-00000…, 10.251.x.y) first and delete them
  after. Prints the server's VmRSS (/proc/PID/status, the process listening on PORT, found with `ss`) before
  and 2 s after the connections opened, and the growth per connection. Use a fresh server
  per mode: what the allocator keeps from one mode shows in the next.
"""
import asyncio
import json
import os
import subprocess
import sys

PORT, MODE = int(sys.argv[1]), sys.argv[2]
N = int(sys.argv[3]) if len(sys.argv) > 3 else 1000
TOKEN = os.environ["FLEETREG_ADMIN_TOKEN"]
AUTH = f"Authorization: Bearer {TOKEN}\r\n"


def server_pid():
    out = subprocess.run(["ss", "-Htlnp", f"sport = :{PORT}"], capture_output=True, text=True).stdout
    return int(out.split("pid=")[1].split(",")[0])


def rss(pid):
    """VmRSS in bytes (the file counts KiB)."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024


async def request(method, path, body=b""):
    """One request on its own connection; (status, reader, writer) with the answer's head read."""
    reader, writer = await asyncio.open_connection("127.0.0.1", PORT)
    head = f"{method} {path} HTTP/1.1\r\nHost: x\r\n{AUTH}"
    if body:
        head += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
    writer.write((head + "\r\n").encode() + body)
    return reader, writer


async def read_until(reader, done):
    data = b""
    while not done(data):
        chunk = await reader.read(65536)
        if not chunk:
            raise RuntimeError(f"connection closed: {data[:200]!r}")
        data += chunk
    return data


def answered(data):
    if b"\r\n\r\n" not in data:
        return False
    head, rest = data.split(b"\r\n\r\n", 1)
    lengths = [int(l.split(b":")[1]) for l in head.split(b"\r\n") if l.lower().startswith(b"content-length")]
    return not lengths or len(rest) >= lengths[0]


def name(i):
    return f"conn-mem-{i:05d}"


async def nodes(method):
    gate = asyncio.Semaphore(16)

    async def one(i):
        async with gate:
            if method == "POST":
                body = json.dumps({"name": name(i), "kind": "laptop",
                                   "overlay_address": f"10.251.{i // 256}.{i % 256}"}).encode()
                reader, writer = await request("POST", "/api/v1/nodes", body)
            else:
                reader, writer = await request("DELETE", f"/api/v1/nodes/{name(i)}")
            await read_until(reader, answered)
            writer.close()

    await asyncio.gather(*(one(i) for i in range(N)))


async def open_one(i, kept):
    if MODE == "bare":
        kept.append(await asyncio.open_connection("127.0.0.1", PORT))
        return
    if MODE == "stream":
        reader, writer = await request("GET", f"/api/v1/nodes/{name(i)}/config/stream")
        await read_until(reader, lambda d: b"\r\n\r\n" in d and b"\n\n" in d.split(b"\r\n\r\n", 1)[1])
    elif MODE == "ack":
        reader, writer = await request("POST", f"/api/v1/nodes/{name(i)}/ack", b"{}")
        await read_until(reader, answered)
    elif MODE == "events":
        reader, writer = await request("GET", "/api/v1/events/stream")
        await read_until(reader, lambda d: b": connected" in d)
    else:
        sys.exit(f"unknown mode {MODE}")
    kept.append((reader, writer))


async def main():
    pid = server_pid()
    if MODE in ("stream", "ack"):
        await nodes("POST")
        await asyncio.sleep(1)
    before, kept, gate = rss(pid), [], asyncio.Semaphore(64)

    async def gated(i):
        async with gate:
            await open_one(i, kept)

    await asyncio.gather(*(gated(i) for i in range(N)))
    await asyncio.sleep(2)
    after = rss(pid)
    print(f"{MODE}: {len(kept)} connections, RSS {before / 1e6:.1f} -> {after / 1e6:.1f} MB"
          f" = {(after - before) / len(kept) / 1e3:.1f} KB each")
    for _, writer in kept:
        writer.close()
    if MODE in ("stream", "ack"):
        await asyncio.sleep(1)
        await nodes("DELETE")


asyncio.run(main())
