#!/usr/bin/python3
"""A fleet of pagodad replicas behind three routing policies: how much KV-event-driven routing
buys over round-robin, and how close it comes to perfect knowledge.

    bench/fleet_sim.py --pagodad build/server/pagodad [--replicas 4] [--json out.json]

Starts --replicas pagodad replicas on loopback (the built-in model unless --model; each with a
small KV pool, --threads 1, KV events on and --debug-endpoints), then replays one seeded
multi-turn chat workload under each policy, with fresh replicas for each:

- round-robin: replica i mod N;
- kv-events: the harness plays an endpoint picker's role (a measurement harness, not a product):
  it renders the prompt to token ids through /v1/completions/render, scores every replica by the
  longest prefix of the prompt's blocks that the index rebuilt from the replicas' live KV events
  holds (tests/kv_events/kv_event_index.py, the way llm-d's indexer keys blocks), and adds a load
  score from its own count of requests in flight on each replica (llm-d's prefix-cache scorer
  plus a load scorer: score = prefix_weight * hit blocks / prompt blocks + load_weight * (1 -
  in flight / concurrency); ties go to the least loaded, then the lowest index);
- oracle: the same scoring with perfect knowledge: each replica's real longest prefix hit from
  GET /debug/kv_cache_blocks just before dispatch.

The workload: --conversations chats sharing one system prompt, each --turns turns; every turn
resends the whole history plus a new user message as one /v1/completions prompt (text,
streamed, greedy, --max-tokens per answer, ignore_eos); --concurrency conversations in flight,
the others waiting in a FIFO so that a conversation's next turn comes after many others'. The
pools are sized so that one replica holds about 1/N of the working set (every conversation's
final history) and the N replicas together hold all of it.

Per policy: the prefix-cache hit rate (pagoda_prefix_cache_hit_tokens_total over
pagoda_prefix_cache_queried_tokens_total, summed over the replicas: they start empty, so this is
the run's delta), TTFT p50/p99 (client side: from sending the completion request to its first
streamed token; the routing decision before it is reported apart), output tokens/s over the
run, and the ratios kv-events/oracle hit rate and round-robin/kv-events TTFT p50. Prints a
Markdown table; --json FILE keeps everything. The kv-events run ends by checking the index
against every replica's /debug/kv_cache_blocks.

Debian's /usr/bin/python3 with python3-zmq and python3-msgpack; pagoda-cli beside pagodad.
"""

import argparse
import http.client
import json
import math
import os
import random
import re
import statistics
import sys
import threading
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "kv_events"))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "python"))
from kv_event_index import (KvEventIndex, KvEventSubscriber, longest_prefix,  # noqa: E402
                            quiet_port, request_keys_from_dump)
from pagoda_daemon import Daemon  # noqa: E402

SYSTEM = ("The following is a conversation between a seeker and a teacher of the scriptures. "
          "The teacher answereth in the words of the King James Bible, and the seeker asketh "
          "of the law, of the prophets and of the kingdom.\n")
WORDS = ("lord god heaven earth light darkness waters firmament land seed fruit tree night day "
         "king israel judah jerusalem temple house father son brother mother servant people "
         "nations sword fire cloud mountain river sea bread wine oil gold silver stone altar "
         "sacrifice covenant law commandment prophet priest spirit soul heart hand word voice "
         "mercy truth peace glory power kingdom righteousness sin iniquity judgment wrath "
         "blessing children generation wilderness desert city gate wall field flock shepherd "
         "sheep lamb lion eagle dove famine plenty harvest rain wind thunder angel throne crown "
         "garment tabernacle ark journey promise faith grace wisdom understanding fear love "
         "hope joy sorrow death life resurrection").split()
QUESTIONS = ["What saith the scripture of the {} and the {}?",
             "Tell me of the {} and of the {}, and of the {}.",
             "Why did the {} go unto the {} of the {}?",
             "How shall the {} be known by the {}?",
             "Where is the {} that the {} gave unto the {}?"]


