#!/usr/bin/python3
"""An independent client for pagodad: Python gRPC stubs generated at test time from our .proto
files talk to a real pagodad process.

Usage: python_client_test.py PAGODAD PROTO_ROOT GRPC_PROTO_ROOT

Exits 77 (ctest SKIP_RETURN_CODE) when Debian's python3-grpcio is missing.
Binds only 127.0.0.1. Every wait is bounded.
"""

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

SKIP = 77

try:
    import grpc
except ImportError as error:
    print(f"SKIP: {error} (install Debian's python3-grpcio)")
    sys.exit(SKIP)


def protoc_command():
    """protoc with the Python gRPC plugin.

    Debian's own protoc (protobuf-compiler, 3.21) and grpc_python_plugin
    (protobuf-compiler-grpc), both build dependencies, come first: the protoc inside Debian's
    python3-grpc-tools 1.14 predates proto3 `optional`, which our API uses. A recent
    grpcio-tools serves elsewhere.
    """
    if shutil.which("protoc") and shutil.which("grpc_python_plugin"):
        return [shutil.which("protoc"),
                "--plugin=protoc-gen-grpc_python=" + shutil.which("grpc_python_plugin")], []
    try:
        from grpc_tools import protoc
    except ImportError:
        print("SKIP: no protoc with grpc_python_plugin and no grpc_tools")
        sys.exit(SKIP)
    return None, [os.path.join(os.path.dirname(protoc.__file__), "_proto")]


def generate_stubs(out_dir, proto_root, grpc_proto_root):
    """Generates the Python modules of our API, health and reflection into out_dir."""
    command, includes = protoc_command()
    ours = [os.path.join("pagoda", "v1", name)
            for name in sorted(os.listdir(os.path.join(proto_root, "pagoda", "v1")))
            if name.endswith(".proto")]
    # Health and reflection under other module names: "grpc" is the runtime's package.
    external = os.path.join(out_dir, "external")
    for package, source in (("grpc_health_v1", "grpc/health/v1/health.proto"),
                            ("grpc_reflection_v1alpha",
                             "grpc/reflection/v1alpha/reflection.proto")):
        os.makedirs(os.path.join(external, package))
        shutil.copy(os.path.join(grpc_proto_root, source), os.path.join(external, package))
    for root, files in ((proto_root, ours),
                        (external, ["grpc_health_v1/health.proto",
                                    "grpc_reflection_v1alpha/reflection.proto"])):
        args = ([f"-I{root}"] + [f"-I{i}" for i in includes] +
                [f"--python_out={out_dir}", f"--grpc_python_out={out_dir}"] + files)
        if command is not None:
            ok = subprocess.run(command + args).returncode == 0
        else:
            from grpc_tools import protoc
            ok = protoc.main(["protoc"] + args) == 0
        if not ok:
            raise RuntimeError(f"protoc failed: {args}")
    sys.path.insert(0, out_dir)


class Daemon:
    """A pagodad process on loopback ports the kernel picks."""

    def __init__(self, binary, model="dummy:tiny", extra_args=()):
        self.process = subprocess.Popen(
            [binary, "--model", model, "--host", "127.0.0.1",
             "--port", "0", "--metrics-port", "0", "--http-port", "0", "--drain-timeout", "10", *extra_args],
            stderr=subprocess.PIPE, text=True)
        self.log = []
        self.address = None
        self.metrics_port = None
        self._ready = threading.Event()
        threading.Thread(target=self._read_log, daemon=True).start()
        if not self._ready.wait(60):
            self.process.kill()
            raise AssertionError("pagodad did not become ready:\n" + "".join(self.log))

    def _read_log(self):
        for line in self.process.stderr:
            self.log.append(line)
            sys.stderr.write("  [pagodad] " + line)
            if m := re.search(r"gRPC listening on (\S+)", line):
                self.address = m.group(1)
            if m := re.search(r"metrics at http://127\.0\.0\.1:(\d+)/metrics", line):
                self.metrics_port = int(m.group(1))
            if "health SERVING" in line:
                self._ready.set()

    def scrape(self):
        url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=10) as response:
            assert response.status == 200
            assert response.headers["Content-Type"].startswith("text/plain")
            return response.read().decode()

    def stop(self, sig=signal.SIGTERM, timeout=30):
        self.process.send_signal(sig)
        return self.process.wait(timeout)


def metric(text, name, labels=""):
    """The value of one series in a Prometheus text page (0 when absent)."""
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name + "{") and labels in line:
            total += float(line.rsplit(" ", 1)[1])
    return total


def check(condition, message):
    if not condition:
        raise AssertionError(message)


