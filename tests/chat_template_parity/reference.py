#!/usr/bin/python3
"""Reference renderer for the chat-template parity test.

Renders chat templates the way Hugging Face `transformers` does in
`PreTrainedTokenizerBase.apply_chat_template` (which compiles the template with
`transformers.utils.chat_template_utils`), using the system's Jinja2. It is an
independent re-statement of that documented behaviour, not a copy:

  * an ImmutableSandboxedEnvironment with trim_blocks and lstrip_blocks, the
    loopcontrols extension (break/continue) and a `{% generation %}` block tag
    that renders its body unchanged;
  * a `tojson` filter that is json.dumps with ensure_ascii=False (no HTML
    escaping), taking indent, separators, sort_keys and ensure_ascii keywords;
  * `raise_exception(message)` and `strftime_now(format)` globals; the clock is
    frozen at --now so that both engines see the same time;
  * render variables: messages, tools, documents, add_generation_prompt, the
    tokenizer's special tokens, then the case's chat_template_kwargs;
  * continue_final_message: the output is cut right after the final message's
    text.

Usage:
  reference.py --config CONFIG --cases CASES.jsonl [--now 2026-01-02T03:04:05Z]
               [--specials '{"bos_token": "<s>", "eos_token": "</s>"}']

CONFIG is a tokenizer_config.json, a directory holding one (and optionally a
chat_template.jinja, which then wins), or a raw template file ending in
`.jinja` (its special tokens then come from --specials).

Writes one JSON line per case, in input order:
  {"id": ..., "ok": true, "text": ...}  or  {"id": ..., "ok": false, "error": ...}
A raise_exception() error is its message alone (and the line also carries
"raised": true); any other error is "<ExceptionClassName>: <message>".
Exits 77 when jinja2 cannot be imported.
"""

import argparse
import datetime
import json
import os
import sys

try:
    import jinja2
    import jinja2.ext
    import jinja2.nodes
    import jinja2.sandbox
except ImportError as exc:  # pragma: no cover - depends on the machine
    sys.stderr.write(f"reference.py: cannot import jinja2 ({exc}); "
                     "install Debian's python3-jinja2. Skipping.\n")
    sys.exit(77)

# The special-token attributes of a Hugging Face tokenizer, in the order the
# tokenizer lists them. additional_special_tokens is a list of strings.
SPECIAL_TOKEN_KEYS = ("bos_token", "eos_token", "unk_token", "sep_token",
                      "pad_token", "cls_token", "mask_token")
DEFAULT_SPECIALS = {"bos_token": "<s>", "eos_token": "</s>"}
DEFAULT_NOW = "2026-01-02T03:04:05Z"


class RaisedByTemplate(jinja2.exceptions.TemplateError):
    """What raise_exception() throws: a TemplateError carrying the template's text."""


class GenerationBlock(jinja2.ext.Extension):
    """`{% generation %}...{% endgeneration %}`: renders its body as it is.

    transformers uses the tag to find the assistant's tokens; for the rendered
    text it changes nothing. Like any call block, its body runs in a scope of
    its own, so a `{% set %}` inside it does not leak out.
    """

    tags = {"generation"}

    def parse(self, parser):
        lineno = next(parser.stream).lineno
        body = parser.parse_statements(("name:endgeneration",), drop_needle=True)
        call = self.call_method("_render_body")
        return jinja2.nodes.CallBlock(call, [], [], body).set_lineno(lineno)

    def _render_body(self, caller):
        return caller()