class Replica(Daemon):
    """One pagodad with KV events (PUB bound on a free port, replay on another)."""

    def __init__(self, args, pool_bytes):
        self.pub_port, self.replay_port = quiet_port(), quiet_port()
        config = {"enable_kv_cache_events": True, "publisher": "zmq",
                  "endpoint": f"tcp://*:{self.pub_port}",
                  "replay_endpoint": f"tcp://127.0.0.1:{self.replay_port}"}
        flags = (["--model", args.model] if args.model else []) + [
            "--kv-cache-memory", str(pool_bytes), "--threads", str(args.threads),
            "--debug-endpoints", "--kv-events-config", json.dumps(config)]
        super().__init__(args.pagodad, *flags, ready_timeout=120)
        # Below the ephemeral range, so that no outgoing connection takes them first.
        self.port, self.metrics_port, self.http_port = quiet_port(), quiet_port(), quiet_port()
        self.address = f"127.0.0.1:{self.port}"

    def start(self):
        """Starts the process without waiting (Daemon.__enter__ waits; see wait_ready)."""
        import subprocess
        self.process = subprocess.Popen(
            [self.pagodad, "--host", "127.0.0.1", "--port", str(self.port), "--metrics-port",
             str(self.metrics_port), "--http-port", str(self.http_port)] + self.flags,
            stdout=open(self.log_path, "w"), stderr=subprocess.STDOUT)

    def wait_ready(self):
        """Whether it came up (else it is stopped, its log kept)."""
        deadline = time.time() + self.ready_timeout
        while self.cli_run("model-info").returncode != 0:
            if self.process.poll() is not None or time.time() > deadline:
                self.__exit__(None, None, None)
                return False
            time.sleep(0.2)
        return True

    def get(self, path, timeout=30):
        with urllib.request.urlopen(f"http://127.0.0.1:{self.http_port}{path}",
                                    timeout=timeout) as r:
            return r.read().decode()

    def post(self, path, body, timeout=60):
        conn = http.client.HTTPConnection("127.0.0.1", self.http_port, timeout=timeout)
        try:
            conn.request("POST", path, body=json.dumps(body),
                         headers={"Content-Type": "application/json"})
            r = conn.getresponse()
            data = r.read()
            if r.status != 200:
                raise RuntimeError(f"{path}: {r.status} {data[:300]!r}")
            return json.loads(data)
        finally:
            conn.close()

    def metric(self, name):
        total = 0.0
        for line in self.get("/metrics").splitlines():
            if line.split("{", 1)[0].split(" ", 1)[0] == name:
                total += float(line.rsplit(" ", 1)[1])
        return total

    def log_figures(self):
        """(blocks, bytes per token) from the 'KV cache:' log line."""
        m = re.search(r"KV cache: (\d+) blocks of (\d+) tokens.*?(\d+) bytes per token",
                      self.log())
        return int(m.group(1)), int(m.group(3))


def start_replicas(args, pool_bytes, n):
    """n replicas started together; one that fails to start (a port taken meanwhile) is
    replaced, up to 3 times."""
    replicas = [Replica(args, pool_bytes) for _ in range(n)]
    for r in replicas:
        r.start()
    for i in range(n):
        for attempt in range(3):
            if replicas[i].wait_ready():
                break
            failed = replicas[i]
            if attempt == 2:
                for r in replicas:
                    r.__exit__(None, None, None)
                sys.exit("pagodad did not start; its log:\n" + failed.log())
            print(f"replica {i} did not start, again: {failed.log().strip().splitlines()[-2:]}",
                  flush=True)
            replicas[i] = Replica(args, pool_bytes)
            replicas[i].start()
    return replicas


def render(replica, text):
    return replica.post("/v1/completions/render", {"prompt": text})[0]["token_ids"]


