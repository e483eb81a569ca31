#!/usr/bin/python3
"""pagoda-cli against the real pagodad: generate (streamed and not, greedy text equal both ways;
--print-token-ids),
tokenize/detokenize round trip, model-info, server-info, and a clear error for a bad request.

Usage: pagoda_cli_test.py PAGODAD   (pagoda-cli must sit beside it)
"""

import sys

from pagoda_daemon import Daemon


def fail(message):
    print("FAIL:", message)
    sys.exit(1)


def main():
    with Daemon(sys.argv[1], "--model", "dummy:tiny", "--threads", "1") as d:
        info = d.cli_run("model-info")
        if info.returncode != 0 or "dummy:tiny" not in info.stdout:
            fail(f"model-info: {info.returncode} {info.stdout} {info.stderr}")
        print(info.stdout)

        streamed = d.cli_run("generate", "Once upon a time", "--max-tokens", "12",
                             "--temperature", "0", "--ignore-eos")
        unary = d.cli_run("generate", "Once upon a time", "--max-tokens", "12",
                          "--temperature", "0", "--ignore-eos", "--no-stream")
        for name, run in (("streamed", streamed), ("unary", unary)):
            if run.returncode != 0:
                fail(f"generate ({name}) exited {run.returncode}: {run.stderr}")
        if streamed.stdout != unary.stdout:
            fail(f"greedy text differs: streamed {streamed.stdout!r}, unary {unary.stdout!r}")
        if "12" not in streamed.stderr:
            fail(f"the summary does not report 12 tokens: {streamed.stderr!r}")

        # --print-token-ids: the same 12 greedy ids streamed and not, and their text is the
        # text printed above.
        id_runs = [d.cli_run("generate", "Once upon a time", "--max-tokens", "12",
                             "--temperature", "0", "--ignore-eos", "--print-token-ids", *extra)
                   for extra in ([], ["--no-stream"])]
        for run in id_runs:
            if run.returncode != 0:
                fail(f"generate --print-token-ids exited {run.returncode}: {run.stderr}")
        out_ids = id_runs[0].stdout.split()
        if len(out_ids) != 12 or not all(t.isdigit() for t in out_ids):
            fail(f"--print-token-ids printed {id_runs[0].stdout!r}, not 12 ids")
        if id_runs[1].stdout.split() != out_ids:
            fail(f"token ids differ: streamed {out_ids}, unary {id_runs[1].stdout!r}")
        spelled = d.cli_run("detokenize", *out_ids)
        if spelled.returncode != 0 or spelled.stdout.rstrip("\n") != unary.stdout.rstrip("\n"):
            fail(f"detokenize(ids) = {spelled.stdout!r}, generate printed {unary.stdout!r}")

        ids = d.cli_run("tokenize", "Hello, world")
        if ids.returncode != 0:
            fail(f"tokenize: {ids.stderr}")
        numbers = [t for t in ids.stdout.replace(",", " ").split() if t.isdigit()]
        if not numbers:
            fail(f"tokenize printed no ids: {ids.stdout!r}")
        text = d.cli_run("detokenize", *numbers)
        if text.returncode != 0 or "Hello, world" not in text.stdout:
            fail(f"detokenize({numbers}) = {text.stdout!r} {text.stderr!r}")

        server = d.cli_run("server-info")
        if server.returncode != 0 or "max_num_waiting_requests: 1024" not in server.stdout:
            fail(f"server-info: {server.stdout!r} {server.stderr!r}")

        bad = d.cli_run("generate", "x", "--top-p", "0")
        if bad.returncode == 0 or "top_p" not in bad.stderr:
            fail(f"a bad top_p was not refused by name: {bad.returncode} {bad.stderr!r}")
    if d.exit_code != 0:
        fail(f"pagodad exited {d.exit_code} on SIGTERM")
    print("PASS")


if __name__ == "__main__":
    main()
