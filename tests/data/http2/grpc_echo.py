"""A gRPC server and client for tests/wire/http2_grpc.rs, without generated code: the service
`trawl.test.Echo` takes and returns raw bytes. The server logs each call with the status its
servicer ended it with ("<method> <STATUS> <requests> <responses>"), the client runs a fixed
workload against the address it is given and prints what each call returned."""

import sys
import time
import threading
from concurrent import futures

import grpc

SERVICE = "trawl.test.Echo"


def serve(port, log_path):
    log = open(log_path, "a", buffering=1)
    lock = threading.Lock()

    def record(method, status, requests, responses):
        with lock:
            log.write(f"{method} {status} {requests} {responses}\n")

    def unary(request, context):
        record("Unary", "OK", 1, 1)
        return request

    def server_stream(request, context):
        n = int(request.decode() or "1")
        for i in range(n):
            yield b"x" * (10 * (i + 1))
        record("ServerStream", "OK", 1, n)

    def client_stream(request_iterator, context):
        count = 0
        for _ in request_iterator:
            count += 1
        record("ClientStream", "OK", count, 1)
        return str(count).encode()

    def fail(request, context):
        record("Fail", "NOT_FOUND", 1, 0)
        context.abort(grpc.StatusCode.NOT_FOUND, "no such key: k1")

    def slow(request, context):
        time.sleep(1.5)
        status = "DEADLINE_EXCEEDED" if not context.is_active() else "OK"
        record("Slow", status, 1, 0 if status != "OK" else 1)
        return request

    handler = grpc.method_handlers_generic_handler(
        SERVICE,
        {
            "Unary": grpc.unary_unary_rpc_method_handler(unary),
            "ServerStream": grpc.unary_stream_rpc_method_handler(server_stream),
            "ClientStream": grpc.stream_unary_rpc_method_handler(client_stream),
            "Fail": grpc.unary_unary_rpc_method_handler(fail),
            "Slow": grpc.unary_unary_rpc_method_handler(slow),
        },
    )
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    server.add_generic_rpc_handlers((handler,))
    server.add_insecure_port(f"127.0.0.1:{port}")
    server.start()
    print("serving", flush=True)
    server.wait_for_termination()


def client(target):
    channel = grpc.insecure_channel(target)
    grpc.channel_ready_future(channel).result(timeout=20)

    def call(kind, name):
        return getattr(channel, kind)(f"/{SERVICE}/{name}")

    def report(name, fn):
        try:
            fn()
            print(name, "OK", flush=True)
        except grpc.RpcError as e:
            print(name, e.code().name, flush=True)

    report("Unary", lambda: call("unary_unary", "Unary")(b"hello", timeout=10))
    report("Unary", lambda: call("unary_unary", "Unary")(b"x" * 3000, timeout=10))
    report("ServerStream", lambda: list(call("unary_stream", "ServerStream")(b"4", timeout=10)))
    report("ClientStream", lambda: call("stream_unary", "ClientStream")(iter([b"a", b"bb", b"ccc"]), timeout=10))
    report("Fail", lambda: call("unary_unary", "Fail")(b"k1", timeout=10))
    report("Slow", lambda: call("unary_unary", "Slow")(b"zz", timeout=0.3))
    # The slow call's servicer logs once it wakes up.
    time.sleep(2)
    channel.close()


if __name__ == "__main__":
    if sys.argv[1] == "serve":
        serve(int(sys.argv[2]), sys.argv[3])
    else:
        client(sys.argv[2])
