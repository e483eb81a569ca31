#!/usr/bin/python3
"""KV events end to end: a subscriber that rebuilds pagodad's block index from its KV events
(kv_event_index.py, the way llm-d's indexer does) must end with exactly the engine's blocks.

Phase 1: pagodad (dummy:tiny, a KV pool of about 60 blocks) under a seeded random workload over
/v1/completions that forces evictions: shared prefixes, salted requests (cache_salt), whole and
streamed requests, streams the client closes mid-way; the daemon is restarted on the same ports
half-way. At quiescence (no request running or waiting), the subscriber's engine keys and the
request keys it computed must equal those of GET /debug/kv_cache_blocks (request keys
recomputed from the dump's own chains and tokens). Checked before the restart, after it, and at
the end. Also checked: seq 0 of each process is one AllBlocksCleared (through the replay socket),
the dump lists parents before children, evictions happened, salted blocks carry their salt, the
index saw exactly one restart.

Phase 2: a daemon whose PUB socket has hwm 1 and a subscriber with RCVHWM 1 and a small kernel
receive buffer that stops reading while the load runs: it must see gaps (asserted), repair them
through the replay socket, and end equal. Phase 3: the same with max_queue_size 1, so that the
daemon's own queue overflows too: pagoda_kv_events_dropped_total > 0, the resync batches
(AllBlocksCleared + every cached block) are seen, and the view still ends equal.

Usage: kv_events_consistency_test.py PAGODAD [--seed N]   (pagoda-cli beside it; Debian's
python3 with python3-zmq and python3-msgpack; tests/python on PYTHONPATH or found beside)
"""

import argparse
import http.client
import json
import os
import random
import re
import socket
import sys
import threading
import time
import urllib.request

import msgpack

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "python"))
from kv_event_index import (KvEventIndex, KvEventSubscriber, quiet_port,  # noqa: E402
                            request_keys_from_dump)
from pagoda_daemon import Daemon  # noqa: E402

free_port = quiet_port  # ports below the ephemeral range: the restart reuses them

MODEL = "dummy:tiny"  # vocab 512: prompts are token-id lists
BLOCK = 16
TARGET_BLOCKS = 60
DEADLINE = time.monotonic() + 140
VIOLATIONS = []  # contract violations found on the way (the test fails at the end)  # the whole test; every wait below is bounded by it too


def fail(message, daemon=None):
    print("FAIL:", message, flush=True)
    if daemon is not None:
        print("--- pagodad log (tail) ---\n" + daemon.log()[-4000:], flush=True)
    sys.exit(1)


def remaining(cap):
    return max(0.1, min(cap, DEADLINE - time.monotonic()))


class EventDaemon(Daemon):
    """pagodad with KV events on fixed ports (so that it can be restarted on the same ones)."""

    def __init__(self, pagodad, kv_cache_bytes, pub_port, replay_port, ports=None, hwm=None,
                 extra_config=None):
        config = {"enable_kv_cache_events": True, "publisher": "zmq",
                  "endpoint": f"tcp://*:{pub_port}",
                  "replay_endpoint": f"tcp://127.0.0.1:{replay_port}"}
        if hwm is not None:
            config["hwm"] = hwm
        config.update(extra_config or {})
        super().__init__(pagodad, "--model", MODEL, "--kv-cache-memory", str(kv_cache_bytes),
                         "--max-model-len", "256", "--max-num-seqs", "8", "--threads", "1",
                         "--debug-endpoints", "--kv-events-config", json.dumps(config),
                         ready_timeout=remaining(60))
        if ports is None:
            ports = quiet_port(), quiet_port(), quiet_port()
        self.port, self.metrics_port, self.http_port = ports
        self.address = f"127.0.0.1:{self.port}"
        self.pub_endpoint = f"tcp://127.0.0.1:{pub_port}"
        self.replay_endpoint = f"tcp://127.0.0.1:{replay_port}"

    def ports(self):
        return self.port, self.metrics_port, self.http_port

    def kv_blocks(self):
        m = re.search(r"KV cache: (\d+) blocks of (\d+) tokens.*?(\d+) bytes per token", self.log())
        return (int(m.group(1)), int(m.group(2)), int(m.group(3))) if m else None


