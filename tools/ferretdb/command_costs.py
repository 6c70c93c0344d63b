"""What each MongoDB command costs a FerretDB server as its collection grows.

For collections of 10, 1 000 and 5 000 documents of about 300 bytes, runs each command 100 times by `_id`
and prints the server's CPU (utime + stime of its process, from /proc) and the wall time per command. Used
for the table "FerretDB 1.24: which commands scan the collection" in docs/benchmarks.md.

    python3 -m venv /tmp/pm && /tmp/pm/bin/pip install pymongo==4.20.1
    /tmp/pm/bin/python tools/ferretdb/command_costs.py --uri mongodb://127.0.0.1:27019/ --pid <ferretdb pid>

Run it against a FerretDB of its own (it drops and fills the database `command_costs`).
"""

import argparse
import os
import time

from pymongo import MongoClient

SIZES = (10, 1000, 5000)
RUNS = 100
TICK_MS = 1000 / os.sysconf("SC_CLK_TCK")


def cpu_ticks(pid):
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def commands(coll, size):
    """(label, one call) pairs; call i addresses document i of the collection."""
    key = lambda i: f"k{i % size}"
    return [
        ("find_one {_id}", lambda i: coll.find_one({"_id": key(i)})),
        ("update_one {_id} $inc", lambda i: coll.update_one({"_id": key(i)}, {"$inc": {"n": 1}})),
        ("replace_one {_id}", lambda i: coll.replace_one({"_id": key(i)}, {"n": i, "pad": "y" * 300})),
        ("delete_one {_id} (absent)", lambda i: coll.delete_one({"_id": f"absent{i}"})),
        ("find {_id: {$in: 20 ids}}", lambda i: list(coll.find({"_id": {"$in": [key(i + j) for j in range(20)]}}))),
        ("insert_one", lambda i: coll.insert_one({"_id": f"new{i}-{time.time_ns()}", "pad": "x" * 300})),
    ]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--uri", required=True)
    parser.add_argument("--pid", type=int, required=True, help="the FerretDB process")
    args = parser.parse_args()
    db = MongoClient(args.uri)["command_costs"]
    print("| documents | command | server CPU ms | wall ms |")
    print("|---|---|---|---|")
    for size in SIZES:
        db.drop_collection("c")
        coll = db["c"]
        coll.insert_many([{"_id": f"k{i}", "n": 0, "pad": "x" * 300} for i in range(size)])
        for label, call in commands(coll, size):
            ticks, started = cpu_ticks(args.pid), time.monotonic()
            for i in range(RUNS):
                call(i)
            cpu = (cpu_ticks(args.pid) - ticks) * TICK_MS / RUNS
            wall = (time.monotonic() - started) * 1000 / RUNS
            print(f"| {size} | `{label}` | {cpu:.2f} | {wall:.2f} |")


if __name__ == "__main__":
    main()
