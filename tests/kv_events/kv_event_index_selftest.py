#!/usr/bin/python3
"""Self-test of kv_event_index.py against a fake publisher: a PUB and a ROUTER socket on loopback
(free ports) speaking pagodad's / vLLM's KV-event protocol, fed by a fake prefix cache that hashes
blocks with a per-process seed (as an engine does) and can list its cached blocks like
GET /debug/kv_cache_blocks. No pagodad needed.

Covers: chaining within and across BlockStored events, consecutive-prefix lookups, salted keys,
removal, AllBlocksCleared (one pod of two), the legacy array encoding, duplicates, a gap repaired
through replay, a lost tail caught by sync(), a late join, a restart seen as a seq going backwards
and one seen only through the replay identity check, an orphan re-announced by a resync batch,
real ZeroMQ high-water-mark drops while the subscriber pauses, a bound SUB that publishers
connect to (pods told apart by topic), and a seeded random run compared
with the fake cache's dump (and, as a control, an index without replay that must differ).

Usage: kv_event_index_selftest.py   (Debian's /usr/bin/python3: python3-zmq, python3-msgpack)
"""

import collections
import hashlib
import os
import random
import sys
import threading
import time

import msgpack
import zmq

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from kv_event_index import (KeyHasher, KvEventIndex, KvEventSubscriber,  # noqa: E402
                            request_keys_from_dump)

BS = 16
FAILURES = []


def check(condition, message):
    if not condition:
        FAILURES.append(message)
        print("FAIL:", message, flush=True)
    return condition


def wait_for(predicate, timeout=10.0, interval=0.02):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()


