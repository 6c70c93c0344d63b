"""Fills a chatbox MongoDB database before a load run, in this server's layout (`schema: 3`).

    prefill.py --uri mongodb://127.0.0.1:27019/ conversations --users 10 --prefix long --messages 2000
        one active session per user `<prefix>-<n>` (n from 0), each with that many stored messages, so that
        `chatbox-load turns --user-prefix <prefix> --connections <users>` talks in long conversations;
    prefill.py --uri mongodb://127.0.0.1:27019/ sessions --count 100000
        that many ended sessions of other users, each with one message document.

Contents are stored as plain text, which the server reads as it reads the Go service's unencrypted values.
The database is `chat`, the collection `sessions` (the server's defaults with MONGO_DATABASE=chat).
"""

import argparse
import datetime
import os

from pymongo import MongoClient

BATCH = 1000


def session_doc(sid, uid, now, ended, count, last_seq):
    doc = {
        "_id": sid, "uid": uid, "nm": "", "modelId": "gpt-4", "ts": now, "dur": 0,
        "adminAssisted": False, "helpRequested": False, "totalTokens": 0, "maxRespTime": 0,
        "avgRespTime": 0, "msgCount": count, "lastSeq": last_seq, "respCount": 0, "respTotalMs": 0,
        "lastActivity": now, "schema": 3, "_ts": now, "_mt": now,
    }
    if ended:
        doc["endTs"] = now
    return doc


def message_doc(sid, n, now):
    mid = f"m{n}"
    return {
        "_id": f"{sid}:{mid}", "sid": sid, "n": n, "id": mid, "seq": n + 1, "ts": now,
        "sender": "user" if n % 2 == 0 else "ai", "content": "a stored message " * 12,
    }


def insert(coll, docs):
    for i in range(0, len(docs), BATCH):
        coll.insert_many(docs[i:i + BATCH], ordered=False)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--uri", required=True)
    sub = parser.add_subparsers(dest="what", required=True)
    conv = sub.add_parser("conversations")
    conv.add_argument("--users", type=int, required=True)
    conv.add_argument("--prefix", required=True)
    conv.add_argument("--messages", type=int, required=True)
    others = sub.add_parser("sessions")
    others.add_argument("--count", type=int, required=True)
    args = parser.parse_args()
    db = MongoClient(args.uri)["chat"]
    now = datetime.datetime.now(datetime.timezone.utc)
    if args.what == "conversations":
        for u in range(args.users):
            uid, sid = f"{args.prefix}-{u}", os.urandom(16).hex()
            db.sessions.insert_one(session_doc(sid, uid, now, False, args.messages, args.messages))
            db.sessions_active.insert_one({"_id": uid, "sid": sid, "ts": now})
            insert(db.sessions_msgs, [message_doc(sid, n, now) for n in range(args.messages)])
    else:
        sessions, messages = [], []
        for i in range(args.count):
            sid = os.urandom(16).hex()
            sessions.append(session_doc(sid, f"other-{i}", now, True, 1, 1))
            messages.append(message_doc(sid, 0, now))
        insert(db.sessions, sessions)
        insert(db.sessions_msgs, messages)
    print(f"prefilled: {db.sessions.estimated_document_count()} sessions, "
          f"{db.sessions_msgs.estimated_document_count()} message documents")


if __name__ == "__main__":
    main()
