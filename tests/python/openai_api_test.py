#!/usr/bin/python3
"""The OpenAI HTTP API of the real pagodad, from a plain Python SSE client (standard library):
/v1/models, a whole and a streamed /v1/completions whose greedy texts are equal and equal to the
gRPC path's (pagoda-cli), include_usage, an error body, and a streaming client that leaves
mid-stream: its request is aborted at once and its KV blocks go back (seen in /metrics).
Chat, on a daemon given a ChatML-like --chat-template: /v1/chat/completions/render's prompt and
token ids (equal to /tokenize's with the same messages and to /v1/completions/render's of that
prompt without special tokens), a whole and a streamed greedy chat completion whose texts are equal
and equal to /v1/completions' on the rendered prompt, the stream's role/finish/usage chunks, and its
400s (an image part, raise_exception); on a daemon without one, chat answers 400 (no template)
unless the request brings its own chat_template.

Usage: openai_api_test.py PAGODAD   (pagoda-cli must sit beside it)
"""

import http.client
import json
import socket
import sys
import time
import urllib.request

from pagoda_daemon import Daemon

PROMPT = "Once upon a time"
MODEL = "dummy:tiny"  # its byte tokenizer gives text for every token
SLOW_MODEL = "dummy:llama-110m"  # about 9 ms a token: slow enough to leave mid-stream
SLOW_NAME = "slow-model"  # its --served-model-name: the name clients and metric labels use
# ChatML-like; given to pagodad as the template itself (not a file).
CHAT_TEMPLATE = ("{% for message in messages %}"
                 "<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
                 "{% endfor %}"
                 "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
# The user's content as text parts, which the server joins with "\n".
MESSAGES = [{"role": "system", "content": "You tell stories."},
            {"role": "user", "content": [{"type": "text", "text": "Once upon"},
                                         {"type": "text", "text": "a time"}]}]
RENDERED = ("<|im_start|>system\nYou tell stories.<|im_end|>\n"
            "<|im_start|>user\nOnce upon\na time<|im_end|>\n<|im_start|>assistant\n")


def fail(message):
    print("FAIL:", message)
    sys.exit(1)


def post(port, path, body, timeout=60):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    conn.request("POST", path, body=json.dumps(body), headers={"Content-Type": "application/json"})
    return conn, conn.getresponse()


def sse_events(response):
    """The JSON events of a server-sent-event stream up to [DONE] (which must come)."""
    events = []
    for raw in response:
        line = raw.decode().strip()
        if not line.startswith("data: "):
            continue
        data = line[len("data: "):]
        if data == "[DONE]":
            return events
        events.append(json.loads(data))
    fail(f"the stream ended without [DONE] after {len(events)} events")


def metrics(port, *series):
    """The values of `series` (-1.0 for one not on the page), from one scrape of /metrics."""
    page = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    values = {}
    for line in page.splitlines():
        for name in series:
            if name not in values and line.startswith(name):
                values[name] = float(line.rsplit(" ", 1)[1])
    return tuple(values.get(name, -1.0) for name in series)


def metric(port, series):
    return metrics(port, series)[0]


def check_completions(d):
    body = {"prompt": PROMPT, "max_tokens": 12, "temperature": 0, "ignore_eos": True}
    _, whole = post(d.http_port, "/v1/completions", body)
    if whole.status != 200:
        fail(f"whole completion: {whole.status} {whole.read()}")
    whole_json = json.loads(whole.read())
    text = whole_json["choices"][0]["text"]
    if whole_json["usage"]["completion_tokens"] != 12:
        fail(f"usage: {whole_json['usage']}")

    _, streamed = post(d.http_port, "/v1/completions",
                       dict(body, stream=True, stream_options={"include_usage": True}))
    if streamed.getheader("Content-Type") != "text/event-stream":
        fail(f"stream content type {streamed.getheader('Content-Type')}")
    events = sse_events(streamed)
    streamed_text = "".join(e["choices"][0]["text"] for e in events if e["choices"])
    if streamed_text != text:
        fail(f"greedy text differs: whole {text!r}, streamed {streamed_text!r}")
    if events[-1]["choices"] or events[-1]["usage"]["completion_tokens"] != 12:
        fail(f"the last event is not the usage: {events[-1]}")
    if events[-2]["choices"][0]["finish_reason"] != "length":
        fail(f"no finish_reason before the usage: {events[-2]}")

    grpc = d.cli_run("generate", PROMPT, "--max-tokens", "12", "--temperature", "0",
                     "--ignore-eos", "--no-stream")
    if grpc.returncode != 0 or grpc.stdout.rstrip("\n") != text:
        fail(f"gRPC's greedy text {grpc.stdout!r} differs from HTTP's {text!r}")
    print(f"OK: greedy text equal over HTTP (whole, streamed) and gRPC: {text!r}")


def check_error(d):
    _, response = post(d.http_port, "/v1/completions", {"prompt": PROMPT, "top_p": 7})
    error = json.loads(response.read())["error"]
    if response.status != 400 or error["param"] != "top_p" or error["type"] != "invalid_request_error":
        fail(f"bad top_p: {response.status} {error}")
    print(f"OK: 400 {error['message']!r}")


def post_json(port, path, body, status=200):
    """POSTs `body`; fails unless the answer has `status`; returns its JSON."""
    _, response = post(port, path, body)
    data = response.read()
    if response.status != status:
        fail(f"{path} {json.dumps(body)}: {response.status} (wanted {status}) {data!r}")
    return json.loads(data)


def check_n_choices(d):
    """n=4 sampled choices of one prompt: four different texts, the prompt counted once in usage,
    and its blocks shared through the prefix cache (the hit counter grows)."""
    hits = metric(d.http_port, "pagoda_prefix_cache_hit_tokens_total")
    prompt = "Once upon a time, in a land far away, there lived a king who had three daughters"
    body = {"prompt": prompt, "n": 4, "seed": 11, "temperature": 1.0, "max_tokens": 12,
            "ignore_eos": True}
    answer = post_json(d.http_port, "/v1/completions", body)
    texts = [c["text"] for c in answer["choices"]]
    if [c["index"] for c in answer["choices"]] != [0, 1, 2, 3] or len(set(texts)) < 2:
        fail(f"n=4 with a seed should give 4 choices that differ: {texts}")
    single = post_json(d.http_port, "/tokenize", {"prompt": prompt})["count"]
    if answer["usage"]["prompt_tokens"] != single or answer["usage"]["completion_tokens"] != 48:
        fail(f"n=4 usage counts the prompt once ({single} tokens): {answer['usage']}")
    if metric(d.http_port, "pagoda_prefix_cache_hit_tokens_total") <= hits:
        fail("the n copies of one prompt did not share its blocks through the prefix cache")
    if post_json(d.http_port, "/v1/completions", body)["choices"][2]["text"] != texts[2]:
        fail("the same seed should give the same choices")


def check_chat(d):
    render = post_json(d.http_port, "/v1/chat/completions/render", {"messages": MESSAGES})
    ids = render["token_ids"]
    if render["prompt"] != RENDERED or not ids:
        fail(f"chat render: {render}")
    tokenized = post_json(d.http_port, "/tokenize", {"messages": MESSAGES})
    if tokenized["tokens"] != ids or tokenized["count"] != len(ids):
        fail(f"/tokenize with messages {tokenized} differs from the render's {ids}")
    completion_render = post_json(d.http_port, "/v1/completions/render",
                                  {"prompt": RENDERED, "add_special_tokens": False})
    if completion_render != [{"token_ids": ids}]:
        fail(f"/v1/completions/render of the chat prompt {completion_render} != {ids}")

    body = {"messages": MESSAGES, "max_completion_tokens": 12, "temperature": 0, "ignore_eos": True}
    whole = post_json(d.http_port, "/v1/chat/completions", body)
    choice = whole["choices"][0]
    text = choice["message"]["content"]
    if (whole["object"] != "chat.completion" or len(whole["choices"]) != 1
            or choice["message"]["role"] != "assistant" or choice["message"]["tool_calls"] != []
            or choice["finish_reason"] != "length" or not text):
        fail(f"whole chat completion: {whole}")
    if whole["usage"]["prompt_tokens"] != len(ids) or whole["usage"]["completion_tokens"] != 12:
        fail(f"chat usage {whole['usage']}, rendered prompt {len(ids)} tokens")

    _, streamed = post(d.http_port, "/v1/chat/completions",
                       dict(body, stream=True, stream_options={"include_usage": True}))
    if streamed.status != 200 or streamed.getheader("Content-Type") != "text/event-stream":
        fail(f"chat stream: {streamed.status} {streamed.getheader('Content-Type')}")
    events = sse_events(streamed)
    if any(e["object"] != "chat.completion.chunk" or e["id"] != events[0]["id"] for e in events):
        fail(f"chat stream objects/ids: {events}")
    if events[0]["choices"][0]["delta"] != {"role": "assistant", "content": ""}:
        fail(f"the first chat chunk: {events[0]}")
    usage, finishing = events[-1], events[-2]
    if usage["choices"] or usage["usage"]["prompt_tokens"] != len(ids) \
            or usage["usage"]["completion_tokens"] != 12:
        fail(f"the last chat chunk is not the usage (prompt {len(ids)} tokens): {usage}")
    if finishing["choices"][0]["finish_reason"] != "length" or finishing["choices"][0]["delta"]:
        fail(f"the finishing chat chunk: {finishing}")
    streamed_text = "".join(e["choices"][0]["delta"].get("content", "")
                            for e in events if e["choices"])
    if streamed_text != text:
        fail(f"greedy chat text differs: whole {text!r}, streamed {streamed_text!r}")

    completion = post_json(d.http_port, "/v1/completions",
                           {"prompt": RENDERED, "add_special_tokens": False, "max_tokens": 12,
                            "temperature": 0, "ignore_eos": True})
    if completion["choices"][0]["text"] != text or completion["usage"]["prompt_tokens"] != len(ids):
        fail(f"/v1/completions on the rendered prompt {completion} differs from chat's {text!r}")
    print(f"OK: greedy chat text equal whole, streamed and as a completion of its render: {text!r}")

    image = [{"role": "user", "content": [{"type": "image_url",
                                           "image_url": {"url": "http://127.0.0.1/x.png"}}]}]
    error = post_json(d.http_port, "/v1/chat/completions", {"messages": image}, 400)["error"]
    if error["param"] != "messages[0].content[0].type" or error["type"] != "invalid_request_error":
        fail(f"image_url part: {error}")
    raised = post_json(d.http_port, "/v1/chat/completions",
                       {"messages": MESSAGES, "chat_template": "{{ raise_exception('no stories') }}"},
                       400)["error"]
    if "no stories" not in raised["message"]:
        fail(f"raise_exception: {raised}")
    print(f"OK: chat 400s {error['message']!r}, {raised['message']!r}")


def check_served_model_name(d):
    """--served-model-name is the name clients see and send; others are 404."""
    models = json.loads(urllib.request.urlopen(
        f"http://127.0.0.1:{d.http_port}/v1/models", timeout=10).read())
    if [m["id"] for m in models["data"]] != ["slow-model"]:
        fail(f"/v1/models with --served-model-name slow-model: {models}")
    body = {"model": "slow-model", "prompt": "ab", "max_tokens": 1}
    if post_json(d.http_port, "/v1/completions", body)["model"] != "slow-model":
        fail("a completion names the served model")
    post_json(d.http_port, "/v1/completions", dict(body, model=SLOW_MODEL), 404)


def check_chat_without_template(d):
    messages = [{"role": "user", "content": "Hi"}]
    for path in ("/v1/chat/completions", "/v1/chat/completions/render"):
        error = post_json(d.http_port, path, {"messages": messages}, 400)["error"]
        if "chat template" not in error["message"]:
            fail(f"{path} without a chat template: {error}")
    own = post_json(d.http_port, "/v1/chat/completions",
                    {"messages": messages, "chat_template": "{{ messages[0]['content'] }}!",
                     "max_completion_tokens": 2, "ignore_eos": True})
    rendered = post_json(d.http_port, "/tokenize", {"prompt": "Hi!", "add_special_tokens": False})
    if (own["usage"]["prompt_tokens"] != rendered["count"]
            or own["usage"]["completion_tokens"] != 2):
        fail(f"a request's own chat_template ('Hi!', {rendered['count']} tokens): {own}")
    print(f"OK: without a chat template: 400 {error['message']!r}; a request's own template works")


def check_client_leaving(d):
    running = f'pagoda_num_requests_running{{model_name="{SLOW_NAME}"}}'
    # About 8 s of decoding: it must still run when its client leaves, however loaded the machine.
    # An event per token (continuous usage): the dummy model's random weights pick tokens that
    # print nothing (special ones) for hundreds of steps, and a stream sends no event for those,
    # so without it the first event could be the last one, after all 900 tokens (the request then
    # ends "length", not aborted: a failure seen once in CI).
    request = json.dumps({"prompt": PROMPT, "max_tokens": 900, "ignore_eos": True, "stream": True,
                          "stream_options": {"continuous_usage_stats": True}})
    # The first event may wait for a busy machine (CI runs tests side by side): a bound, not a
    # timing assertion.
    sock = socket.create_connection(("127.0.0.1", d.http_port), timeout=60)
    sock.sendall((f"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: {len(request)}"
                  f"\r\n\r\n{request}").encode())
    received = b""
    while b"data: " not in received:
        chunk = sock.recv(65536)
        if not chunk:
            fail(f"the stream closed before its first event: {received!r}")
        received += chunk
    sock.close()
    left = time.time()
    # Done when the abort is counted, nothing runs and no KV block is held, in one scrape; a
    # failure shows how the request ended instead.
    ended = [f'pagoda_request_success_total{{model_name="{SLOW_NAME}",finished_reason="{reason}"}}'
             for reason in ("abort", "stop", "length")]
    used = f'pagoda_kv_cache_blocks{{model_name="{SLOW_NAME}",state="used"}}'
    while True:
        aborted, running_now, used_now, stopped, lengths = metrics(d.metrics_port, *ended[:1],
                                                                   running, used, *ended[1:])
        if (aborted, running_now, used_now) == (1, 0, 0):
            break
        if aborted > 1 or time.time() - left > 2:
            fail(f"2 s after its client left: aborted {aborted}, running {running_now}, used KV "
                 f"blocks {used_now}; ended 'stop' {stopped}, 'length' {lengths}")
        time.sleep(0.01)
    print(f"OK: a streaming client that left was aborted within {time.time() - left:.3f} s")


def main():
    with Daemon(sys.argv[1], "--model", MODEL, "--threads", "1", "--chat-template",
                CHAT_TEMPLATE) as d:
        models = json.loads(urllib.request.urlopen(
            f"http://127.0.0.1:{d.http_port}/v1/models", timeout=10).read())
        if models["data"][0]["id"] != MODEL:
            fail(f"/v1/models: {models}")
        check_completions(d)
        check_error(d)
        check_chat(d)
        check_n_choices(d)
    with Daemon(sys.argv[1], "--model", SLOW_MODEL, "--threads", "1",
                "--served-model-name", SLOW_NAME) as slow:
        check_client_leaving(slow)
        check_chat_without_template(slow)
        check_served_model_name(slow)
    for daemon in (d, slow):
        if daemon.exit_code != 0:
            fail(f"pagodad exited {daemon.exit_code}")
    print("PASS")


if __name__ == "__main__":
    main()