def run(binary):
    from pagoda.v1 import generate_pb2, info_pb2, sampling_pb2, text_generation_service_pb2
    from pagoda.v1 import text_generation_service_pb2_grpc, tokenize_pb2
    from grpc_health_v1 import health_pb2, health_pb2_grpc
    from grpc_reflection_v1alpha import reflection_pb2, reflection_pb2_grpc

    daemon = Daemon(binary)
    try:
        channel = grpc.insecure_channel(daemon.address)
        grpc.channel_ready_future(channel).result(timeout=10)
        stub = text_generation_service_pb2_grpc.TextGenerationStub(channel)

        # Health and reflection, as grpcurl and Kubernetes probes use them.
        health = health_pb2_grpc.HealthStub(channel)
        for service in ("", "pagoda.v1.TextGeneration"):
            status = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=5).status
            check(status == health_pb2.HealthCheckResponse.SERVING, f"health {service!r}: {status}")
        reflection = reflection_pb2_grpc.ServerReflectionStub(channel)
        replies = list(reflection.ServerReflectionInfo(
            iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=5))
        services = {s.name for s in replies[0].list_services_response.service}
        check("pagoda.v1.TextGeneration" in services, f"reflection lists {services}")
        print("ok: health SERVING, reflection lists", sorted(services))

        info = stub.GetModelInfo(info_pb2.GetModelInfoRequest(), timeout=5)
        check(info.model_name == "dummy:tiny" and info.supports_text_input, str(info))
        check(info.num_kv_blocks > 0 and info.max_model_len > 0, str(info))

        tokens = stub.Tokenize(tokenize_pb2.TokenizeRequest(text="Hello"), timeout=5)
        check(len(tokens.token_ids) >= 5, str(tokens))
        text = stub.Detokenize(tokenize_pb2.DetokenizeRequest(token_ids=tokens.token_ids), timeout=5)
        check(text.text == "Hello", repr(text.text))
        print("ok: GetModelInfo, Tokenize, Detokenize")

        # Unary and streaming greedy generation agree; x-request-id is echoed.
        request = generate_pb2.GenerateRequest(
            text="Once upon a time",
            sampling=sampling_pb2.SamplingParams(temperature=0.0),
            stopping=sampling_pb2.StoppingParams(max_tokens=12, ignore_eos=True))
        call = stub.Generate(request, timeout=30, metadata=[("x-request-id", "py-unary-1")])
        responses = list(call)
        check(len(responses) == 1 and responses[0].HasField("complete"), str(responses))
        complete = responses[0].complete
        check(responses[0].request_id == "py-unary-1", responses[0].request_id)
        check(("x-request-id", "py-unary-1") in call.initial_metadata(), call.initial_metadata())
        check(complete.finish_reason == generate_pb2.FINISH_REASON_LENGTH, str(complete))
        check(len(complete.token_ids) == 12 and complete.usage.completion_tokens == 12,
              str(complete))

        request.stream = True
        request.request_id = "py-stream-1"
        chunks = list(stub.Generate(request, timeout=30))
        check(chunks[-1].HasField("complete") and all(c.HasField("chunk") for c in chunks[:-1]),
              str(chunks))
        streamed_ids = [t for c in chunks[:-1] for t in c.chunk.token_ids]
        streamed_text = "".join(c.chunk.text for c in chunks[:-1])
        check(streamed_ids == list(complete.token_ids), f"{streamed_ids} != {complete.token_ids}")
        check(streamed_text == complete.text, f"{streamed_text!r} != {complete.text!r}")
        print(f"ok: unary and streaming Generate agree ({len(chunks) - 1} chunks)")

        # A validation error: INVALID_ARGUMENT naming the field, with the reason in trailers.
        bad = generate_pb2.GenerateRequest(text="x", sampling=sampling_pb2.SamplingParams(top_p=0))
        try:
            list(stub.Generate(bad, timeout=10))
            raise AssertionError("top_p = 0 was accepted")
        except grpc.RpcError as error:
            check(error.code() == grpc.StatusCode.INVALID_ARGUMENT, str(error))
            check(error.details().startswith("sampling.top_p: "), error.details())
            check(("pagoda-error-reason", "INVALID_FIELD") in error.trailing_metadata(),
                  str(error.trailing_metadata()))
        # Invalid UTF-8 (which Python's protobuf refuses to send) as raw bytes: field 3, text.
        raw = channel.unary_stream("/pagoda.v1.TextGeneration/Generate",
                                   request_serializer=lambda b: b,
                                   response_deserializer=lambda b: b)
        try:
            list(raw(b"\x1a\x02\xff\xfe", timeout=10))
            raise AssertionError("invalid UTF-8 was accepted")
        except grpc.RpcError as error:
            check(error.code() == grpc.StatusCode.INVALID_ARGUMENT, str(error))
            check(error.details() == "text: must be valid UTF-8", error.details())
        print("ok: INVALID_ARGUMENT with pagoda-error-reason, invalid UTF-8 named")

        # The metrics page counts what the clients received (the engine reports a step just
        # after its outputs went out, so wait for the last report).
        deadline = time.time() + 10
        page = daemon.scrape()
        while metric(page, "pagoda_generation_tokens_total") < 24 and time.time() < deadline:
            time.sleep(0.05)
            page = daemon.scrape()
        for name in ("pagoda_num_requests_running", "pagoda_kv_cache_usage_ratio",
                     "pagoda_time_to_first_token_seconds_bucket", "pagoda_cache_config_info"):
            check(name in page, f"{name} missing from /metrics")
        prompt = metric(page, "pagoda_prompt_tokens_total")
        generated = metric(page, "pagoda_generation_tokens_total")
        check(prompt == 2 * complete.usage.prompt_tokens, f"prompt tokens {prompt}")
        check(generated == 24, f"generation tokens {generated}")
        # Refusals are counted once gRPC is done with the call, which may be after the client
        # has its status: poll briefly.
        for _ in range(100):
            if metric(page, "pagoda_requests_rejected_total", 'reason="invalid_field"') == 2:
                break
            time.sleep(0.05)
            page = daemon.scrape()
        check(metric(page, "pagoda_requests_rejected_total", 'reason="invalid_field"') == 2,
              "rejected{invalid_field}")
        print("ok: /metrics token counters match the responses")

        # SIGTERM with nothing running: a prompt exit 0.
        code = daemon.stop()
        check(code == 0, f"pagodad exited with {code}")
        print("ok: SIGTERM on an idle daemon exits 0")
    finally:
        if daemon.process.poll() is None:
            daemon.process.kill()
            daemon.process.wait(10)

    # SIGTERM while a stream runs, on a model slow enough (about 40 ms a token here) that the
    # drain lasts well beyond the checks made during it: health turns NOT_SERVING, new calls are
    # refused with DRAINING, the stream still completes, and pagodad exits 0.
    daemon = Daemon(binary, model="dummy:llama-110m",
                    extra_args=("--max-model-len", "128", "--kv-cache-memory", "32MiB"))
    try:
        channel = grpc.insecure_channel(daemon.address)
        stub = text_generation_service_pb2_grpc.TextGenerationStub(channel)
        health = health_pb2_grpc.HealthStub(channel)
        long_request = generate_pb2.GenerateRequest(
            token_ids=generate_pb2.TokenIds(ids=[1, 2, 3]), stream=True,
            stopping=sampling_pb2.StoppingParams(max_tokens=40, ignore_eos=True))
        stream = stub.Generate(long_request, timeout=120)
        first = next(stream)
        check(first.HasField("chunk"), str(first))
        daemon.process.send_signal(signal.SIGTERM)
        deadline = time.time() + 10
        while time.time() < deadline:
            status = health.Check(health_pb2.HealthCheckRequest(service=""), timeout=5).status
            if status == health_pb2.HealthCheckResponse.NOT_SERVING:
                break
            time.sleep(0.01)
        check(status == health_pb2.HealthCheckResponse.NOT_SERVING, f"health during drain {status}")
        short = generate_pb2.GenerateRequest(token_ids=generate_pb2.TokenIds(ids=[1]),
                                             stopping=sampling_pb2.StoppingParams(max_tokens=1))
        try:
            list(stub.Generate(short, timeout=10))
            raise AssertionError("Generate was accepted while draining")
        except grpc.RpcError as error:
            check(error.code() == grpc.StatusCode.UNAVAILABLE, str(error))
            check(("pagoda-error-reason", "DRAINING") in error.trailing_metadata(),
                  str(error.trailing_metadata()))
        rest = list(stream)
        check(rest[-1].HasField("complete"), str(rest[-1]))
        check(rest[-1].complete.finish_reason == generate_pb2.FINISH_REASON_LENGTH, str(rest[-1]))
        check(rest[-1].complete.usage.completion_tokens == 40, str(rest[-1]))
        code = daemon.process.wait(30)
        check(code == 0, f"pagodad exited with {code}")
        print("ok: SIGTERM drains the running stream and exits 0")
    finally:
        if daemon.process.poll() is None:
            daemon.process.kill()
            daemon.process.wait(10)


def main():
    if len(sys.argv) != 4:
        print(__doc__)
        return 2
    binary, proto_root, grpc_proto_root = sys.argv[1:]
    with tempfile.TemporaryDirectory() as out_dir:
        generate_stubs(out_dir, proto_root, grpc_proto_root)
        run(binary)
    print("PASS")
    return 0


if __name__ == "__main__":
    sys.exit(main())
