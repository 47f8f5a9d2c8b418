#!/usr/bin/env python3
"""Which b-trees a SQLite store's commits write: the WAL frames per commit, by table or index.

Every commit writes each page it changed to the WAL as one frame (a 24-byte header and the
page). This reads the frames still in the WAL of a database (stop the server with kill -9
under load, so no checkpoint empties it first), counts the commits among them, and maps each
frame's page number to the table or index that owns the page (SQLite's `dbstat`, on a copy of
the database and its WAL).

Usage: crates/bench/scripts/wal-frames.py PATH/fleet.db [ROWS]
"""
import collections
import os
import shutil
import sqlite3
import struct
import sys
import tempfile


def frames(wal: bytes):
    """(page number, commit size) of every valid frame, and the page size."""
    _magic, _version, page_size, _seq, salt1, salt2 = struct.unpack(">IIIIII", wal[:24])
    found, offset = [], 32
    while offset + 24 + page_size <= len(wal):
        page, commit, s1, s2 = struct.unpack(">IIII", wal[offset : offset + 16])
        if (s1, s2) != (salt1, salt2):
            break  # frames of an earlier pass over the file
        found.append((page, commit))
        offset += 24 + page_size
    return found, page_size


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
        found, page_size = frames(f.read())
    commits = max(1, sum(1 for _, commit in found if commit))
    print(f"page size {page_size}, {len(found)} frames, {commits} commits: "
          f"{len(found) / commits:.1f} frames ({len(found) * (page_size + 24) / commits / 1024:.0f} KiB) per commit")
    pages = owners(db)
    counts = collections.Counter(pages.get(page, "(freed)") for page, _ in found)
    for name, n in counts.most_common(rows):
        print(f"{n / commits:8.1f} per commit  {name}")


if __name__ == "__main__":
    main()
