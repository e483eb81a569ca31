"""A KV-event subscriber and block index built the way llm-d's indexer builds its own
(llm-d-kv-cache's "dual-key design"), for pagodad's --kv-events-config (vLLM's wire format).

What it does, per pod (one pagodad / vLLM engine):

- Receives EventBatches: ZeroMQ messages of 3 frames [topic, seq as 8-byte big-endian u64,
  msgpack [ts, [event...], data_parallel_rank]]. Events are maps keyed by "type" (vLLM's current
  encoding); the legacy positional arrays ["BlockStored", hashes, parent, ...] are read too.
- BlockStored: computes its own *request key* for every block by hashing the block's token ids,
  chained from the parent's request key (looked up through its engine-key -> request-key map);
  a sequence's first block chains from a root key that folds in a model name and a seed, and
  each block folds in its extra key (the cache salt of a salted sequence's first block). Stores
  engineKey -> requestKey and requestKey -> {pod}. BlockRemoved resolves the engine key and drops
  the pod from that request key; AllBlocksCleared drops every entry of the pod.
- Sequence numbers: each batch is applied at most once, in seq order. A gap (seq > last + 1) is
  counted and repaired by asking the pod's replay socket (ROUTER) for the batches from `last`
  on: the first batch replayed must be the one last applied (same payload digest), which proves
  the publisher is still the same process. A seq that goes backwards with a payload that differs
  from the batch applied at that seq, or a failed identity check, means the daemon restarted:
  the pod's entries are dropped and it is replayed from 0.
- Lookups: `lookup(pod, token_ids, salt)` is the longest consecutive prefix of the prompt's
  request keys that the pod holds, in blocks (llm-d's prefix scorer); `score()` does every pod.

Request keys are FNV-1a 64 over the msgpack encoding of [parent key, token ids, extra key] (llm-d
uses FNV-1a 64 over canonical CBOR of the same triple; the keys need only be self-consistent:
engine keys and request keys are decoupled, so no hash seed has to match the engine's).

Standard library + pyzmq + msgpack (Debian: python3-zmq, python3-msgpack). Used by
kv_event_index_selftest.py, kv_events_consistency_test.py and bench/fleet_sim.py.
"""

import collections
import hashlib
import random
import socket
import threading
import time

import msgpack
import zmq

END_MARKER = (-1).to_bytes(8, "big", signed=True)
DEFAULT_SEED = "pagoda-kv-index"
_FNV_OFFSET = 0xCBF29CE484222325
_FNV_PRIME = 0x100000001B3
_MASK64 = 0xFFFFFFFFFFFFFFFF


def quiet_port(low=20000, high=32000):
    """A TCP port free on 127.0.0.1 now, below Linux's ephemeral range (32768 and up), so that
    no outgoing connection is given it between now and the daemon binding it (a port from
    bind(0) can be, and then the daemon fails with "Address already in use")."""
    rng = random.SystemRandom()
    for _ in range(200):
        port = rng.randint(low, high)
        if port in _PORTS_GIVEN:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            _PORTS_GIVEN.add(port)
            return port
    raise RuntimeError("no free port")


_PORTS_GIVEN = set()  # this process never hands out a port twice


def fnv1a64(data):
    h = _FNV_OFFSET
    for byte in data:
        h = ((h ^ byte) * _FNV_PRIME) & _MASK64
    return h


def _norm_extra(extra):
    """An extra key as hashed: None, or a list (msgpack turns tuples into arrays anyway)."""
    if extra is None:
        return None
    if isinstance(extra, (list, tuple)):
        return list(extra)
    return [extra]