def http_get(daemon, path, timeout=10):
    with urllib.request.urlopen(f"http://127.0.0.1:{daemon.http_port}{path}",
                                timeout=timeout) as r:
        return r.read().decode()


def dump(daemon):
    return json.loads(http_get(daemon, "/debug/kv_cache_blocks"))


def metric(daemon, name, *labels):
    """The sum of the series of `name` whose labels include every one of `labels`."""
    total = 0.0
    for line in http_get(daemon, "/metrics").splitlines():
        series = line.split("{", 1)[0].split(" ", 1)[0]
        if series == name and all(label in line for label in labels):
            total += float(line.rsplit(" ", 1)[1])
    return total


def completion(daemon, body, cancel_after=None, timeout=60):
    """POSTs /v1/completions. With cancel_after, reads that many stream events and closes the
    connection. Returns the HTTP status (200 expected)."""
    conn = http.client.HTTPConnection("127.0.0.1", daemon.http_port, timeout=timeout)
    try:
        conn.request("POST", "/v1/completions", body=json.dumps(body),
                     headers={"Content-Type": "application/json"})
        response = conn.getresponse()
        if response.status != 200:
            return response.status, response.read()[:300]
        if not body.get("stream"):
            response.read()
            return 200, None
        events = 0
        for raw in response:
            if raw.startswith(b"data: "):
                if raw.strip() == b"data: [DONE]":
                    break
                events += 1
                if cancel_after is not None and events >= cancel_after:
                    conn.sock.shutdown(socket.SHUT_RDWR)
                    break
        return 200, None
    finally:
        conn.close()


class Workload:
    """The seeded requests: shared prefixes, salts, whole / streamed / cancelled streams."""

    def __init__(self, seed):
        self.rng = random.Random(seed)
        self.prefixes = [self.tokens(self.rng.randint(1, 5) * BLOCK) for _ in range(6)]

    def tokens(self, n):
        return [self.rng.randrange(3, 500) for _ in range(n)]

    def requests(self, n, max_suffix=60):
        out = []
        for _ in range(n):
            prompt = self.rng.choice(self.prefixes) + self.tokens(self.rng.randint(0, max_suffix))
            body = {"prompt": prompt, "max_tokens": self.rng.randint(1, 24), "temperature": 0,
                    "ignore_eos": True}
            if self.rng.random() < 0.25:
                body["cache_salt"] = self.rng.choice(["alpha", "beta"])
            r = self.rng.random()
            cancel = None
            if r < 0.15:
                body.update(stream=True, max_tokens=64)
                cancel = self.rng.randint(1, 3)
            elif r < 0.55:
                body["stream"] = True
            out.append((body, cancel))
        return out


def run_load(daemon, requests, concurrency=4):
    """Sends the requests from `concurrency` threads; fails on any status but 200."""
    todo = list(requests)
    lock = threading.Lock()
    errors = []

    def worker():
        while time.monotonic() < DEADLINE:
            with lock:
                if not todo or errors:
                    return
                body, cancel = todo.pop(0)
            try:
                status, detail = completion(daemon, body, cancel, timeout=remaining(60))
            except Exception as e:  # noqa: BLE001
                status, detail = None, repr(e)
            if status != 200:
                with lock:
                    errors.append(f"{status} {detail}")
    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(remaining(120))
    if errors:
        fail(f"request failed: {errors[0]}", daemon)
    if todo:
        fail(f"{len(todo)} requests not sent before the deadline", daemon)


