"""Logs to Owl through python-logging-loki's handler (Loki's JSON push, HTTP Basic auth).

Usage: loki_handler.py COLLECTOR_URL AGENT_TOKEN MARKER

Prints one JSON line with the number of records logged.
"""

import json
import logging
import sys

import logging_loki

url, token, marker = sys.argv[1], sys.argv[2], sys.argv[3]
handler = logging_loki.LokiHandler(
    url=f"{url}/loki/api/v1/push",
    tags={"service": "billing", "env": "staging"},
    auth=("python", token),
    version="1",
)
log = logging.getLogger("billing.invoices")
log.setLevel(logging.INFO)
log.addHandler(handler)
log.info("%s invoice sent", marker)
log.warning("%s invoice late", marker)
log.error("%s invoice failed", marker)
print(json.dumps({"logged": 3}))
