# An OTLP/HTTP trace receiver for the tests, built on the official `opentelemetry-proto`
# package: each POST /v1/traces body is decoded with the real protobuf class
# (ExportTraceServiceRequest), must re-encode to the very same bytes (so no field is
# misnumbered, mistyped or unknown), and each span is appended as one JSON line to
# <dir>/spans.jsonl. A refused body is answered 400 and its reason appended to
# <dir>/errors.log. Prints the port it listens on, then serves until killed.
#
# Usage: python otlp_receiver.py <dir> [status]   (status: what to answer a good post, 200)
import http.server
import json
import os
import sys

from opentelemetry.proto.collector.trace.v1 import trace_service_pb2

DIR = sys.argv[1]
STATUS = int(sys.argv[2]) if len(sys.argv) > 2 else 200


def value_of(any_value):
    which = any_value.WhichOneof("value")
    return getattr(any_value, which) if which else None


def attributes(key_values):
    return {kv.key: value_of(kv.value) for kv in key_values}


class Handler(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def refuse(self, why):
        with open(os.path.join(DIR, "errors.log"), "a") as errors:
            errors.write(why + "\n")
        self.send_response(400)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        if self.path != "/v1/traces":
            return self.refuse("posted to " + self.path)
        if self.headers.get("Content-Type") != "application/x-protobuf":
            return self.refuse("content type " + str(self.headers.get("Content-Type")))
        try:
            request = trace_service_pb2.ExportTraceServiceRequest.FromString(body)
        except Exception as error:  # noqa: BLE001 - any decoding failure is a refusal
            return self.refuse("undecodable: %s" % error)
        if request.SerializeToString() != body:
            return self.refuse("does not re-encode to the same bytes")
        lines = []
        for resource_spans in request.resource_spans:
            resource = attributes(resource_spans.resource.attributes)
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    lines.append(json.dumps({
                        "resource": resource,
                        "scope": scope_spans.scope.name,
                        "trace_id": span.trace_id.hex(),
                        "span_id": span.span_id.hex(),
                        "parent_span_id": span.parent_span_id.hex() or None,
                        "name": span.name,
                        "kind": span.kind,
                        "start": span.start_time_unix_nano,
                        "end": span.end_time_unix_nano,
                        "attributes": attributes(span.attributes),
                        "status": span.status.code,
                        "message": span.status.message,
                        "headers": {k.lower(): v for k, v in self.headers.items()},
                    }))
        with open(os.path.join(DIR, "spans.jsonl"), "a") as spans:
            spans.write("".join(line + "\n" for line in lines))
        answer = trace_service_pb2.ExportTraceServiceResponse().SerializeToString()
        self.send_response(STATUS)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)


server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
print(server.server_address[1], flush=True)
server.serve_forever()