class KeyHasher:
    """Request keys: root = H([H(seed), None, model]); block = H([parent key, tokens, extra])."""

    def __init__(self, model_name="", block_size=16, seed=DEFAULT_SEED):
        self.model_name = model_name
        self.block_size = block_size
        self.root = fnv1a64(msgpack.packb([fnv1a64(seed.encode()), None, model_name]))

    def block_key(self, parent_key, token_ids, extra=None):
        if parent_key is None:
            parent_key = self.root
        return fnv1a64(msgpack.packb([parent_key, list(token_ids), _norm_extra(extra)]))

    def prompt_keys(self, token_ids, salt=None):
        """The request keys of the prompt's full blocks (a partial last block has none)."""
        keys, parent = [], None
        bs = self.block_size
        for i in range(len(token_ids) // bs):
            extra = [salt] if (i == 0 and salt is not None) else None
            parent = self.block_key(parent, token_ids[i * bs:(i + 1) * bs], extra)
            keys.append(parent)
        return keys


def request_keys_from_dump(dump, hasher, fallback=None, memo=None):
    """Request keys of the blocks of a /debug/kv_cache_blocks answer, computed from the dump's own
    chains and tokens (in any order). A block whose parent is not in the dump (an orphan: its
    parent was evicted, it was not) resolves its parent through `fallback` (engine key ->
    request key or None, e.g. KvEventIndex.known_request_key(pod)) when given.
    `memo` (a dict kept by the caller across dumps of one process: an engine key names one token
    prefix for the life of the process) skips rehashing blocks already seen.
    Returns (engine key -> request key, or None when unresolvable; [orphan engine keys])."""
    blocks = {b["block_hash"]: b for b in dump["blocks"]}
    keys, orphans = {}, []
    if memo:
        keys = {h: memo[h] for h in blocks if h in memo}
    for start in blocks:
        # Walk up to the first block whose key is known (or a root / an orphan), then down.
        path, h = [], start
        while h not in keys and h in blocks:
            path.append(h)
            parent = blocks[h].get("parent_block_hash")
            if parent is None or parent not in blocks or parent in path:
                break
            h = parent
        for h in reversed(path):
            if h in keys:
                continue
            parent = blocks[h].get("parent_block_hash")
            if parent is None:
                parent_key = hasher.root
            elif parent in keys:
                parent_key = keys[parent]
            else:
                orphans.append(h)
                parent_key = fallback(parent) if fallback else None
            keys[h] = (None if parent_key is None else
                       hasher.block_key(parent_key, blocks[h]["token_ids"],
                                        blocks[h].get("extra_keys")))
            if memo is not None and keys[h] is not None:
                memo[h] = keys[h]
    return keys, orphans


def longest_prefix(keys, held):
    """How many of `keys`, from the first, are all in `held` (a set or dict)."""
    n = 0
    for k in keys:
        if k not in held:
            break
        n += 1
    return n


class ReplayError(Exception):
    pass


class PodState:
    """One pod's view: its blocks and where its event stream stands."""

    DIGESTS_KEPT = 50000
    RETAINED_KEPT = 1_000_000

    def __init__(self, name, endpoint=None, replay_endpoint=None, topic=None):
        self.name = name
        self.endpoint = endpoint
        self.replay_endpoint = replay_endpoint
        self.topic = topic
        self.last_seq = None
        self.digests = collections.OrderedDict()  # seq -> payload digest, recent ones
        self.engine_to_request = {}  # engine key -> request key (None: unresolvable) held now
        # Every engine key -> request key this process ever stored (an engine key names one token
        # prefix for the life of the process): resolves the parent of an orphan that a resync
        # re-announces after its parent was removed. Dropped on a restart.
        self.retained = collections.OrderedDict()
        self.last_message_time = time.monotonic()
        self.last_sync_time = 0.0
        self.stats = collections.Counter()


class KvEventIndex:
    """The block index: engine and request keys per pod, request key -> pods. Thread-safe (one
    lock); `apply_message` is the single entry point for a received batch."""

    def __init__(self, model_name="", block_size=16, seed=DEFAULT_SEED, replay_timeout=5.0,
                 context=None, log=None):
        self.hasher = KeyHasher(model_name, block_size, seed)
        self.block_size = block_size
        self.replay_timeout = replay_timeout
        self.context = context or zmq.Context.instance()
        self.pods = {}
        self.request_to_pods = {}  # request key -> {pod name: engine keys on it mapping there}
        self.lock = threading.RLock()
        self.log = log or (lambda message: None)

    # ---- pods -------------------------------------------------------------------------------
    def add_pod(self, name, endpoint=None, replay_endpoint=None, topic=None):
        with self.lock:
            if name not in self.pods:
                self.pods[name] = PodState(name, endpoint, replay_endpoint, topic)
            return self.pods[name]

    def pod_names(self):
        with self.lock:
            return list(self.pods)

    # ---- queries ----------------------------------------------------------------------------
    def engine_keys(self, pod):
        with self.lock:
            return set(self.pods[pod].engine_to_request)

    def request_keys(self, pod):
        with self.lock:
            return {rk for rk in self.pods[pod].engine_to_request.values() if rk is not None}

    def engine_to_request(self, pod):
        with self.lock:
            return dict(self.pods[pod].engine_to_request)

    def known_request_key(self, pod):
        """A function engine key -> request key over every block the pod's process stored."""
        def find(engine_key):
            with self.lock:
                state = self.pods[pod]
                rk = state.engine_to_request.get(engine_key)
                return rk if rk is not None else state.retained.get(engine_key)
        return find

    def stats(self, pod=None):
        with self.lock:
            if pod is not None:
                return dict(self.pods[pod].stats)
            total = collections.Counter()
            for state in self.pods.values():
                total.update(state.stats)
            return dict(total)

    def last_seq(self, pod):
        with self.lock:
            return self.pods[pod].last_seq

    def pods_holding(self, request_key):
        with self.lock:
            return set(self.request_to_pods.get(request_key, ()))

    def lookup(self, pod, token_ids, salt=None):
        """Longest consecutive prefix of the prompt's blocks held by `pod`, in blocks."""
        return self.lookup_keys(pod, self.hasher.prompt_keys(token_ids, salt))

    def lookup_keys(self, pod, keys):
        with self.lock:
            n = 0
            for k in keys:
                if pod not in self.request_to_pods.get(k, ()):
                    break
                n += 1
            return n

    def score(self, token_ids, salt=None, pods=None):
        """{pod: longest prefix in blocks} for every pod (or those named)."""
        keys = self.hasher.prompt_keys(token_ids, salt)
        with self.lock:
            return {p: self.lookup_keys(p, keys) for p in (pods or self.pods)}

    # ---- applying batches -------------------------------------------------------------------
    def apply_message(self, pod, seq, payload):
        """One batch as received on the PUB/SUB stream: applied in order, gaps repaired by
        replay, duplicates skipped, restarts detected. Returns what happened (a string)."""
        with self.lock:
            state = self.pods[pod]
            state.last_message_time = time.monotonic()
            state.stats["messages"] += 1
            digest = _digest(payload)
            if state.last_seq is None:
                if seq == 0:
                    self._apply(state, seq, payload, digest)
                    return "applied"
                # Joined mid-stream: everything before `seq` is missing.
                state.stats["late_joins"] += 1
                self._catch_up(state, 0, verify=False)
            elif seq == state.last_seq + 1:
                self._apply(state, seq, payload, digest)
                return "applied"
            elif seq <= state.last_seq:
                if state.digests.get(seq) == digest:
                    state.stats["duplicates"] += 1
                    return "duplicate"
                state.stats["restarts_seen_by_seq"] += 1
                self._restart(state, f"seq {seq} after {state.last_seq} with another payload")
            else:
                state.stats["gaps"] += 1
                state.stats["gap_batches"] += seq - state.last_seq - 1
                self.log(f"{pod}: gap: seq {seq} after {state.last_seq}; replaying")
                self._catch_up(state, state.last_seq, verify=True)
            # The replay normally brought this batch too; if not, take it from here.
            if state.last_seq is None:
                # The replay socket had nothing: what came before this batch is lost.
                state.stats["unrepairable_batches"] += seq
                self._apply(state, seq, payload, digest)
                return "unrepaired"
            if seq == state.last_seq + 1:
                self._apply(state, seq, payload, digest)
                return "repaired"
            if seq <= state.last_seq:
                return "repaired"
            state.stats["unrepaired"] += 1
            return "unrepaired"

    def sync(self, pod, timeout=None):
        """Asks the pod's replay socket for everything from the last batch applied on (which
        also checks that the publisher is still the same process) and applies what was missed:
        e.g. the tail of a stream whose last batches the PUB socket dropped. Returns the number
        of batches applied, or None when the replay socket did not answer."""
        with self.lock:
            state = self.pods[pod]
            state.last_sync_time = time.monotonic()
            before = state.stats["batches_applied"]
            state.stats["syncs"] += 1
            try:
                if state.last_seq is None:
                    self._catch_up(state, 0, verify=False, timeout=timeout)
                else:
                    self._catch_up(state, state.last_seq, verify=True, timeout=timeout)
            except ReplayError:
                return None
            return state.stats["batches_applied"] - before

    def _restart(self, state, why):
        state.stats["restarts"] += 1
        self.log(f"{state.name}: publisher restarted ({why}); dropping its entries, replaying")
        self._reset(state)
        self._catch_up(state, 0, verify=False)

    def _reset(self, state):
        self._clear(state)
        state.retained.clear()
        state.digests.clear()
        state.last_seq = None

    def _catch_up(self, state, start, verify, timeout=None):
        """Replays from `start` and applies the batches after last_seq in order. With `verify`,
        the first batch must be `start` = last_seq with the digest applied; otherwise the
        publisher restarted and the pod is rebuilt from seq 0."""
        try:
            batches = self.replay(state, start, timeout)
        except ReplayError as e:
            state.stats["replay_failures"] += 1
            self.log(f"{state.name}: replay from {start} failed: {e}")
            raise
        state.stats["replays"] += 1
        if verify:
            if (not batches or batches[0][0] != start
                    or _digest(batches[0][1]) != state.digests.get(start)):
                first = batches[0][0] if batches else None
                state.stats["restarts_seen_by_replay"] += 1
                self._restart(state, f"replay from {start} began at seq {first} or differs")
                return
            batches = batches[1:]
        for seq, payload in batches:
            digest = _digest(payload)
            if state.last_seq is not None and seq <= state.last_seq:
                if state.digests.get(seq) != digest:
                    state.stats["replay_mismatches"] += 1
                continue
            expected = 0 if state.last_seq is None else state.last_seq + 1
            if seq != expected:
                # The replay buffer no longer holds these: the view may stay wrong until the
                # publisher re-announces its cache.
                state.stats["unrepairable_batches"] += seq - expected
                self.log(f"{state.name}: replay lacks seqs {expected}..{seq - 1}")
            self._apply(state, seq, payload, digest)
            state.stats["batches_replayed"] += 1

    def replay(self, state, start, timeout=None):
        """[(seq, payload)] of the pod's replay socket from `start` on (a DEALER socket of its
        own each time, so that no late answer to an earlier request can be mistaken)."""
        if not state.replay_endpoint:
            raise ReplayError("no replay endpoint")
        timeout = self.replay_timeout if timeout is None else timeout
        sock = self.context.socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        try:
            sock.connect(state.replay_endpoint)
            sock.send_multipart([b"", start.to_bytes(8, "big")])
            batches = []
            deadline = time.monotonic() + timeout
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or not sock.poll(int(remaining * 1000) + 1):
                    raise ReplayError(f"no end marker within {timeout} s "
                                      f"({len(batches)} batches received)")
                frames = sock.recv_multipart()
                if len(frames) != 3 or frames[0] != b"" or len(frames[1]) != 8:
                    state.stats["malformed_replies"] += 1
                    continue
                if frames[1] == END_MARKER:
                    return batches
                batches.append((int.from_bytes(frames[1], "big"), frames[2]))
        finally:
            sock.close()

    def _apply(self, state, seq, payload, digest):
        try:
            batch = msgpack.unpackb(payload, raw=False, strict_map_key=False)
            events = batch[1]
        except Exception:  # noqa: BLE001 - a bad payload is counted, not fatal
            state.stats["malformed_batches"] += 1
            events = []
        for event in events:
            self._apply_event(state, event)
        state.last_seq = seq
        state.digests[seq] = digest
        while len(state.digests) > PodState.DIGESTS_KEPT:
            state.digests.popitem(last=False)
        state.stats["batches_applied"] += 1

    def _apply_event(self, state, event):
        if isinstance(event, dict):
            kind = event.get("type")
            get = event.get
        elif isinstance(event, (list, tuple)) and event:
            kind = event[0]
            fields = _LEGACY_FIELDS.get(kind, ())
            values = dict(zip(fields, event[1:]))
            get = values.get
        else:
            state.stats["malformed_events"] += 1
            return
        if kind == "BlockStored":
            self._stored(state, get)
        elif kind == "BlockRemoved":
            if get("medium") not in (None, "GPU"):
                state.stats["other_medium_events"] += 1
                return
            for h in get("block_hashes") or ():
                self._remove(state, _hash_int(h))
            state.stats["removed_events"] += 1
        elif kind == "AllBlocksCleared":
            self._clear(state)
            state.stats["clears"] += 1
        else:
            state.stats["unknown_events"] += 1

    def _stored(self, state, get):
        if get("medium") not in (None, "GPU"):
            state.stats["other_medium_events"] += 1
            return
        hashes = [_hash_int(h) for h in get("block_hashes") or ()]
        tokens = get("token_ids") or []
        bs = get("block_size") or self.block_size
        if bs != self.block_size:
            state.stats["block_size_mismatches"] += 1
        extras = get("extra_keys") or [None] * len(hashes)
        if len(tokens) < bs * len(hashes) or len(extras) != len(hashes):
            state.stats["malformed_events"] += 1
            return
        state.stats["stored_events"] += 1
        parent = get("parent_block_hash")
        if parent is None:
            parent_key = self.hasher.root
        else:
            parent = _hash_int(parent)
            parent_key = state.engine_to_request.get(parent)
            if parent_key is None:
                # Not cached now: an orphan re-announced by a resync, or a child announced
                # before its parent. An index that forgets removed blocks (llm-d's) cannot
                # key these.
                parent_key = state.retained.get(parent)
                state.stats["parents_not_cached" if parent_key is not None
                            else "unknown_parents"] += 1
        for i, h in enumerate(hashes):
            if parent_key is None:
                rk = None
            else:
                rk = self.hasher.block_key(parent_key, tokens[i * bs:(i + 1) * bs], extras[i])
            self._add(state, h, rk)
            if extras[i] is not None:
                state.stats["salted_blocks_stored"] += 1
            parent_key = rk

    def _add(self, state, engine_key, request_key):
        old = state.engine_to_request.get(engine_key, _MISSING)
        if old is not _MISSING:
            if old == request_key:
                state.stats["restored_blocks"] += 1
                return
            state.stats["rekeyed_blocks"] += 1
            self._remove(state, engine_key)
        state.engine_to_request[engine_key] = request_key
        state.stats["stored_blocks"] += 1
        if request_key is None:
            state.stats["unresolved_blocks"] += 1
            return
        state.retained[engine_key] = request_key
        state.retained.move_to_end(engine_key)
        while len(state.retained) > PodState.RETAINED_KEPT:
            state.retained.popitem(last=False)
        pods = self.request_to_pods.setdefault(request_key, {})
        pods[state.name] = pods.get(state.name, 0) + 1

    def _remove(self, state, engine_key):
        rk = state.engine_to_request.pop(engine_key, _MISSING)
        if rk is _MISSING:
            state.stats["unknown_removals"] += 1
            return
        state.stats["removed_blocks"] += 1
        if rk is None:
            return
        pods = self.request_to_pods.get(rk)
        if pods is None or state.name not in pods:
            return
        pods[state.name] -= 1
        if pods[state.name] <= 0:
            del pods[state.name]
            if not pods:
                del self.request_to_pods[rk]

    def _clear(self, state):
        for rk in state.engine_to_request.values():
            if rk is None:
                continue
            pods = self.request_to_pods.get(rk)
            if pods is not None and state.name in pods:
                del pods[state.name]
                if not pods:
                    del self.request_to_pods[rk]
        state.engine_to_request.clear()


_MISSING = object()
# The legacy (array_like) layouts: field names after the tag, in declaration order.
_LEGACY_FIELDS = {
    "BlockStored": ("block_hashes", "parent_block_hash", "token_ids", "block_size", "lora_id",
                    "medium", "lora_name", "extra_keys", "group_idx", "kv_cache_spec_kind"),
    "BlockRemoved": ("block_hashes", "medium", "group_idx"),
    "AllBlocksCleared": (),
}


def _digest(payload):
    return hashlib.blake2b(payload, digest_size=16).digest()


def _hash_int(h):
    """An engine hash as an int: ints as they are, bytes as llm-d reads them (last 8, BE)."""
    if isinstance(h, (bytes, bytearray)):
        return int.from_bytes(bytes(h[-8:]), "big")
    return h


class KvEventSubscriber:
    """Feeds a KvEventIndex from ZeroMQ: one SUB socket per pod connected to the pod's PUB
    (pod discovery mode: each pagodad binds its endpoint), and/or one bound SUB socket that pods
    connect to (centralized mode: the pod is named by its topic, kv@<pod>@<model>, unless the
    topic was registered with add_pod). A background thread reads and applies; `pause()` stops
    it reading (to let the sockets' high-water marks drop messages), `sync()` catches up."""

    def __init__(self, index, rcvhwm=1000, rcvbuf=None, sync_interval=None, poll_ms=20):
        self.index = index
        self.context = index.context
        self.rcvhwm = rcvhwm
        self.rcvbuf = rcvbuf
        self.sync_interval = sync_interval
        self.poll_ms = poll_ms
        self.sockets = {}  # socket -> pod name (None: a shared bound socket)
        self.topics = {}  # topic bytes -> pod name (shared sockets)
        self._new = []  # sockets made by other threads, registered by the reader thread
        self._paused = threading.Event()
        self._stop = threading.Event()
        self._mutex = threading.Lock()
        self._thread = None
        self.errors = []

    def _socket(self):
        sock = self.context.socket(zmq.SUB)
        sock.setsockopt(zmq.RCVHWM, self.rcvhwm)
        if self.rcvbuf:
            sock.setsockopt(zmq.RCVBUF, self.rcvbuf)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.RECONNECT_IVL, 100)
        sock.setsockopt(zmq.RECONNECT_IVL_MAX, 1000)
        return sock

    def add_pod(self, name, endpoint, replay_endpoint=None, topic=b""):
        """Connects a SUB socket of its own to the pod's bound PUB `endpoint`."""
        topic = topic.encode() if isinstance(topic, str) else topic
        self.index.add_pod(name, endpoint, replay_endpoint, topic)
        sock = self._socket()
        sock.setsockopt(zmq.SUBSCRIBE, topic)
        sock.connect(endpoint)
        with self._mutex:
            self._new.append((sock, name))
        return sock

    def bind(self, endpoint, topic_prefix=b"kv@"):
        """A SUB socket that pods' PUB sockets connect to; returns its resolved address."""
        sock = self._socket()
        sock.setsockopt(zmq.SUBSCRIBE, topic_prefix)
        sock.bind(endpoint)
        with self._mutex:
            self._new.append((sock, None))
        return sock.getsockopt_string(zmq.LAST_ENDPOINT)

    def register_topic(self, name, topic, replay_endpoint=None):
        """For the bound socket: messages on `topic` belong to pod `name`."""
        topic = topic.encode() if isinstance(topic, str) else topic
        self.index.add_pod(name, None, replay_endpoint, topic)
        self.topics[topic] = name

    def start(self):
        self._thread = threading.Thread(target=self._run, name="kv-event-subscriber",
                                        daemon=True)
        self._thread.start()
        return self

    def stop(self):
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=10)
        for sock in list(self.sockets):
            sock.close()
        with self._mutex:
            for sock, _ in self._new:
                sock.close()
            self._new.clear()
        self.sockets.clear()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
        return False

    def pause(self):
        self._paused.set()

    def resume(self):
        self._paused.clear()

    def sync(self, pod=None, timeout=None):
        """index.sync for one pod or all; returns {pod: batches applied or None}."""
        return {p: self.index.sync(p, timeout) for p in ([pod] if pod else self.index.pod_names())}

    def _pod_for(self, sock_pod, topic):
        if sock_pod is not None:
            return sock_pod
        name = self.topics.get(topic)
        if name is None:
            parts = topic.decode(errors="replace").split("@")
            name = parts[1] if len(parts) == 3 else topic.decode(errors="replace")
            self.index.add_pod(name, None, None, topic)
            self.topics[topic] = name
        return name

    def _run(self):
        poller = zmq.Poller()
        while not self._stop.is_set():
            with self._mutex:
                for sock, name in self._new:
                    self.sockets[sock] = name
                    poller.register(sock, zmq.POLLIN)
                self._new.clear()
            if self._paused.is_set():
                time.sleep(self.poll_ms / 1000)
                continue
            try:
                ready = dict(poller.poll(self.poll_ms)) if self.sockets else {}
                if not self.sockets:
                    time.sleep(self.poll_ms / 1000)
                for sock in ready:
                    # Drain what is there (bounded, so that pause/stop are seen).
                    for _ in range(1000):
                        if self._paused.is_set() or self._stop.is_set():
                            break
                        try:
                            frames = sock.recv_multipart(zmq.NOBLOCK)
                        except zmq.Again:
                            break
                        self._handle(self.sockets[sock], frames)
                if self.sync_interval:
                    self._idle_sync()
            except Exception as e:  # noqa: BLE001 - keep reading; the test looks at errors
                self.errors.append(repr(e))
                time.sleep(0.05)

    def _handle(self, sock_pod, frames):
        if len(frames) != 3 or len(frames[1]) != 8:
            self.index.log(f"dropping a message of {len(frames)} frames")
            return
        pod = self._pod_for(sock_pod, frames[0])
        try:
            self.index.apply_message(pod, int.from_bytes(frames[1], "big"), frames[2])
        except ReplayError:
            pass  # counted; the next message or sync tries again

    def _idle_sync(self):
        now = time.monotonic()
        for name in self.index.pod_names():
            state = self.index.pods[name]
            if (state.replay_endpoint
                    and now - state.last_message_time > self.sync_interval
                    and now - state.last_sync_time > self.sync_interval):
                self.index.sync(name, timeout=min(self.index.replay_timeout, 2.0))