def quiescent_dump(daemon):
    deadline = time.monotonic() + remaining(30)
    while True:
        d = dump(daemon)
        if d["num_requests"] == 0:
            return d
        if time.monotonic() > deadline:
            fail(f"not quiescent: num_requests {d['num_requests']}", daemon)
        time.sleep(0.1)


def differences(index, pod, d):
    """How the index differs from the dump (empty: equal)."""
    problems = []
    engine = {b["block_hash"] for b in d["blocks"]}
    ours = index.engine_keys(pod)
    if ours != engine:
        problems.append(f"engine keys: {len(ours - engine)} extra, {len(engine - ours)} missing "
                        f"(engine {len(engine)}, index {len(ours)})")
    keys, orphans = request_keys_from_dump(d, index.hasher, index.known_request_key(pod))
    mapping = index.engine_to_request(pod)
    unresolved = [h for h, k in keys.items() if k is None]
    if unresolved:
        problems.append(f"{len(unresolved)} dump blocks whose request key cannot be computed")
    wrong = [h for h in engine & ours if mapping[h] != keys[h]]
    if wrong:
        problems.append(f"{len(wrong)} blocks whose request keys differ")
    if index.request_keys(pod) != {k for k in keys.values() if k is not None}:
        problems.append("request key sets differ")
    return problems, len(orphans)


def check_equal(index, sub, daemon, pod, label):
    """At quiescence: sync (catch up on a lost tail) and compare, retrying for up to 5 s."""
    d = quiescent_dump(daemon)
    deadline = time.monotonic() + remaining(5)
    while True:
        sub.sync(pod, timeout=remaining(5))
        d = quiescent_dump(daemon)
        problems, orphans = differences(index, pod, d)
        if not problems:
            break
        if time.monotonic() > deadline:
            fail(f"{label}: the subscriber's view differs from /debug/kv_cache_blocks: "
                 f"{'; '.join(problems)}; index stats {index.stats(pod)}", daemon)
        time.sleep(0.2)
    check_dump_order(d, daemon)
    salted = sum(1 for b in d["blocks"] if b.get("extra_keys"))
    print(f"OK: {label}: {len(d['blocks'])} blocks equal ({orphans} orphans, {salted} salted "
          f"first blocks), index seq {index.last_seq(pod)}", flush=True)
    return d


def check_dump_order(d, daemon):
    seen = set()
    position = {b["block_hash"]: i for i, b in enumerate(d["blocks"])}
    for i, b in enumerate(d["blocks"]):
        parent = b.get("parent_block_hash")
        if parent in position and parent not in seen:
            path = os.path.join(os.path.dirname(daemon.log_path), "kv_cache_blocks.json")
            with open(path, "w") as f:
                json.dump(d, f)
            # A contract violation, not a subscriber error: noted, the test goes on, fails at
            # the end.
            message = (f"/debug/kv_cache_blocks lists block {b['block_hash']} (position {i}) "
                       f"before its parent {parent} (position {position[parent]}); the dump: "
                       f"{path}")
            print("CONTRACT:", message, flush=True)
            VIOLATIONS.append(message)
            return
        if len(b["token_ids"]) != d["block_size"]:
            fail(f"dump block with {len(b['token_ids'])} tokens", daemon)
        seen.add(b["block_hash"])


def check_seq0(index, daemon, pod):
    """The replay socket's first batch of this process: seq 0, one AllBlocksCleared."""
    batches = index.replay(index.pods[pod], 0, timeout=remaining(5))
    if not batches or batches[0][0] != 0:
        fail(f"replay from 0 began at {batches[0][0] if batches else 'nothing'}", daemon)
    events = msgpack.unpackb(batches[0][1], raw=False)[1]
    if events != [{"type": "AllBlocksCleared"}]:
        fail(f"seq 0 holds {events}, not one AllBlocksCleared", daemon)
    batch = msgpack.unpackb(batches[0][1], raw=False)
    if not isinstance(batch[0], float) or batch[2] != 0:
        fail(f"batch shape [ts, events, dp_rank]: {batch}", daemon)


