#!/usr/bin/env python3
"""Server memory per idle connection, by kind (docs/BENCHMARKS.md, "Edge push to 1,000 agents").

Usage: conn-memory.py PORT MODE [N]     (FLEETREG_ADMIN_TOKEN in the environment)
  MODE  bare    N TCP connections that send nothing
        stream  N `GET /api/v1/nodes/{name}/config/stream`, each read until its first frame
        ack     N `POST /api/v1/nodes/{name}/ack {}`, each answered, the connection kept open
        events  N `GET /api/v1/events/stream`, each read until `: connected`
        events-resume  N `GET /api/v1/events/stream?after=R-1` after one write (revision R), each
                read until that event: a resumed stream, whose backlog is read from the store
        agent   N agents as they were before HTTP/2: a stream (read until its first frame) and,
                on a second connection kept open, one `POST …/ack {}`
        agent-h2  N agents on one HTTP/2 connection each (prior knowledge): the stream and
                one acknowledgement on it (ACKS=K in the environment: K, one after the
                other, as K heartbeats would) (a minimal HTTP/2 client, HPACK literals only)
        stream-h2  N config streams, each on an HTTP/2 connection of its own
        bare-h2  N HTTP/2 connections that sent the preface and a SETTINGS frame, no request
  stream, ack and the agent modes register N laptop nodes (conn-mem-00000…, 10.251.x.y) first
  and delete them after. Prints the server's VmRSS (/proc/PID/status, the process listening on
  PORT, found with `ss`) before and 2 s after the connections opened, and the growth per client
  (one connection, or an agent's connections). Use a fresh server per mode: what the allocator
  keeps from one mode shows in the next.
"""
import asyncio
import json
import os
import struct
import subprocess
import sys

PORT, MODE = int(sys.argv[1]), sys.argv[2]
N = int(sys.argv[3]) if len(sys.argv) > 3 else 1000
# agent-h2: acknowledgements per agent, one after the other (an agent's heartbeats).
ACKS = int(os.environ.get("ACKS", "1"))
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


# HTTP/2 (RFC 9113): just enough of a client for one stream and one POST.
PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
DATA, HEADERS, SETTINGS, GOAWAY, RST_STREAM = 0, 1, 4, 7, 3
END_STREAM, END_HEADERS, ACK = 0x1, 0x4, 0x1


def frame(kind, flags, stream, payload=b""):
    return struct.pack(">I", len(payload))[1:] + bytes([kind, flags]) + struct.pack(">I", stream) + payload


def hpack_int(value, prefix_bits=7):
    limit = (1 << prefix_bits) - 1
    if value < limit:
        return bytes([value])
    out, value = [limit], value - limit
    while value >= 128:
        out.append(value % 128 + 128)
        value //= 128
    return bytes(out + [value])


def hpack(fields):
    """Each field as a literal without indexing, new name, no Huffman coding."""
    out = b""
    for name, value in fields:
        out += b"\x00" + hpack_int(len(name)) + name.encode() + hpack_int(len(value)) + value.encode()
    return out


class H2:
    """One HTTP/2 connection: requests on odd streams, frames read as they come."""

    def __init__(self, reader, writer):
        self.reader, self.writer, self.next_stream, self.data = reader, writer, 1, {}

    @classmethod
    async def open(cls):
        reader, writer = await asyncio.open_connection("127.0.0.1", PORT)
        writer.write(PREFACE + frame(SETTINGS, 0, 0))
        return cls(reader, writer)

    def request(self, method, path, body=b""):
        stream, self.next_stream = self.next_stream, self.next_stream + 2
        fields = [(":method", method), (":scheme", "http"), (":path", path), (":authority", "x"),
                  ("authorization", f"Bearer {TOKEN}")]
        if body:
            fields += [("content-type", "application/json"), ("content-length", str(len(body)))]
        self.writer.write(frame(HEADERS, END_HEADERS | (0 if body else END_STREAM), stream, hpack(fields)))
        if body:
            self.writer.write(frame(DATA, END_STREAM, stream, body))
        self.data[stream] = b""
        return stream

    async def until(self, stream, done):
        """Reads frames until `done(data of stream, ended)`."""
        ended = False
        while not done(self.data[stream], ended):
            head = await self.reader.readexactly(9)
            length, kind, flags = int.from_bytes(head[:3], "big"), head[3], head[4]
            on = int.from_bytes(head[5:], "big") & 0x7FFFFFFF
            payload = await self.reader.readexactly(length)
            if kind == SETTINGS and not flags & ACK:
                self.writer.write(frame(SETTINGS, ACK, 0))
            elif kind in (GOAWAY, RST_STREAM):
                raise RuntimeError(f"HTTP/2 frame {kind} on stream {on}: {payload!r}")
            elif kind == DATA and on in self.data:
                self.data[on] += payload
            if on == stream and kind in (DATA, HEADERS) and flags & END_STREAM:
                ended = True
            if stream == 0 and kind == SETTINGS and not flags & ACK:
                ended = True


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