def tojson(value, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
    return json.dumps(value, ensure_ascii=ensure_ascii, indent=indent,
                      separators=separators, sort_keys=sort_keys)


def raise_exception(message):
    raise RaisedByTemplate(message)


def parse_now(text):
    """An ISO-8601 instant, as a naive datetime in UTC.

    transformers calls datetime.now() (naive, local time); the frozen clock is
    naive too, so %Z and %z expand to empty strings as they would there.
    """
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    moment = datetime.datetime.fromisoformat(text)
    if moment.tzinfo is not None:
        moment = moment.astimezone(datetime.timezone.utc).replace(tzinfo=None)
    return moment


def make_environment(now):
    env = jinja2.sandbox.ImmutableSandboxedEnvironment(
        trim_blocks=True,
        lstrip_blocks=True,
        extensions=[GenerationBlock, jinja2.ext.loopcontrols],
    )
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = lambda fmt: now.strftime(fmt)
    return env


def token_text(token):
    """A special token as tokenizer_config.json stores it: a string or an AddedToken dict."""
    if isinstance(token, dict):
        return token.get("content")
    return token


def specials_from_config(config):
    """The tokenizer's special_tokens_map: the set special tokens, as strings.

    Like transformers, a token that is null, missing or empty is left out, and
    so is an empty additional_special_tokens list.
    """
    specials = {}
    for key in SPECIAL_TOKEN_KEYS:
        text = token_text(config.get(key))
        if text:
            specials[key] = str(text)
    extra = config.get("additional_special_tokens")
    if extra:
        specials["additional_special_tokens"] = [str(token_text(t)) for t in extra]
    return specials


def read_text(path):
    with open(path, encoding="utf-8") as f:
        return f.read()


def load_config(config_path, specials_json):
    """Returns (templates, specials). templates is a str or a {name: source} dict."""
    if os.path.isfile(config_path) and config_path.endswith(".jinja"):
        specials = DEFAULT_SPECIALS if specials_json is None else json.loads(specials_json)
        return read_text(config_path), dict(specials)

    if os.path.isdir(config_path):
        config_file = os.path.join(config_path, "tokenizer_config.json")
        jinja_file = os.path.join(config_path, "chat_template.jinja")
    else:
        config_file = config_path
        jinja_file = None
    config = {}
    if os.path.isfile(config_file):
        with open(config_file, encoding="utf-8") as f:
            config = json.load(f)
    elif jinja_file is None or not os.path.isfile(jinja_file):
        raise FileNotFoundError(f"no tokenizer_config.json at {config_path}")

    specials = specials_from_config(config)
    if jinja_file is not None and os.path.isfile(jinja_file):
        return read_text(jinja_file), specials
    templates = config.get("chat_template")
    if isinstance(templates, list):
        templates = {entry["name"]: entry["template"] for entry in templates}
    return templates, specials


class Renderer:
    def __init__(self, templates, specials, now):
        self.templates = templates
        self.specials = specials
        self.env = make_environment(now)
        self.compiled = {}

    def template_for(self, tools):
        if isinstance(self.templates, str):
            name, source = "", self.templates
        elif isinstance(self.templates, dict):
            # transformers picks "tool_use" whenever tools were passed (even an
            # empty list) and the tokenizer has one, else "default".
            if tools is not None and "tool_use" in self.templates:
                name = "tool_use"
            elif "default" in self.templates:
                name = "default"
            else:
                raise ValueError("this tokenizer has several chat templates and none is "
                                 "named 'default'")
            source = self.templates[name]
        else:
            raise ValueError("the tokenizer has no chat template")
        if name not in self.compiled:
            self.compiled[name] = self.env.from_string(source)
        return self.compiled[name]

    def render(self, case):
        messages = case["messages"]
        tools = case.get("tools")
        documents = case.get("documents")
        add_generation_prompt = case.get("add_generation_prompt", False)
        continue_final_message = case.get("continue_final_message", False)
        kwargs = dict(self.specials)
        kwargs.update(case.get("chat_template_kwargs") or {})

        if continue_final_message and add_generation_prompt:
            raise ValueError("continue_final_message and add_generation_prompt are not "
                             "compatible")

        template = self.template_for(tools)
        rendered = template.render(messages=messages, tools=tools, documents=documents,
                                   add_generation_prompt=add_generation_prompt, **kwargs)
        if continue_final_message:
            rendered = cut_after_final_message(rendered, messages)
        return rendered


def cut_after_final_message(rendered, messages):
    final = messages[-1]["content"]
    if isinstance(final, (list, tuple)):
        for block in reversed(final):
            if "text" in block:
                final = block["text"]
                break
        else:
            raise ValueError("continue_final_message is set but the final message has no "
                             "text to continue")
    if final.strip() not in rendered:
        raise ValueError("continue_final_message is set but the final message does not "
                         "appear in the rendered chat")
    loc = rendered.rindex(final.strip())
    if rendered[loc:loc + len(final.lstrip())] == final:
        # The message's trailing whitespace survived the template: keep it.
        return rendered[:loc + len(final.lstrip())]
    return rendered[:loc + len(final.strip())]


def describe_error(exc):
    if isinstance(exc, RaisedByTemplate):
        return exc.message if exc.message is not None else str(exc)
    return f"{type(exc).__name__}: {exc}"


def read_cases(path):
    """JSON lines split on b"\\n" only (a raw U+2028 inside a string is not a line end)."""
    with open(path, "rb") as f:
        data = f.read()
    cases = []
    for raw in data.split(b"\n"):
        line = raw.decode("utf-8").strip(" \t\r")
        if line:
            cases.append(json.loads(line))
    return cases


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True)
    parser.add_argument("--cases", required=True)
    parser.add_argument("--now", default=DEFAULT_NOW)
    parser.add_argument("--specials", default=None,
                        help="JSON object of special tokens, for a raw .jinja config")
    args = parser.parse_args()

    now = parse_now(args.now)
    cases = read_cases(args.cases)
    setup_error = None
    renderer = None
    try:
        templates, specials = load_config(args.config, args.specials)
        renderer = Renderer(templates, specials, now)
    except (OSError, ValueError) as exc:
        setup_error = exc

    out = sys.stdout.buffer
    for index, case in enumerate(cases):
        case_id = case.get("id", str(index)) if isinstance(case, dict) else str(index)
        try:
            if setup_error is not None:
                raise setup_error
            result = {"id": case_id, "ok": True, "text": renderer.render(case)}
        except Exception as exc:  # every failure is a result, as the C++ tool reports it
            result = {"id": case_id, "ok": False, "error": describe_error(exc)}
            if isinstance(exc, RaisedByTemplate):
                # Not part of the tool's contract: tells parity_test.py that the message is
                # the template's own text, which both engines must then agree on.
                result["raised"] = True
        line = json.dumps(result, ensure_ascii=False)
        try:
            encoded = line.encode("utf-8")
        except UnicodeEncodeError:  # a lone surrogate from a \ud800-style escape
            encoded = json.dumps(result).encode("ascii")
        out.write(encoded + b"\n")
    out.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