def size_pool(pagodad):
    """Bytes of KV memory for about TARGET_BLOCKS blocks, from the daemon's own log line."""
    probe = EventDaemon(pagodad, 1 << 20, free_port(), free_port())
    with probe:
        blocks, block_size, per_token = probe.kv_blocks()
    if block_size != BLOCK:
        fail(f"block size {block_size}, expected {BLOCK}")
    return TARGET_BLOCKS * BLOCK * per_token


def phase1(pagodad, pool_bytes, seed):
    pod = "pod0"
    pub_port, replay_port = free_port(), free_port()
    index = KvEventIndex(model_name=MODEL, log=lambda m: print("  index:", m, flush=True))
    sub = KvEventSubscriber(index)
    sub.add_pod(pod, f"tcp://127.0.0.1:{pub_port}", f"tcp://127.0.0.1:{replay_port}")
    sub.start()
    work = Workload(seed)
    try:
        daemon = EventDaemon(pagodad, pool_bytes, pub_port, replay_port)
        with daemon:
            blocks = daemon.kv_blocks()[0]
            if not 40 <= blocks <= 80:
                fail(f"the pool has {blocks} blocks, wanted 40..80", daemon)
            check_seq0(index, daemon, pod)
            run_load(daemon, work.requests(120))
            check_equal(index, sub, daemon, pod, "phase 1, before the restart")
            evictions = metric(daemon, "pagoda_kv_cache_evictions_total")
            ports = daemon.ports()
        if daemon.exit_code != 0:
            fail(f"pagodad exited {daemon.exit_code}", daemon)
        # The same ports again: the subscriber's sockets reconnect by themselves.
        daemon = EventDaemon(pagodad, pool_bytes, pub_port, replay_port, ports=ports)
        with daemon:
            check_seq0(index, daemon, pod)
            # Reconnected before the load (reconnect interval at most 1 s): the index then sees
            # the restart as a seq going backwards (else the replay identity check finds it).
            time.sleep(1.2)
            run_load(daemon, work.requests(40))
            check_equal(index, sub, daemon, pod, "phase 1, after the restart")
            run_load(daemon, work.requests(80))
            check_equal(index, sub, daemon, pod, "phase 1, end")
            evictions += metric(daemon, "pagoda_kv_cache_evictions_total")
            aborts = metric(daemon, "pagoda_request_success_total", 'finished_reason="abort"')
            stats = index.stats(pod)
            if evictions <= 0 or stats.get("removed_blocks", 0) <= 0:
                fail(f"no evictions ({evictions}) or no BlockRemoved ({stats}): the pool is "
                     f"too large for the workload", daemon)
            if not stats.get("salted_blocks_stored"):
                fail(f"no salted block was ever stored: {stats}", daemon)
            if stats.get("restarts") != 1:
                fail(f"the index saw {stats.get('restarts')} restarts, not 1: {stats}", daemon)
            if stats.get("unknown_parents", 0) or stats.get("unrepairable_batches", 0):
                fail(f"unresolved parents or unrepairable batches: {stats}", daemon)
            print(f"OK: phase 1: {int(evictions)} evictions, {int(aborts)} aborted streams, "
                  f"index stats {stats}", flush=True)
        if sub.errors:
            fail(f"subscriber errors: {sub.errors[:3]}")
    finally:
        sub.stop()