class PromptTooLong(Exception):
    pass


class Conversation:
    def __init__(self, cid, messages):
        self.cid = cid
        self.messages = messages  # the user turns, fixed by the seed
        self.history = SYSTEM
        self.turn = 0
        self.replicas = []  # where each turn went

    def next_prompt(self):
        return self.history + f"Seeker: {self.messages[self.turn]}\nTeacher:"


def make_messages(rng, turns):
    out = []
    for _ in range(turns):
        q = rng.choice(QUESTIONS)
        out.append(q.format(*(rng.choice(WORDS) for _ in range(q.count("{}")))))
    return out


def plan_workload(args, probe):
    """Seeded conversations whose final history fits max_model_len (turns dropped otherwise),
    and the working set in blocks: every conversation's final history."""
    rng = random.Random(args.seed)
    max_len = json.loads(probe.get("/v1/models"))["data"][0]["max_model_len"]
    conversations, working_blocks, block = [], 0, 16
    for cid in range(args.conversations):
        messages = make_messages(rng, args.turns)
        while messages:
            # Answers are estimated at max_tokens words of one token each, plus a newline.
            text = SYSTEM + "".join(f"Seeker: {m}\nTeacher:" + " and" * args.max_tokens + "\n"
                                    for m in messages)
            estimate = len(render(probe, text))
            if estimate + 8 <= max_len:
                break
            messages.pop()
        if not messages:
            sys.exit(f"--max-tokens {args.max_tokens}: not one turn fits max_model_len {max_len}")
        conversations.append(messages)
        working_blocks += math.ceil(estimate / block)
    return conversations, working_blocks, max_len


def percentile(values, q):
    if not values:
        return float("nan")
    s = sorted(values)
    k = (len(s) - 1) * q
    lo, hi = math.floor(k), math.ceil(k)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)


class Router:
    """The three policies; `choose` returns (replica index, route seconds, predicted hits)."""

    def __init__(self, policy, replicas, index, args):
        self.policy = policy
        self.replicas = replicas
        self.index = index
        self.args = args
        self.inflight = [0] * len(replicas)
        self.lock = threading.Lock()
        self.rr = 0
        self.tokenizer_rr = 0
        self.oracle_memo = [{} for _ in replicas]  # engine key -> request key, per replica

    def choose(self, prompt):
        start = time.monotonic()
        with self.lock:
            if self.policy == "round-robin":
                r = self.rr % len(self.replicas)
                self.rr += 1
                self.inflight[r] += 1
                return r, time.monotonic() - start, None
            t = self.tokenizer_rr % len(self.replicas)
            self.tokenizer_rr += 1
        ids = render(self.replicas[t], prompt)
        keys = self.index.hasher.prompt_keys(ids)
        if self.policy == "kv-events":
            hits = [self.index.lookup_keys(f"r{i}", keys) for i in range(len(self.replicas))]
        else:  # oracle
            hits = []
            for i, replica in enumerate(self.replicas):
                dump = json.loads(replica.get("/debug/kv_cache_blocks"))
                held, _ = request_keys_from_dump(dump, self.index.hasher,
                                                 memo=self.oracle_memo[i])
                hits.append(longest_prefix(keys, set(held.values())))
        with self.lock:
            total = max(1, len(keys))
            best = None
            for i, h in enumerate(hits):
                load = 1 - self.inflight[i] / max(1, self.args.concurrency)
                score = self.args.prefix_weight * h / total + self.args.load_weight * load
                rank = (score, -self.inflight[i], -i)
                if best is None or rank > best[0]:
                    best = (rank, i)
            r = best[1]
            self.inflight[r] += 1
        return r, time.monotonic() - start, hits[r]

    def done(self, r):
        with self.lock:
            self.inflight[r] -= 1


