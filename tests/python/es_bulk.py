"""Ships ECS documents to Owl with elasticsearch-py's bulk helpers, as an application would.

Usage: es_bulk.py COLLECTOR_URL AGENT_TOKEN MARKER

`helpers.bulk` sends 100 documents with `_id`s, then sends them again (a retry after a lost
answer); `streaming_bulk` sends 50 without ids through `create`, and an `update` that Owl refuses
per item. Prints one JSON line with what the client saw.
"""

import json
import sys
from datetime import datetime, timezone

from elasticsearch import Elasticsearch, helpers

url, token, marker = sys.argv[1], sys.argv[2], sys.argv[3]
es = Elasticsearch(url, basic_auth=("owl", token), request_timeout=30)
info = es.info()


def document(n, level):
    return {
        "@timestamp": datetime.now(timezone.utc).isoformat(),
        "message": f"{marker} order {n} processed",
        "log": {"level": level, "logger": "orders.worker"},
        "service": {"name": "crm-api", "environment": "prod"},
        "http": {"request": {"method": "POST"}, "response": {"status_code": 201}},
        "url": {"path": "/api/orders"},
        "event": {"duration": 12_500_000},
        "user": {"id": f"u-{n % 7}"},
        "labels": {"batch": "first"},
    }


with_ids = [{"_index": "crm-orders", "_id": f"{marker}-{n}", "_source": document(n, "info")} for n in range(100)]
first_ok, first_errors = helpers.bulk(es, with_ids)
again_ok, again_errors = helpers.bulk(es, with_ids)

streamed = []
for n in range(50):
    source = document(1000 + n, "warn")
    del source["service"]
    streamed.append({"_op_type": "create", "_index": "logs-payments-default", "_source": source})
streamed.append({"_op_type": "update", "_index": "crm-orders", "_id": f"{marker}-0", "doc": {"message": "changed"}})
outcomes = []
for ok, item in helpers.streaming_bulk(es, streamed, chunk_size=20, raise_on_error=False):
    op, result = next(iter(item.items()))
    outcomes.append({"op": op, "ok": ok, "status": result["status"]})

print(
    json.dumps(
        {
            "version": info["version"]["number"],
            "first": [first_ok, len(first_errors)],
            "again": [again_ok, len(again_errors)],
            "streamed": outcomes,
        }
    )
)
