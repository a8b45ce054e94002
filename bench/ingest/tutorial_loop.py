"""bench/ingest's Python reference: the loop of the tutorial pipectl's quickstart grew from
(notes: one GET of the randomuser API per user with `requests`, each user formatted into the
tutorial's 13 fields, published unkeyed with `kafka-python`'s KafkaProducer at its defaults),
run against the same local pc-randomuser and broker as the C worker.

Kept as the tutorial wrote it, with two changes so that records land and can be counted:
the id is str(uuid4()) (the tutorial's bare UUID cannot be JSON-encoded, so every send raised
and was swallowed), and each send's future counts a delivery or a failure. --results N asks N
users per GET instead of the tutorial's 1 (the "batched" leg; results=5000 is the API's most).

Runs for --seconds, then flushes; prints one JSON object:
{"mode", "results_per_get", "requests", "records", "failed", "elapsed_s", "records_per_s"}
where elapsed_s runs from the first GET to the end of the flush.
"""
import argparse
import json
import sys
import time
import uuid

import requests
from kafka import KafkaProducer


def get_data(url, results):
    res = requests.get(url, params={"results": results} if results != 1 else None, timeout=30)
    res.raise_for_status()
    return res.json()["results"]


def format_data(res):  # the tutorial's format_data, field for field
    data = {}
    location = res["location"]
    data["id"] = str(uuid.uuid4())
    data["first_name"] = res["name"]["first"]
    data["last_name"] = res["name"]["last"]
    data["gender"] = res["gender"]
    data["address"] = (
        f"{str(location['street']['number'])} {location['street']['name']}, "
        f"{location['city']}, {location['state']}, {location['country']}"
    )
    data["post_code"] = location["postcode"]
    data["email"] = res["email"]
    data["username"] = res["login"]["username"]
    data["dob"] = res["dob"]["date"]
    data["registered_date"] = res["registered"]["date"]
    data["phone"] = res["phone"]
    data["picture"] = res["picture"]["medium"]
    return data


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", required=True)
    ap.add_argument("--bootstrap", required=True)
    ap.add_argument("--topic", required=True)
    ap.add_argument("--results", type=int, default=1)
    ap.add_argument("--seconds", type=float, default=20.0)
    a = ap.parse_args()

    producer = KafkaProducer(bootstrap_servers=[a.bootstrap], max_block_ms=5000)
    counts = {"ok": 0, "failed": 0, "errors": 0}

    def delivered(_md):
        counts["ok"] += 1

    def failed(_exc):
        counts["failed"] += 1

    requests_made = 0
    start = time.monotonic()
    end = start + a.seconds
    while time.monotonic() < end:
        try:
            users = get_data(a.url, a.results)
            requests_made += 1
            for res in users:
                data = format_data(res)
                fut = producer.send(a.topic, json.dumps(data).encode("utf-8"))
                fut.add_callback(delivered)
                fut.add_errback(failed)
        except Exception as e:  # the tutorial logs and goes on; count it instead
            counts["errors"] += 1
            if counts["errors"] <= 3:
                print(f"tutorial_loop: {e!r}", file=sys.stderr)
            continue
    producer.flush()
    elapsed = time.monotonic() - start
    producer.close()
    print(json.dumps({
        "mode": "tutorial" if a.results == 1 else "batched",
        "results_per_get": a.results,
        "requests": requests_made,
        "records": counts["ok"],
        "failed": counts["failed"],
        "errors": counts["errors"],
        "elapsed_s": round(elapsed, 3),
        "records_per_s": round(counts["ok"] / elapsed, 1),
    }))
    return 0 if counts["ok"] > 0 and counts["failed"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
