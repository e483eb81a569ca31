"""KV offload end to end: a prompt served, its blocks evicted from the pool by other traffic and
spilled to the disk tier, then served again from the disk tier (cached_tokens > 0, disk loads
counted) with output identical to its cold run under greedy decoding, over HTTP and gRPC; the
same after a restart of pagodad; after the tier's files are damaged, the prompt is recomputed
(same output), the damage counted, nothing served from it. With KV events on, the tier's blocks
are published with medium "DISK": each one spilled after the pool removed it, the whole tier
announced after a restart, damaged blocks removed. Needs pyzmq and msgpack (Debian)."""

import glob
import json
import os
import re
import shutil
import sys
import tempfile
import time
import urllib.request

import msgpack

from kv_event_index import KvEventIndex, quiet_port
from pagoda_daemon import Daemon

MODEL = "dummy:tiny"
PROMPT = ("In the beginning God created the heaven and the earth. And the earth was without "
          "form, and void; and darkness was upon the face of the deep. And the Spirit of God "
          "moved upon the face of the waters.")


def flags(offload_dir, replay_port):
    # A 60-block pool (960 tokens): a dozen 200-token prompts evict the first one. KV events
    # are kept for replay: the test reads every batch back from seq 0.
    events = {"enable_kv_cache_events": True, "publisher": "zmq",
              "endpoint": f"tcp://127.0.0.1:{quiet_port()}",
              "replay_endpoint": f"tcp://127.0.0.1:{replay_port}"}
    return ["--model", MODEL, "--kv-cache-memory", str(60 * 16 * 256), "--max-model-len", "256",
            "--max-num-seqs", "4", "--threads", "1", "--kv-offload-dir", offload_dir,
            "--kv-offload-bytes", "64MiB", "--kv-offload-reload", "always",
            "--kv-events-config", json.dumps(events)]


def kv_events(replay_port):
    """Every event the daemon published so far, in order: (type, medium, block hashes)."""
    index = KvEventIndex()
    state = index.add_pod("pagodad", replay_endpoint=f"tcp://127.0.0.1:{replay_port}")
    out = []
    for _, payload in index.replay(state, 0, timeout=10):
        for e in msgpack.unpackb(payload, raw=False)[1]:
            out.append((e["type"], e.get("medium"), list(e.get("block_hashes") or ())))
    return out


def hashes(events, kind, medium):
    return [h for t, m, hs in events if t == kind and m == medium for h in hs]


def check_spill_events(daemon, replay_port):
    """Each block the disk tier stored was first removed from the pool."""
    events = kv_events(replay_port)
    stored = hashes(events, "BlockStored", "DISK")
    if not stored:
        fail("no BlockStored event with medium DISK", daemon)
    removed_from_pool, spilled = set(), set()
    for t, m, hs in events:
        if t == "BlockRemoved" and m == "GPU":
            removed_from_pool.update(hs)
        elif t == "BlockStored" and m == "DISK":
            early = [h for h in hs if h not in removed_from_pool]
            if early:
                fail(f"DISK BlockStored of {early[:3]} before the pool removed them", daemon)
            spilled.update(hs)
    print(f"OK: {len(spilled)} blocks published as stored on DISK after leaving the pool",
          flush=True)


