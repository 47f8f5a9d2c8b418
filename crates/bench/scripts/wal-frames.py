#!/usr/bin/env python3
"""Which b-trees a SQLite store's commits write: the WAL frames per commit, by table or index.

Every commit writes each page it changed to the WAL as one frame (a 24-byte header and the
page). This reads the frames still in the WAL of a database (stop the server with kill -9
under load, so no checkpoint empties it first), keeps those SQLite itself would recover (the
salts of the WAL header, the running checksum, up to the last commit frame), counts the
commits among them and maps each frame's page to the table or index that owns it (SQLite's
`dbstat`, on a copy of the database and its WAL).

Usage: crates/bench/scripts/wal-frames.py PATH/fleet.db [ROWS]
"""
import collections
import os
import shutil
import sqlite3
import struct
import sys
import tempfile

HEADER = 32
FRAME_HEADER = 24
MAGIC_LITTLE, MAGIC_BIG = 0x377F0682, 0x377F0683


def checksum(data: bytes, s0: int, s1: int, order: str):
    """SQLite's WAL checksum of `data` (a multiple of 8 bytes), continuing from (s0, s1)."""
    words = struct.unpack(f"{order}{len(data) // 4}I", data)
    for i in range(0, len(words), 2):
        s0 = (s0 + words[i] + s1) & 0xFFFFFFFF
        s1 = (s1 + words[i + 1] + s0) & 0xFFFFFFFF
    return s0, s1


def committed_frames(wal: bytes):
    """(page number, commit size) of every frame up to the last valid commit, and the page size."""
    if len(wal) < HEADER:
        return [], 0
    magic, _version, page_size, _seq, salt1, salt2, c0, c1 = struct.unpack(">8I", wal[:HEADER])
    if magic not in (MAGIC_LITTLE, MAGIC_BIG):
        sys.exit("not a WAL file")
    order = "<" if magic == MAGIC_LITTLE else ">"
    s = checksum(wal[:24], 0, 0, order)
    if s != (c0, c1):
        return [], page_size
    frames, committed, offset = [], 0, HEADER
    while offset + FRAME_HEADER + page_size <= len(wal):
        page, commit, f1, f2, fc0, fc1 = struct.unpack(">6I", wal[offset : offset + FRAME_HEADER])
        if (f1, f2) != (salt1, salt2):
            break  # a frame of an earlier pass over the file
        body = wal[offset + FRAME_HEADER : offset + FRAME_HEADER + page_size]
        s = checksum(wal[offset : offset + 8] + body, s[0], s[1], order)
        if s != (fc0, fc1):
            break  # torn: written after the last commit SQLite would recover
        frames.append((page, commit))
        if commit:
            committed = len(frames)
        offset += FRAME_HEADER + page_size
    return frames[:committed], page_size


def owners(db: str) -> dict:
    """Page number -> name of the table or index it belongs to (read from a copy)."""
    with tempfile.TemporaryDirectory() as tmp:
        copy = os.path.join(tmp, "copy.db")
        shutil.copy(db, copy)
        shutil.copy(db + "-wal", copy + "-wal")
        conn = sqlite3.connect(copy)
        pages = dict((page, name) for name, page in conn.execute("SELECT name, pageno FROM dbstat"))
        conn.close()
        return pages


def main():
    db = sys.argv[1]
    rows = int(sys.argv[2]) if len(sys.argv) > 2 else 15
    with open(db + "-wal", "rb") as f:
        frames, page_size = committed_frames(f.read())
    commits = sum(1 for _, commit in frames if commit)
    if not commits:
        sys.exit("no committed frames in the WAL (was it checkpointed and started over?)")
    per_commit = len(frames) / commits
    kib = len(frames) * (page_size + FRAME_HEADER) / commits / 1024
    print(f"page size {page_size}, {len(frames)} frames, {commits} commits: "
          f"{per_commit:.1f} frames ({kib:.0f} KiB) per commit")
    pages = owners(db)
    counts = collections.Counter(pages.get(page, "(freed)") for page, _ in frames)
    for name, n in counts.most_common(rows):
        print(f"{n / commits:8.1f} per commit  {name}")


if __name__ == "__main__":
    main()