async def latest_revision():
    reader, writer = await request("GET", "/api/v1/events?limit=1")
    data = await read_until(reader, answered)
    writer.close()
    return json.loads(data.split(b"\r\n\r\n", 1)[1])["latest_revision"]


async def resume_node(method):
    """The one write of events-resume: a laptop node registered (or deleted after)."""
    if method == "POST":
        body = json.dumps({"name": "conn-mem-resume", "kind": "laptop",
                           "overlay_address": "10.251.255.254"}).encode()
        reader, writer = await request("POST", "/api/v1/nodes", body)
    else:
        reader, writer = await request("DELETE", "/api/v1/nodes/conn-mem-resume")
    await read_until(reader, answered)
    writer.close()


RESUME_AT = None


async def open_one(i, kept):
    if MODE == "bare":
        kept.append(await asyncio.open_connection("127.0.0.1", PORT))
        return
    if MODE == "bare-h2":
        h2 = await H2.open()
        h2.data[0] = b""
        await h2.until(0, lambda _, ended: h2.writer.transport.get_write_buffer_size() == 0 and ended)
        kept.append((h2.reader, h2.writer))
        return
    if MODE in ("agent-h2", "stream-h2"):
        h2 = await H2.open()
        stream = h2.request("GET", f"/api/v1/nodes/{name(i)}/config/stream")
        await h2.until(stream, lambda d, _: b"\n\n" in d)
        if MODE == "agent-h2":
            for _ in range(ACKS):
                ack = h2.request("POST", f"/api/v1/nodes/{name(i)}/ack", b"{}")
                await h2.until(ack, lambda _, ended: ended)
        kept.append((h2.reader, h2.writer))
        return
    if MODE == "stream":
        reader, writer = await request("GET", f"/api/v1/nodes/{name(i)}/config/stream")
        await read_until(reader, lambda d: b"\r\n\r\n" in d and b"\n\n" in d.split(b"\r\n\r\n", 1)[1])
    elif MODE in ("ack", "agent"):
        if MODE == "agent":
            kept.append(await request("GET", f"/api/v1/nodes/{name(i)}/config/stream"))
            await read_until(kept[-1][0], lambda d: b"\r\n\r\n" in d and b"\n\n" in d.split(b"\r\n\r\n", 1)[1])
        reader, writer = await request("POST", f"/api/v1/nodes/{name(i)}/ack", b"{}")
        await read_until(reader, answered)
    elif MODE == "events":
        reader, writer = await request("GET", "/api/v1/events/stream")
        await read_until(reader, lambda d: b": connected" in d)
    elif MODE == "events-resume":
        reader, writer = await request("GET", f"/api/v1/events/stream?after={RESUME_AT - 1}")
        await read_until(reader, lambda d: f"id: {RESUME_AT}\n".encode() in d)
    else:
        sys.exit(f"unknown mode {MODE}")
    kept.append((reader, writer))


async def main():
    global RESUME_AT
    pid = server_pid()
    if MODE not in ("bare", "bare-h2", "events", "events-resume"):
        await nodes("POST")
        await asyncio.sleep(1)
    if MODE == "events-resume":
        await resume_node("POST")
        RESUME_AT = await latest_revision()
        await asyncio.sleep(1)
    before, kept, gate = rss(pid), [], asyncio.Semaphore(64)

    async def gated(i):
        async with gate:
            await open_one(i, kept)

    await asyncio.gather(*(gated(i) for i in range(N)))
    await asyncio.sleep(2)
    after = rss(pid)
    print(f"{MODE}: {N} clients, {len(kept)} connections, RSS {before / 1e6:.1f} -> {after / 1e6:.1f} MB"
          f" = {(after - before) / N / 1e3:.1f} KB per client")
    for _, writer in kept:
        writer.close()
    if MODE not in ("bare", "bare-h2", "events", "events-resume"):
        await asyncio.sleep(1)
        await nodes("DELETE")
    if MODE == "events-resume":
        await resume_node("DELETE")


asyncio.run(main())
