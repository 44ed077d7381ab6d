#!/usr/bin/env python3
"""An OTLP/HTTP trace receiver for the namespace tests, decoding with the official
generated classes (PyPI opentelemetry-proto + protobuf), not with Trellis's own code.

usage: otlp_receiver.py HOST:PORT
Prints 'ready' once listening, then one JSON line per received span:
{trace_id, span_id, parent_span_id, name, kind, flags, status_code, status_message,
 resource: {...}, attributes: {...}}. A body that does not decode answers 400 and prints
{"error": ...}.
"""
import json
import sys
from http.server import BaseHTTPRequestHandler, HTTPServer

from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)


def value(v):
    kind = v.WhichOneof("value")
    return getattr(v, kind) if kind else None


class Handler(BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        req = ExportTraceServiceRequest()
        try:
            if self.path != "/v1/traces":
                raise DecodeError("wrong path " + self.path)
            if self.headers.get("Content-Type") != "application/x-protobuf":
                raise DecodeError("wrong content type " + str(self.headers.get("Content-Type")))
            req.ParseFromString(body)
        except DecodeError as e:
            print(json.dumps({"error": str(e)}), flush=True)
            self.send_response(400)
            self.end_headers()
            return
        for rs in req.resource_spans:
            resource = {kv.key: value(kv.value) for kv in rs.resource.attributes}
            for ss in rs.scope_spans:
                for s in ss.spans:
                    print(json.dumps({
                        "trace_id": s.trace_id.hex(),
                        "span_id": s.span_id.hex(),
                        "parent_span_id": s.parent_span_id.hex(),
                        "name": s.name,
                        "kind": s.kind,
                        "flags": s.flags,
                        "start": s.start_time_unix_nano,
                        "end": s.end_time_unix_nano,
                        "status_code": s.status.code,
                        "status_message": s.status.message,
                        "scope": ss.scope.name,
                        "resource": resource,
                        "attributes": {kv.key: value(kv.value) for kv in s.attributes},
                    }), flush=True)
        out = ExportTraceServiceResponse().SerializeToString()
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)

    def log_message(self, *args):
        pass


host, port = sys.argv[1].rsplit(":", 1)
server = HTTPServer((host, int(port)), Handler)
print("ready", flush=True)
server.serve_forever()