class FakeCache:
    """A prefix cache's bookkeeping: engine hashes chained over (seed, parent, tokens, salt) and
    truncated to 64 bits, the events each operation makes, and a dump like pagodad's."""

    def __init__(self, seed):
        self.seed = seed
        self.blocks = collections.OrderedDict()  # hash -> (parent, tokens, extra)

    def hash(self, parent, tokens, salt):
        data = msgpack.packb([self.seed, parent, tokens, salt])
        return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "big")

    def chain(self, tokens, salt=None):
        out, parent = [], None
        for i in range(len(tokens) // BS):
            chunk = tokens[i * BS:(i + 1) * BS]
            extra = [salt] if (i == 0 and salt is not None) else None
            h = self.hash(parent, chunk, extra)
            out.append((h, parent, chunk, extra))
            parent = h
        return out

    def store(self, tokens, salt=None):
        """Caches the sequence's full blocks; BlockStored events for the new ones (a new event
        whenever the run of new blocks is broken, as pagodad appends them)."""
        events = []
        for h, parent, chunk, extra in self.chain(tokens, salt):
            if h in self.blocks:
                continue
            self.blocks[h] = (parent, chunk, extra)
            last = events[-1] if events else None
            if last is not None and last["block_hashes"][-1] == parent:
                last["block_hashes"].append(h)
                last["token_ids"].extend(chunk)
                last["extra_keys"].append(extra)
            else:
                events.append(stored_event([h], parent, chunk, [extra]))
        return events

    def remove(self, hashes):
        for h in hashes:
            del self.blocks[h]
        return [{"type": "BlockRemoved", "block_hashes": list(hashes), "medium": "GPU",
                 "group_idx": 0}]

    def clear(self):
        self.blocks.clear()
        return [{"type": "AllBlocksCleared"}]

    def resync(self):
        """AllBlocksCleared, then every cached block (parents before children)."""
        events = [{"type": "AllBlocksCleared"}]
        for h in self.topological():
            parent, chunk, extra = self.blocks[h]
            events.append(stored_event([h], parent, chunk, [extra]))
        return events

    def topological(self):
        order, seen = [], set()

        def visit(h):
            if h in seen:
                return
            parent = self.blocks[h][0]
            if parent in self.blocks:
                visit(parent)
            seen.add(h)
            order.append(h)
        for h in self.blocks:
            visit(h)
        return order

    def dump(self):
        return {"medium": "GPU", "block_size": BS, "num_requests": 0,
                "blocks": [{"block_hash": h, "parent_block_hash": self.blocks[h][0],
                            "token_ids": self.blocks[h][1], "extra_keys": self.blocks[h][2]}
                           for h in self.topological()]}


def stored_event(hashes, parent, tokens, extras):
    return {"type": "BlockStored", "block_hashes": list(hashes), "parent_block_hash": parent,
            "token_ids": list(tokens), "block_size": BS, "lora_id": None, "medium": "GPU",
            "lora_name": None, "extra_keys": list(extras), "group_idx": 0,
            "kv_cache_spec_kind": "full_attention"}


def bind(sock, address, timeout=5.0):
    """Binds, retrying while a closed socket's listener (closed asynchronously) holds the port."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return sock.bind(address)
        except zmq.ZMQError as e:
            if e.errno != zmq.EADDRINUSE or time.monotonic() > deadline:
                raise
            time.sleep(0.05)


class FakePublisher:
    """pagodad's publisher in miniature: PUB [topic, seq, payload], a ring of batches, a ROUTER
    replaying [b"", seq, payload]... then [b"", -1, b""]. seq 0 is AllBlocksCleared."""

    def __init__(self, ctx, topic=b"kv@fake@model", pub_port=0, replay_port=0, sndhwm=1000,
                 buffer_steps=10000, seed=0, sndbuf=None, connect_to=None):
        self.topic = topic
        self.cache = FakeCache(seed)
        self.pub = ctx.socket(zmq.PUB)
        self.pub.setsockopt(zmq.SNDHWM, sndhwm)
        self.pub.setsockopt(zmq.LINGER, 0)
        if sndbuf:
            self.pub.setsockopt(zmq.SNDBUF, sndbuf)
        if connect_to:  # centralized mode: the subscriber binds, the publisher connects
            self.pub.connect(connect_to)
            self.endpoint = connect_to
        else:
            bind(self.pub, f"tcp://127.0.0.1:{pub_port}")
            self.endpoint = self.pub.getsockopt_string(zmq.LAST_ENDPOINT)
        self.router = ctx.socket(zmq.ROUTER)
        self.router.setsockopt(zmq.LINGER, 0)
        self.router.setsockopt(zmq.SNDHWM, buffer_steps + 2)
        bind(self.router, f"tcp://127.0.0.1:{replay_port}")
        self.replay_endpoint = self.router.getsockopt_string(zmq.LAST_ENDPOINT)
        self.buffer_steps = buffer_steps
        self.ring = collections.deque()
        self.ring_lock = threading.Lock()
        self.seq = 0
        self.replays = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def port(self):
        return int(self.endpoint.rsplit(":", 1)[1]), int(self.replay_endpoint.rsplit(":", 1)[1])

    def publish(self, events, send=True):
        payload = msgpack.packb([time.time(), events, 0])
        seq = self.seq
        self.seq += 1
        with self.ring_lock:
            self.ring.append((seq, payload))
            while len(self.ring) > self.buffer_steps:
                self.ring.popleft()
        if send:
            self.pub.send_multipart([self.topic, seq.to_bytes(8, "big"), payload])
        return seq, payload

    def resend(self, seq_payload):
        seq, payload = seq_payload
        self.pub.send_multipart([self.topic, seq.to_bytes(8, "big"), payload])

    def _serve(self):
        while not self.stop.is_set():
            if not self.router.poll(20):
                continue
            frames = self.router.recv_multipart()
            if len(frames) != 3 or frames[1] != b"" or len(frames[2]) != 8:
                continue
            self.replays += 1
            start = int.from_bytes(frames[2], "big")
            with self.ring_lock:
                batches = [b for b in self.ring if b[0] >= start]
            for seq, payload in batches:
                self.router.send_multipart([frames[0], b"", seq.to_bytes(8, "big"), payload])
            self.router.send_multipart([frames[0], b"", (-1).to_bytes(8, "big", signed=True),
                                        b""])

    def close(self):
        self.stop.set()
        self.thread.join()
        self.pub.close()
        self.router.close()


def tokens(rng, n_blocks, vocab=500):
    return [rng.randrange(vocab) for _ in range(n_blocks * BS)]


def equal_to_cache(index, pod, cache, label):
    """The index's engine keys and request keys equal the fake cache's, request keys recomputed
    from the dump's chains. Returns whether they do (and reports how they differ)."""
    dump = cache.dump()
    engine = {b["block_hash"] for b in dump["blocks"]}
    ours = index.engine_keys(pod)
    ok = check(ours == engine, f"{label}: engine keys differ: {len(ours - engine)} extra, "
                               f"{len(engine - ours)} missing")
    keys, _ = request_keys_from_dump(dump, index.hasher, index.known_request_key(pod))
    mapping = index.engine_to_request(pod)
    wrong = [h for h in engine & ours if mapping[h] != keys[h] or keys[h] is None]
    ok &= check(not wrong, f"{label}: {len(wrong)} blocks with another request key")
    ok &= check(index.request_keys(pod) == {k for k in keys.values() if k is not None},
                f"{label}: request key sets differ")
    return ok


def connect(ctx, index, name, pub, **kw):
    sub = KvEventSubscriber(index, **kw)
    sub.add_pod(name, pub.endpoint, pub.replay_endpoint)
    sub.start()
    time.sleep(0.3)  # the SUB connects before seq 0 goes out (else it would be a late join)
    return sub


def test_chaining_salt_removal_clear(ctx):
    rng = random.Random(1)
    a, b = FakePublisher(ctx, b"kv@a@m", seed=11), FakePublisher(ctx, b"kv@b@m", seed=22)
    index = KvEventIndex(model_name="m")
    sub = KvEventSubscriber(index)
    sub.add_pod("a", a.endpoint, a.replay_endpoint)
    sub.add_pod("b", b.endpoint, b.replay_endpoint)
    sub.start()
    time.sleep(0.3)
    for p in (a, b):
        p.publish([{"type": "AllBlocksCleared"}])
    prompt = tokens(rng, 5)
    # 3 blocks, then 2 more chained onto the third in a later batch.
    a.publish(a.cache.store(prompt[:3 * BS]))
    a.publish(a.cache.store(prompt))
    salted = tokens(rng, 3)
    b.publish(b.cache.store(salted, salt="tenant-1"))
    b.publish(b.cache.store(prompt[:2 * BS]))
    check(wait_for(lambda: index.last_seq("a") == 2 and index.last_seq("b") == 2),
          f"batches not applied: a {index.last_seq('a')} b {index.last_seq('b')}")
    h = index.hasher
    check(index.request_keys("a") == set(h.prompt_keys(prompt)),
          "pod a's request keys are not the chained keys of the 5-block prompt")
    check(index.lookup("a", prompt) == 5, f"lookup a: {index.lookup('a', prompt)} != 5")
    check(index.lookup("a", prompt + [1, 2, 3]) == 5, "a partial last block changes the lookup")
    other = prompt[:3 * BS] + [t + 1 for t in prompt[3 * BS:]]
    check(index.lookup("a", other) == 3, f"diverging 4th block: {index.lookup('a', other)} != 3")
    check(index.lookup("a", [t + 1 for t in prompt]) == 0, "a different first block matched")
    check(index.score(prompt) == {"a": 5, "b": 2}, f"score: {index.score(prompt)}")
    check(index.lookup("b", salted, salt="tenant-1") == 3, "the salted prompt with its salt")
    check(index.lookup("b", salted) == 0, "the salted blocks matched an unsalted lookup")
    check(index.lookup("b", salted, salt="tenant-2") == 0, "another salt matched")
    equal_to_cache(index, "a", a.cache, "chaining a")
    equal_to_cache(index, "b", b.cache, "chaining b")

    # Removing the 2nd block of 5: the consecutive prefix is 1 block; the rest stay indexed.
    second = a.cache.chain(prompt)[1][0]
    a.publish(a.cache.remove([second]))
    check(wait_for(lambda: index.last_seq("a") == 3), "removal not applied")
    check(index.lookup("a", prompt) == 1, f"after removing block 2: {index.lookup('a', prompt)}")
    check(second not in index.engine_keys("a") and len(index.engine_keys("a")) == 4,
          "the removed engine key is still there")
    check(index.pods_holding(h.prompt_keys(prompt)[1]) == {"b"},
          "the removed block's request key is still held by a (or b lost it)")
    check(index.pods_holding(h.prompt_keys(prompt)[0]) == {"a", "b"}, "block 1 held by a and b")
    equal_to_cache(index, "a", a.cache, "removal")

    # The legacy array encoding of BlockStored / BlockRemoved.
    legacy = tokens(rng, 2)
    chain = a.cache.chain(legacy)
    a.cache.blocks[chain[0][0]] = (None, chain[0][2], None)
    a.cache.blocks[chain[1][0]] = (chain[0][0], chain[1][2], None)
    a.publish([["BlockStored", [chain[0][0], chain[1][0]], None, legacy, BS, None, "GPU", None,
                [None, None], 0, "full_attention"]])
    check(wait_for(lambda: index.lookup("a", legacy) == 2), "legacy BlockStored not applied")

    # AllBlocksCleared on b drops b's entries only.
    b.publish(b.cache.clear())
    check(wait_for(lambda: not index.engine_keys("b")), "b not cleared")
    check(index.pods_holding(h.prompt_keys(prompt)[0]) == {"a"}, "a lost its entry on b's clear")
    check(index.lookup("a", prompt) == 1 and index.lookup("b", prompt) == 0, "lookups after clear")
    check(index.stats("a").get("gaps", 0) == 0, "gaps without any loss")
    sub.stop()
    a.close()
    b.close()


def test_gap_tail_duplicate(ctx):
    rng = random.Random(2)
    pub = FakePublisher(ctx, seed=3)
    index = KvEventIndex()
    sub = connect(ctx, index, "p", pub)
    pub.publish([{"type": "AllBlocksCleared"}])
    first = tokens(rng, 4)
    sent = pub.publish(pub.cache.store(first))
    lost = tokens(rng, 3)
    pub.publish(pub.cache.store(lost), send=False)  # seq 2 never reaches the subscriber
    pub.publish(pub.cache.remove([pub.cache.chain(first)[3][0]]), send=False)  # seq 3 neither
    later = tokens(rng, 2)
    pub.publish(pub.cache.store(later))  # seq 4: a gap of 2
    check(wait_for(lambda: index.last_seq("p") == 4), f"gap not repaired: {index.stats('p')}")
    stats = index.stats("p")
    check(stats.get("gaps") == 1 and stats.get("gap_batches") == 2,
          f"gap counts: {stats.get('gaps')} gaps, {stats.get('gap_batches')} batches")
    check(stats.get("batches_replayed", 0) >= 2, f"replayed: {stats.get('batches_replayed')}")
    check(index.lookup("p", lost) == 3 and index.lookup("p", first) == 3,
          "the replayed batches were not applied")
    equal_to_cache(index, "p", pub.cache, "gap repair")

    # A duplicate of an applied batch changes nothing.
    pub.resend(sent)
    check(wait_for(lambda: index.stats("p").get("duplicates") == 1), "duplicate not recognized")
    check(index.stats("p").get("restarts", 0) == 0, "a duplicate taken for a restart")

    # A lost tail: nothing follows it, so only sync() finds it.
    tail = tokens(rng, 2)
    pub.publish(pub.cache.store(tail), send=False)
    time.sleep(0.2)
    check(index.lookup("p", tail) == 0, "the unsent tail arrived anyway")
    applied = sub.sync("p")["p"]
    check(applied == 1, f"sync applied {applied} batches, wanted 1")
    equal_to_cache(index, "p", pub.cache, "tail sync")
    sub.stop()
    pub.close()


def test_late_join_and_restarts(ctx):
    rng = random.Random(3)
    pub = FakePublisher(ctx, seed=100)
    pub_port, replay_port = pub.port()
    pub.publish([{"type": "AllBlocksCleared"}])
    old = tokens(rng, 3)
    for i in range(5):
        pub.publish(pub.cache.store(old[:(i % 3 + 1) * BS] + tokens(rng, 1)))
    index = KvEventIndex()
    sub = connect(ctx, index, "p", pub)
    pub.publish(pub.cache.store(tokens(rng, 2)))  # seq 6: the subscriber joins late
    check(wait_for(lambda: index.last_seq("p") == 6), "late join not caught up")
    check(index.stats("p").get("late_joins") == 1, f"late joins: {index.stats('p')}")
    equal_to_cache(index, "p", pub.cache, "late join")

    # Restart 1 on the same ports: new hash seed, seq from 0; the subscriber reconnects and the
    # first batch it sees has a seq below its last: it must drop the old process's entries.
    pub.close()
    pub = FakePublisher(ctx, pub_port=pub_port, replay_port=replay_port, seed=200)
    time.sleep(0.5)  # reconnection
    pub.publish([{"type": "AllBlocksCleared"}])
    new = tokens(rng, 2)
    pub.publish(pub.cache.store(new))
    check(wait_for(lambda: index.stats("p").get("restarts") == 1 and index.last_seq("p") == 1),
          f"restart 1 not handled: {index.stats('p')}, last {index.last_seq('p')}")
    check(index.lookup("p", old) == 0, "entries of the old process survived its restart")
    check(index.lookup("p", new) == 2, "the new process's blocks are missing")
    equal_to_cache(index, "p", pub.cache, "restart 1")

    # Restart 2, where everything the new process sends before seq 3 is lost: seq 3 looks like
    # a gap after 1; the replay identity check (batch 1 differs) must turn it into a restart.
    pub.close()
    pub = FakePublisher(ctx, pub_port=pub_port, replay_port=replay_port, seed=300)
    time.sleep(0.5)
    pub.publish([{"type": "AllBlocksCleared"}], send=False)
    for _ in range(2):
        pub.publish(pub.cache.store(tokens(rng, 2)), send=False)
    pub.publish(pub.cache.store(tokens(rng, 1)))
    check(wait_for(lambda: index.stats("p").get("restarts") == 2 and index.last_seq("p") == 3),
          f"restart 2 not handled: {index.stats('p')}, last {index.last_seq('p')}")
    check(index.lookup("p", new) == 0, "restart 2 kept the previous process's blocks")
    equal_to_cache(index, "p", pub.cache, "restart 2")
    sub.stop()
    pub.close()


def test_orphan_resync(ctx):
    rng = random.Random(4)
    pub = FakePublisher(ctx, seed=7)
    index = KvEventIndex()
    sub = connect(ctx, index, "p", pub)
    pub.publish([{"type": "AllBlocksCleared"}])
    prompt = tokens(rng, 4)
    pub.publish(pub.cache.store(prompt))
    chain = pub.cache.chain(prompt)
    pub.publish(pub.cache.remove([chain[1][0]]))  # block 3 and 4 stay: orphans
    pub.publish(pub.cache.resync())
    check(wait_for(lambda: index.last_seq("p") == 3), "resync not applied")
    check(index.stats("p").get("unknown_parents", 0) == 0, "the orphan's parent was not resolved")
    check(chain[2][0] in index.engine_keys("p"), "the re-announced orphan is missing")
    check(index.lookup("p", prompt) == 1, f"prefix through an evicted block: "
                                          f"{index.lookup('p', prompt)}")
    equal_to_cache(index, "p", pub.cache, "orphan resync")
    sub.stop()
    pub.close()


def test_hwm_drops(ctx):
    """Real ZeroMQ drops: PUB SNDHWM 1, SUB RCVHWM 1 and a small kernel buffer, the subscriber
    paused while 3000 batches go out. It must see gaps, repair them, and end equal."""
    rng = random.Random(5)
    pub = FakePublisher(ctx, sndhwm=1, sndbuf=4096)
    index = KvEventIndex()
    sub = connect(ctx, index, "p", pub, rcvhwm=1, rcvbuf=4096)
    pub.publish([{"type": "AllBlocksCleared"}])
    check(wait_for(lambda: index.last_seq("p") == 0), "seq 0 not received")
    sub.pause()
    time.sleep(0.1)
    prefixes = [tokens(rng, 2) for _ in range(10)]
    for i in range(3000):
        events = pub.cache.store(rng.choice(prefixes) + tokens(rng, 2))
        if len(pub.cache.blocks) > 200:
            events += pub.cache.remove(rng.sample(list(pub.cache.blocks), 20))
        pub.publish(events)
    sub.resume()
    wait_for(lambda: index.last_seq("p") == pub.seq - 1, timeout=20)
    sub.sync("p")
    stats = index.stats("p")
    check(stats.get("gaps", 0) > 0, f"no gap seen with HWM 1 and a paused subscriber: {stats}")
    check(index.last_seq("p") == pub.seq - 1, f"last seq {index.last_seq('p')} != {pub.seq - 1}")
    equal_to_cache(index, "p", pub.cache, "hwm drops")
    print(f"  hwm: {stats.get('messages')} messages, {stats.get('gaps')} gaps "
          f"({stats.get('gap_batches')} batches), {stats.get('replays')} replays, "
          f"{stats.get('duplicates', 0)} duplicates")
    sub.stop()
    pub.close()


def test_random(ctx, seed=42, ops=600):
    """Seeded random stores (shared prefixes, salts), evictions, clears and resyncs with 10% of
    batches lost; at the end the index equals the cache. A control index fed the same stream
    without a replay endpoint must not (so the comparison can fail)."""
    rng = random.Random(seed)
    pub = FakePublisher(ctx, seed=seed)
    index, blind = KvEventIndex(), KvEventIndex()
    sub = connect(ctx, index, "p", pub)
    control = KvEventSubscriber(blind)
    control.add_pod("p", pub.endpoint, None)
    control.start()
    time.sleep(0.3)
    pub.publish([{"type": "AllBlocksCleared"}])
    prefixes = [tokens(rng, rng.randint(1, 4)) for _ in range(8)]
    lost = 0
    for _ in range(ops):
        r = rng.random()
        if r < 0.65 or len(pub.cache.blocks) < 30:
            events = pub.cache.store(rng.choice(prefixes) + tokens(rng, rng.randint(0, 3)),
                                     salt=rng.choice([None, None, None, "s1", "s2"]))
        elif r < 0.95:
            events = pub.cache.remove(rng.sample(list(pub.cache.blocks), rng.randint(1, 6)))
        elif r < 0.98:
            events = pub.cache.resync()
        else:
            events = pub.cache.clear()
        drop = rng.random() < 0.1
        lost += drop
        pub.publish(events, send=not drop)
        if rng.random() < 0.05:
            time.sleep(0.005)
    wait_for(lambda: index.last_seq("p") is not None and index.last_seq("p") >= pub.seq - 3)
    sub.sync("p")
    check(index.last_seq("p") == pub.seq - 1, "random: not caught up")
    ok = equal_to_cache(index, "p", pub.cache, "random")
    stats = index.stats("p")
    check(stats.get("gaps", 0) > 0, "random: no gap seen")
    wait_for(lambda: blind.last_seq("p") is not None and blind.last_seq("p") >= pub.seq - 3,
             timeout=3)
    check(blind.engine_keys("p") != {b["block_hash"] for b in pub.cache.dump()["blocks"]},
          "control: an index without replay ended equal too, so the comparison proves nothing")
    print(f"  random: {ops} batches, {lost} lost, {stats.get('gaps')} gaps, "
          f"{len(pub.cache.blocks)} blocks cached, equal: {ok}")
    control.stop()
    sub.stop()
    pub.close()


def test_bound_subscriber(ctx):
    """Centralized mode: one bound SUB, two publishers connecting to it; pods told apart by
    topic (one registered with its replay endpoint, one named from its kv@<pod>@<model> topic)."""
    rng = random.Random(6)
    index = KvEventIndex()
    sub = KvEventSubscriber(index)
    address = sub.bind("tcp://127.0.0.1:0")
    sub.start()
    a = FakePublisher(ctx, b"kv@10.0.0.1:8000@m", seed=1, connect_to=address)
    b = FakePublisher(ctx, b"kv@10.0.0.2:8000@m", seed=2, connect_to=address)
    sub.register_topic("pod-a", a.topic, a.replay_endpoint)
    time.sleep(0.3)
    prompt = tokens(rng, 3)
    for p in (a, b):
        p.publish([{"type": "AllBlocksCleared"}])
    a.publish(a.cache.store(prompt))
    a.publish([], send=False)  # a gap on pod-a, repaired through its replay endpoint
    a.publish(a.cache.store(prompt + tokens(rng, 1)))
    b.publish(b.cache.store(prompt[:BS]))
    check(wait_for(lambda: set(index.pod_names()) == {"pod-a", "10.0.0.2:8000"}
                   and index.last_seq("pod-a") == 3 and index.last_seq("10.0.0.2:8000") == 1),
          f"bound SUB: pods {index.pod_names()}")
    check(index.score(prompt) == {"pod-a": 3, "10.0.0.2:8000": 1}, f"score {index.score(prompt)}")
    check(index.stats("pod-a").get("gaps") == 1, "bound SUB: the gap was not seen")
    equal_to_cache(index, "pod-a", a.cache, "bound SUB")
    sub.stop()
    a.close()
    b.close()


def test_hasher():
    h = KeyHasher("m")
    t = list(range(40))
    keys = h.prompt_keys(t)
    check(len(keys) == 2, "prompt_keys makes one key per full block")
    check(keys[1] == h.block_key(keys[0], t[16:32]), "keys chain from the parent's key")
    check(keys != KeyHasher("other").prompt_keys(t), "the model name does not change the root")
    check(h.prompt_keys(t, salt="x")[0] != keys[0], "the salt is not folded into block 1")
    check(h.prompt_keys(t, salt="x")[1] != keys[1], "the salt does not propagate down the chain")


def main():
    ctx = zmq.Context()
    tests = [("hasher", lambda: test_hasher()),
             ("chaining, salt, removal, clear", lambda: test_chaining_salt_removal_clear(ctx)),
             ("gap, tail, duplicate", lambda: test_gap_tail_duplicate(ctx)),
             ("late join, restarts", lambda: test_late_join_and_restarts(ctx)),
             ("orphan resync", lambda: test_orphan_resync(ctx)),
             ("hwm drops", lambda: test_hwm_drops(ctx)),
             ("bound subscriber", lambda: test_bound_subscriber(ctx)),
             ("random", lambda: test_random(ctx))]
    for name, test in tests:
        before = len(FAILURES)
        start = time.monotonic()
        test()
        print(f"{'OK' if len(FAILURES) == before else 'FAILED'}: {name} "
              f"({time.monotonic() - start:.1f} s)", flush=True)
    ctx.term()
    if FAILURES:
        print(f"{len(FAILURES)} failures")
        sys.exit(1)
    print("all passed")


if __name__ == "__main__":
    main()
