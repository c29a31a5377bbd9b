"""Sends logs and traces to Owl with the OpenTelemetry Python SDK and its OTLP/HTTP exporters.

Usage: otlp_sdk.py COLLECTOR_URL AGENT_TOKEN MARKER

A request enters `gateway` (a server span), which calls `orders` and `payments` (child spans in
two other services, each with its own resource); `payments` fails with an exception. Log records
go through the standard `logging` module with the SDK's handler, inside the spans. Prints one JSON
line: the trace id and the span ids by name.
"""

import json
import logging
import sys
import time

from opentelemetry import trace
from opentelemetry._logs import set_logger_provider
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler
from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.trace import SpanKind, Status, StatusCode

url, token, marker = sys.argv[1], sys.argv[2], sys.argv[3]
headers = {"Authorization": f"Bearer {token}"}


def resource(service):
    return Resource.create(
        {
            "service.name": service,
            "service.instance.id": f"{service}-0",
            "deployment.environment.name": "staging",
            "cloud.region": "CN",
        }
    )


def tracer(service):
    provider = TracerProvider(resource=resource(service))
    provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(endpoint=f"{url}/v1/traces", headers=headers)))
    return provider, provider.get_tracer(service)


log_provider = LoggerProvider(resource=resource("gateway"))
log_provider.add_log_record_processor(
    SimpleLogRecordProcessor(OTLPLogExporter(endpoint=f"{url}/v1/logs", headers=headers))
)
set_logger_provider(log_provider)
log = logging.getLogger("gateway.checkout")
log.setLevel(logging.INFO)
log.addHandler(LoggingHandler(level=logging.INFO, logger_provider=log_provider))

providers = {}
tracers = {}
for service in ("gateway", "orders", "payments"):
    providers[service], tracers[service] = tracer(service)

ids = {}
with tracers["gateway"].start_as_current_span(
    "POST /checkout",
    kind=SpanKind.SERVER,
    attributes={"http.request.method": "POST", "url.path": "/checkout", "http.response.status_code": 500},
) as root:
    ids["POST /checkout"] = format(root.get_span_context().span_id, "016x")
    log.info("%s checkout started user=%s", marker, "u-7", extra={"user.id": "u-7"})
    with tracers["orders"].start_as_current_span("reserve stock") as span:
        ids["reserve stock"] = format(span.get_span_context().span_id, "016x")
        time.sleep(0.03)
    with tracers["payments"].start_as_current_span("charge card", kind=SpanKind.CLIENT) as span:
        ids["charge card"] = format(span.get_span_context().span_id, "016x")
        time.sleep(0.02)
        try:
            raise ValueError("card declined")
        except ValueError as error:
            span.record_exception(error)
            span.set_status(Status(StatusCode.ERROR, "card declined"))
            log.exception("%s payment failed", marker)
    trace_id = format(root.get_span_context().trace_id, "032x")

for provider in providers.values():
    provider.shutdown()
log_provider.shutdown()
print(json.dumps({"trace_id": trace_id, "spans": ids}))
