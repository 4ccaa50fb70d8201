#!/usr/bin/env python3
"""Which b-trees a SQLite commit writes: the pages of each commit in a gateway's WAL, by table or
index.

    bench/walpages.py PATH/TO/bench.db

Run it while the gateway writes (e.g. during `paybridge-bench wechat-notify`, on the round's
`bench.db` in its temporary folder). It copies the WAL and the database, reads the WAL's frames
(each frame is one page; a frame with a database size is the last of its commit), and names each
page's b-tree with SQLite's `dbstat` table on the copy. It prints the frames a commit writes and,
for each b-tree, the pages it writes per commit, most first. The WAL holds the commits since the
last checkpoint (about 1 000 pages), so this is a sample of a few commits, not of the whole run.

Needs Python's sqlite3 built with SQLITE_ENABLE_DBSTAT_VTAB (Debian's is). Reads only copies.
"""

import collections
import shutil
import sqlite3
import struct
import sys
import tempfile
from pathlib import Path

WAL_HEADER = struct.Struct(">IIIIIIII")
FRAME_HEADER = struct.Struct(">IIIIII")


def commits(wal: bytes) -> tuple[int, list[list[int]]]:
    """The page size and the pages of each whole commit in the WAL's current generation."""
    if len(wal) < WAL_HEADER.size:
        return 0, []
    _magic, _version, page_size, _seq, salt1, salt2, _c1, _c2 = WAL_HEADER.unpack_from(wal)
    done, current = [], []
    offset = WAL_HEADER.size
    while offset + FRAME_HEADER.size + page_size <= len(wal):
        page, db_size, s1, s2, _k1, _k2 = FRAME_HEADER.unpack_from(wal, offset)
        # Frames of an earlier generation (before the WAL restarted) carry other salts.
        if (s1, s2) != (salt1, salt2):
            break
        current.append(page)
        if db_size:
            done.append(current)
            current = []
        offset += FRAME_HEADER.size + page_size
    return page_size, done


def main() -> int:
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    db = Path(sys.argv[1])
    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / "copy.db"
        # The WAL first: the database copied after it holds at least what it checkpointed.
        shutil.copyfile(f"{db}-wal", f"{copy}-wal")
        shutil.copyfile(db, copy)
        page_size, done = commits(Path(f"{copy}-wal").read_bytes())
        if not done:
            print("no whole commit in the WAL (checkpointed just now?): run it again")
            return 1
        conn = sqlite3.connect(copy)
        owner = {page: name for name, page in conn.execute("SELECT name, pageno FROM dbstat")}
        conn.close()
    n = len(done)
    frames = sum(len(c) for c in done)
    print(f"page size {page_size}; {n} commits, {frames / n:.1f} frames a commit "
          f"({frames / n * page_size / 1024:.0f} KiB)")
    per_tree = collections.Counter()
    for pages in done:
        for page in set(pages):
            per_tree[owner.get(page, "?")] += 1
    print(f"{len(per_tree)} b-trees written; pages a commit:")
    for name, count in per_tree.most_common():
        print(f"{count / n:8.1f}  {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