def phase2(pagodad, pool_bytes, seed, label, extra_config=None, per_round=60, max_suffix=60):
    """hwm 1 and a paused subscriber: gaps, repaired through replay, then equal. With
    max_queue_size 1 in extra_config the daemon's own queue overflows too: it must count the
    dropped batches and re-announce its cache (AllBlocksCleared + every block)."""
    pod = "pod-" + label.split()[1]
    pub_port, replay_port = free_port(), free_port()
    index = KvEventIndex(model_name=MODEL)
    sub = KvEventSubscriber(index, rcvhwm=1, rcvbuf=4096)
    sub.add_pod(pod, f"tcp://127.0.0.1:{pub_port}", f"tcp://127.0.0.1:{replay_port}")
    sub.start()
    work = Workload(seed)
    try:
        with EventDaemon(pagodad, pool_bytes, pub_port, replay_port, hwm=1,
                         extra_config=extra_config) as daemon:
            # Caught up on seq 0 first, so that the first gap is not masked by a late join.
            if sub.sync(pod, timeout=remaining(5))[pod] is None or index.last_seq(pod) is None:
                fail(f"{label}: no answer from the replay socket", daemon)
            time.sleep(1.2)  # the SUB socket has connected (reconnect interval at most 1 s)
            rounds = 0
            # With max_queue_size 1 the daemon drops a batch only when the engine finishes two
            # steps before the publisher thread takes the first: a race that a busy machine can
            # lose for a whole round, so those rounds go on until a drop is seen as well.
            wants_drops = bool(extra_config and extra_config.get("max_queue_size") == 1)

            def done():
                if not index.stats(pod).get("gaps"):
                    return False
                return not wants_drops or metric(daemon, "pagoda_kv_events_dropped_total") > 0

            # Pause, load, resume; until a gap is seen (the kernel's socket buffers absorb some
            # batches before ZeroMQ drops any), at most 8 rounds.
            while rounds < 8 and not done():
                rounds += 1
                sub.pause()
                run_load(daemon, work.requests(per_round, max_suffix), concurrency=6)
                sub.resume()
                end = time.monotonic() + 3
                while time.monotonic() < end and not index.stats(pod).get("gaps"):
                    time.sleep(0.05)
            stats = index.stats(pod)
            if not stats.get("gaps"):
                fail(f"{label}: no gap after {rounds} rounds with hwm 1 and a paused subscriber: "
                     f"{stats}", daemon)
            check_equal(index, sub, daemon, pod, f"{label} (gaps repaired)")
            stats = index.stats(pod)
            dropped = metric(daemon, "pagoda_kv_events_dropped_total")
            print(f"OK: {label}: {rounds} rounds, {stats.get('gaps')} gaps, "
                  f"{stats.get('batches_replayed')} batches replayed, daemon-side dropped "
                  f"batches {int(dropped)}; index stats {stats}", flush=True)
            if stats.get("restarts", 0) or stats.get("unrepairable_batches", 0):
                fail(f"{label}: a restart or an unrepairable gap: {stats}", daemon)
            if wants_drops:
                if dropped <= 0:
                    fail(f"{label}: max_queue_size 1 and no batch dropped by the daemon", daemon)
                if stats.get("clears", 0) < 2:
                    fail(f"{label}: {int(dropped)} dropped batches but no resync "
                         f"(AllBlocksCleared) after seq 0: {stats}", daemon)
        if sub.errors:
            fail(f"subscriber errors: {sub.errors[:3]}")
    finally:
        sub.stop()


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("pagodad")
    p.add_argument("--seed", type=int, default=2024)
    args = p.parse_args()
    start = time.monotonic()
    pool_bytes = size_pool(args.pagodad)
    phase1(args.pagodad, pool_bytes, args.seed)
    phase2(args.pagodad, pool_bytes, args.seed + 1, "phase 2, hwm 1")
    phase2(args.pagodad, pool_bytes, args.seed + 2, "phase 3, hwm 1 and max_queue_size 1",
           {"max_queue_size": 1}, max_suffix=100)
    if VIOLATIONS:
        fail(f"{len(VIOLATIONS)} contract violations (views equal otherwise): {VIOLATIONS[0]}")
    print(f"all passed in {time.monotonic() - start:.1f} s")


if __name__ == "__main__":
    main()