def stream_completion(replica, prompt, max_tokens, timeout=120):
    """(ttft seconds, text, completion tokens, cached prompt tokens) of a streamed greedy
    completion."""
    body = {"prompt": prompt, "max_tokens": max_tokens, "temperature": 0, "ignore_eos": True,
            "stream": True,
            # A chunk per token, even one whose text is held back or empty (a dummy model's
            # byte tokenizer prints nothing for most ids): the first one times TTFT.
            "stream_options": {"include_usage": True, "continuous_usage_stats": True}}
    conn = http.client.HTTPConnection("127.0.0.1", replica.http_port, timeout=timeout)
    try:
        start = time.monotonic()
        conn.request("POST", "/v1/completions", body=json.dumps(body),
                     headers={"Content-Type": "application/json"})
        r = conn.getresponse()
        if r.status != 200:
            data = r.read()
            if r.status == 400 and b"prompt_too_long" in data:
                raise PromptTooLong(data[:200])
            raise RuntimeError(f"completion: {r.status} {data[:300]!r}")
        ttft, text, usage = None, [], {}
        for raw in r:
            if not raw.startswith(b"data: "):
                continue
            data = raw[6:].strip()
            if data == b"[DONE]":
                break
            event = json.loads(data)
            if event.get("error"):
                raise RuntimeError(f"stream error: {event['error']}")
            produced = (event.get("usage") or {}).get("completion_tokens", 0)
            for choice in event.get("choices", []):
                if ttft is None and (choice.get("text") or produced >= 1):
                    ttft = time.monotonic() - start
                if choice.get("text"):
                    text.append(choice["text"])
            if event.get("usage") and not event.get("choices"):
                usage = event["usage"]
        cached = (usage.get("prompt_tokens_details") or {}).get("cached_tokens", 0)
        return ttft, "".join(text), usage.get("completion_tokens", 0), cached, \
            usage.get("prompt_tokens", 0)
    finally:
        conn.close()