def post(daemon, body):
    request = urllib.request.Request(f"http://127.0.0.1:{daemon.http_port}/v1/completions",
                                     data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.loads(response.read())


def complete(daemon, prompt):
    """(text, cached prompt tokens) of a greedy completion over HTTP."""
    answer = post(daemon, {"model": MODEL, "prompt": prompt, "max_tokens": 24,
                           "temperature": 0, "ignore_eos": True})
    return (answer["choices"][0]["text"],
            answer["usage"].get("prompt_tokens_details", {}).get("cached_tokens", 0))


def complete_grpc(daemon, prompt):
    """(output token ids, cached prompt tokens) of a greedy completion over gRPC."""
    run = daemon.cli_run("generate", prompt, "--max-tokens", "24", "--temperature", "0",
                         "--ignore-eos", "--no-stream", "--print-token-ids")
    if run.returncode != 0:
        fail(f"pagoda-cli generate failed: {run.stderr}", daemon)
    cached = re.search(r"cached (\d+) tokens", run.stderr)
    return run.stdout.strip(), int(cached.group(1)) if cached else -1


def fail(message, daemon=None):
    print("FAIL: " + message, flush=True)
    if daemon is not None:
        print("--- pagodad log (tail) ---\n" + daemon.log()[-3000:], flush=True)
    sys.exit(1)


def evict(daemon, salt):
    """Fills the pool with other prompts, so that PROMPT's blocks are evicted and spilled."""
    for i in range(14):
        complete(daemon, f"{salt} {i}: " + PROMPT[::-1])


def wait_for(predicate, seconds=10):
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


def main():
    pagodad = sys.argv[1]
    start = time.monotonic()
    offload_dir = tempfile.mkdtemp(prefix="pagoda_kv_offload_")
    disk = 'medium="disk"'
    replay = quiet_port()
    try:
        with Daemon(pagodad, *flags(offload_dir, replay)) as daemon:
            if "KV offload: disk" not in daemon.log():
                fail("no KV offload line in the start-up log", daemon)
            cold_text, cached = complete(daemon, PROMPT)
            cold_ids, _ = complete_grpc(daemon, PROMPT)
            if cached != 0:
                fail(f"the cold run had {cached} cached tokens", daemon)
            evict(daemon, "a")
            if not wait_for(lambda: daemon.metric("pagoda_kv_offload_stored_blocks_total",
                                           disk) > 0):
                fail("nothing was spilled to the disk tier", daemon)
            loads_before = daemon.metric("pagoda_kv_offload_loads_total", disk)
            text, cached = complete(daemon, PROMPT)
            if text != cold_text:
                fail(f"HTTP output after a disk load differs: {text!r} vs {cold_text!r}", daemon)
            if cached <= 0 or daemon.metric("pagoda_kv_offload_loads_total", disk) <= loads_before:
                fail(f"not served from the disk tier: cached_tokens {cached}", daemon)
            evict(daemon, "b")
            ids, cached = complete_grpc(daemon, PROMPT)
            if ids != cold_ids or cached <= 0:
                fail(f"gRPC after a disk load: cached {cached}, ids equal {ids == cold_ids}", daemon)
            print(f"OK: served from the disk tier over HTTP and gRPC, identical output", flush=True)
            check_spill_events(daemon, replay)
        if daemon.exit_code != 0:
            fail(f"pagodad exited {daemon.exit_code}", daemon)

        files = glob.glob(os.path.join(offload_dir, "*.kvb"))
        with Daemon(pagodad, *flags(offload_dir, replay)) as daemon:
            # The warm tier is announced before any request: AllBlocksCleared, then its blocks.
            if not wait_for(lambda: len(hashes(kv_events(replay), "BlockStored", "DISK"))
                            >= len(files)):
                fail("after a restart, the disk tier's blocks were not announced", daemon)
            first = kv_events(replay)
            announced = hashes(first, "BlockStored", "DISK")
            if first[0][0] != "AllBlocksCleared" or len(set(announced)) != len(files):
                fail(f"after a restart: {len(set(announced))} DISK blocks announced for "
                     f"{len(files)} files, first event {first[0][0]}", daemon)
            print(f"OK: after a restart, the {len(files)} disk blocks announced", flush=True)
            text, cached = complete(daemon, PROMPT)
            if text != cold_text or cached <= 0:
                fail(f"after a restart: cached_tokens {cached}, equal {text == cold_text}", daemon)
            if daemon.metric("pagoda_kv_offload_loads_total", disk) <= 0:
                fail("after a restart: no disk load counted", daemon)
            print(f"OK: after a restart, {cached} prompt tokens from the disk tier", flush=True)

        files = glob.glob(os.path.join(offload_dir, "*.kvb"))
        if not files:
            fail("the disk tier holds no block file")
        for path in files:  # one flipped byte in every body: every checksum fails
            with open(path, "r+b") as f:
                f.seek(os.path.getsize(path) // 2)
                byte = f.read(1)
                f.seek(-1, os.SEEK_CUR)
                f.write(bytes([byte[0] ^ 0x55]))
        with Daemon(pagodad, *flags(offload_dir, replay)) as daemon:
            text, cached = complete(daemon, PROMPT)
            if text != cold_text:
                fail("after damage: the output differs from the cold run", daemon)
            if not wait_for(lambda: hashes(kv_events(replay), "BlockRemoved", "DISK")):
                fail("after damage: no BlockRemoved event with medium DISK", daemon)
            if cached != 0:
                fail(f"after damage: {cached} tokens served from damaged blocks", daemon)
            if daemon.metric("pagoda_kv_offload_corrupt_total", disk) <= 0:
                fail("after damage: nothing counted in pagoda_kv_offload_corrupt_total", daemon)
            print("OK: damaged blocks skipped, counted, recomputed", flush=True)
        if daemon.exit_code != 0:
            fail(f"pagodad exited {daemon.exit_code}", daemon)
    finally:
        shutil.rmtree(offload_dir, ignore_errors=True)
    print(f"all passed in {time.monotonic() - start:.1f} s")


if __name__ == "__main__":
    main()
