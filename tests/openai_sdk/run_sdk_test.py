#!/usr/bin/python3
"""Starts pagodad (dummy:tiny, with a ChatML-like --chat-template file) and runs sdk_test.mjs,
the official openai npm SDK, against its HTTP API. Exits 77 (ctest: skipped) when node or the SDK
(install.sh) is missing.

Usage: run_sdk_test.py PAGODAD
"""

import os
import shutil
import subprocess
import sys
import tempfile

from pagoda_daemon import Daemon

HERE = os.path.dirname(os.path.abspath(__file__))
CHAT_TEMPLATE = """{% for message in messages %}<|im_start|>{{ message['role'] }}
{{ message['content'] }}<|im_end|>
{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant
{% endif %}"""


def main():
    if shutil.which("node") is None or not os.path.isdir(os.path.join(HERE, "node_modules", "openai")):
        print("SKIP: node or the openai SDK is missing (tests/openai_sdk/install.sh)")
        sys.exit(77)
    with tempfile.TemporaryDirectory(prefix="pagoda_sdk_") as tmp:
        template = os.path.join(tmp, "chat_template.jinja")
        with open(template, "w") as f:
            f.write(CHAT_TEMPLATE)
        with Daemon(sys.argv[1], "--model", "dummy:tiny", "--threads", "1",
                    "--chat-template", template) as d:
            run = subprocess.run(["node", os.path.join(HERE, "sdk_test.mjs"),
                                  f"http://127.0.0.1:{d.http_port}/v1", "dummy:tiny"],
                                 capture_output=True, text=True, timeout=120)
            print(run.stdout, run.stderr)
    sys.exit(run.returncode)


if __name__ == "__main__":
    main()