def run_policy(policy, args, plan, pool_bytes):
    messages, _, max_len = plan
    replicas = start_replicas(args, pool_bytes, args.replicas)
    index = KvEventIndex(model_name="")
    sub = KvEventSubscriber(index, sync_interval=1.0)
    try:
        for i, r in enumerate(replicas):
            sub.add_pod(f"r{i}", f"tcp://127.0.0.1:{r.pub_port}",
                        f"tcp://127.0.0.1:{r.replay_port}")
        sub.start()
        time.sleep(0.5)
        for i in range(len(replicas)):
            sub.sync(f"r{i}")
        router = Router(policy, replicas, index, args)
        conversations = [Conversation(i, m) for i, m in enumerate(messages)]
        ready = list(conversations)
        random.Random(args.seed + 1).shuffle(ready)
        lock = threading.Condition()
        pending = [sum(len(c.messages) for c in conversations)]
        records, errors, truncated = [], [], [0]
        deadline = time.monotonic() + args.time_limit

        def worker():
            while True:
                with lock:
                    while not ready and pending[0] > 0 and not errors:
                        lock.wait(timeout=1)
                        if time.monotonic() > deadline:
                            return
                    if pending[0] <= 0 or errors or time.monotonic() > deadline:
                        return
                    conv = ready.pop(0)
                prompt = conv.next_prompt()
                try:
                    r, route_s, predicted = router.choose(prompt)
                    try:
                        ttft, text, out_tokens, cached, prompt_tokens = stream_completion(
                            replicas[r], prompt, args.max_tokens)
                    finally:
                        router.done(r)
                except PromptTooLong:
                    # The answers ran longer than planned: the conversation ends here.
                    with lock:
                        truncated[0] += 1
                        pending[0] -= len(conv.messages) - conv.turn
                        lock.notify_all()
                    continue
                except Exception as e:  # noqa: BLE001
                    with lock:
                        errors.append(repr(e))
                        lock.notify_all()
                    return
                records.append({"conversation": conv.cid, "turn": conv.turn, "replica": r,
                                "ttft_s": ttft, "route_s": route_s, "output_tokens": out_tokens,
                                "prompt_tokens": prompt_tokens, "cached_tokens": cached,
                                "predicted_hit_blocks": predicted})
                conv.history = prompt + text + "\n"
                conv.replicas.append(r)
                conv.turn += 1
                with lock:
                    pending[0] -= 1
                    if conv.turn < len(conv.messages):
                        ready.append(conv)
                    lock.notify_all()

        start = time.monotonic()
        threads = [threading.Thread(target=worker) for _ in range(args.concurrency)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wall = time.monotonic() - start
        if errors:
            sys.exit(f"{policy}: {errors[0]}")
        if pending[0] > 0:
            sys.exit(f"{policy}: {pending[0]} turns left at the --time-limit of {args.time_limit} s")
        hit = sum(r.metric("pagoda_prefix_cache_hit_tokens_total") for r in replicas)
        queried = sum(r.metric("pagoda_prefix_cache_queried_tokens_total") for r in replicas)
        evictions = sum(r.metric("pagoda_kv_cache_evictions_total") for r in replicas)
        ttfts = [x["ttft_s"] for x in records if x["ttft_s"] is not None]
        result = {
            "policy": policy, "requests": len(records), "wall_s": wall,
            "hit_tokens": hit, "queried_tokens": queried,
            "hit_rate": hit / queried if queried else 0.0,
            "ttft_p50_ms": percentile(ttfts, 0.5) * 1000,
            "ttft_p99_ms": percentile(ttfts, 0.99) * 1000,
            "ttft_mean_ms": statistics.mean(ttfts) * 1000 if ttfts else float("nan"),
            "route_mean_ms": statistics.mean(x["route_s"] for x in records) * 1000,
            "output_tokens": sum(x["output_tokens"] for x in records),
            "prefill_tokens_per_request": statistics.mean(
                x["prompt_tokens"] - x["cached_tokens"] for x in records),
            "output_tok_s": sum(x["output_tokens"] for x in records) / wall,
            "evictions": evictions,
            "conversations_cut_short": truncated[0],
            "requests_per_replica": [sum(1 for x in records if x["replica"] == i)
                                     for i in range(len(replicas))],
            "sticky_turns": sum(1 for c in conversations for a, b in
                                zip(c.replicas, c.replicas[1:]) if a == b),
            "records": records,
        }
        if policy == "kv-events":
            result["index_equal_to_engines"] = check_index(index, sub, replicas)
            result["index_stats"] = index.stats()
        return result
    finally:
        sub.stop()
        for r in replicas:
            r.__exit__(None, None, None)


def check_index(index, sub, replicas):
    """At quiescence: is the event-built index equal to every replica's dump?"""
    equal = []
    for i, r in enumerate(replicas):
        deadline = time.monotonic() + 10
        ok = False
        while time.monotonic() < deadline:
            sub.sync(f"r{i}")
            dump = json.loads(r.get("/debug/kv_cache_blocks"))
            if dump["num_requests"]:
                time.sleep(0.1)
                continue
            keys, _ = request_keys_from_dump(dump, index.hasher, index.known_request_key(f"r{i}"))
            ok = (index.engine_keys(f"r{i}") == set(keys)
                  and index.engine_to_request(f"r{i}") == keys)
            if ok:
                break
            time.sleep(0.2)
        equal.append(ok)
    return equal


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--pagodad", default="build/server/pagodad")
    p.add_argument("--model", default="", help='"" for the built-in model (pagoda-kjv)')
    p.add_argument("--replicas", type=int, default=4)
    p.add_argument("--conversations", type=int, default=64)
    p.add_argument("--turns", type=int, default=4)
    p.add_argument("--max-tokens", type=int, default=14, help="tokens per answer")
    p.add_argument("--concurrency", type=int, default=8, help="conversations in flight")
    p.add_argument("--pool-blocks", type=int, default=0,
                   help="KV blocks per replica; 0: working set / replicas")
    p.add_argument("--pool-factor", type=float, default=1.0,
                   help="times the default pool size (working set / replicas)")
    p.add_argument("--threads", type=int, default=1, help="pagodad --threads per replica")
    p.add_argument("--policies", default="round-robin,kv-events,oracle")
    p.add_argument("--prefix-weight", type=float, default=2.0)
    p.add_argument("--load-weight", type=float, default=1.0)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--time-limit", type=float, default=180, help="seconds per policy at most")
    p.add_argument("--json", help="write the results (and every request) here")
    args = p.parse_args()
    policies = args.policies.split(",")
    for policy in policies:
        if policy not in ("round-robin", "kv-events", "oracle"):
            sys.exit(f"unknown policy {policy}")

    # A probe replica: the tokenizer (to plan the workload) and the KV bytes per token.
    probe = start_replicas(args, 64 << 20, 1)[0]
    try:
        plan = plan_workload(args, probe)
        _, bytes_per_token = probe.log_figures()
    finally:
        probe.__exit__(None, None, None)
    messages, working_blocks, max_len = plan
    pool_blocks = args.pool_blocks or max(
        math.ceil(args.pool_factor * working_blocks / args.replicas), 2 * math.ceil(max_len / 16))
    pool_bytes = pool_blocks * 16 * bytes_per_token
    turns = sum(len(m) for m in messages)
    print(f"workload: {len(messages)} conversations, {turns} turns, working set {working_blocks} "
          f"blocks; {args.replicas} replicas x {pool_blocks} blocks "
          f"({pool_blocks * args.replicas / working_blocks:.2f}x the working set); "
          f"concurrency {args.concurrency}; seed {args.seed}", flush=True)

    results = []
    for policy in policies:
        result = run_policy(policy, args, plan, pool_bytes)
        results.append(result)
        extra = ""
        if "index_equal_to_engines" in result:
            extra = f", index equal to engines: {result['index_equal_to_engines']}"
        print(f"  {policy}: {result['requests']} requests in {result['wall_s']:.1f} s, "
              f"per replica {result['requests_per_replica']}, sticky turns "
              f"{result['sticky_turns']}, conversations cut short (prompt too long) "
              f"{result['conversations_cut_short']}{extra}", flush=True)

    print()
    print("| policy | requests | prefix hit rate | prefill tok/req | TTFT p50 ms | TTFT p99 ms "
          "| output tok/s | route ms (mean) | evictions |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in results:
        print(f"| {r['policy']} | {r['requests']} | {r['hit_rate']:.3f} "
              f"| {r['prefill_tokens_per_request']:.1f} | {r['ttft_p50_ms']:.1f} "
              f"| {r['ttft_p99_ms']:.1f} | {r['output_tok_s']:.1f} | {r['route_mean_ms']:.1f} "
              f"| {int(r['evictions'])} |")
    by = {r["policy"]: r for r in results}
    ratios = {}
    if "kv-events" in by and "oracle" in by and by["oracle"]["hit_rate"]:
        ratios["kv_events_over_oracle_hit_rate"] = by["kv-events"]["hit_rate"] / by["oracle"]["hit_rate"]
    if "kv-events" in by and "round-robin" in by and by["kv-events"]["ttft_p50_ms"]:
        ratios["round_robin_over_kv_events_ttft_p50"] = (by["round-robin"]["ttft_p50_ms"]
                                                         / by["kv-events"]["ttft_p50_ms"])
    if ratios:
        print()
        for name, value in ratios.items():
            print(f"- {name.replace('_', ' ')}: {value:.3f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"args": vars(args), "working_set_blocks": working_blocks,
                       "pool_blocks": pool_blocks, "results": results, "ratios": ratios}, f,
                      indent=1)


if __name__ == "__main__":
    main()
