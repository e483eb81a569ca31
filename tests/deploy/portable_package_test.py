#!/usr/bin/env python3
"""The portable package (scripts/package_pagodad.sh) runs with nothing from this machine but
glibc, libstdc++ and libgcc_s.

    portable_package_test.py --source-dir DIR --build-dir DIR

Packs BUILD_DIR's pagodad and pagoda-cli into a temporary directory, then:
  - ldd, with only the package's lib/ on LD_LIBRARY_PATH, resolves every library of the packed
    binaries and libraries inside the package, except the system ones (glibc, libstdc++,
    libgcc_s) and CUDA's (the driver, cuBLAS), and the package holds none of those;
  - the packed pagodad, started through bin/pagodad.sh in a clean environment (env -i) on
    127.0.0.1 with free ports, serves the packed built-in model with no --model given, maps only
    packed or system libraries, and a generate through bin/pagoda-cli.sh gets its tokens;
  - a --model=VALUE given to bin/pagodad.sh replaces the packed default;
  - the script refuses a build dir without the binaries, and an output directory it did not make.
Exit status: 0 passed, 1 failed, 77 skipped (no ldd, strip or objdump, or no /proc). Every wait is
bounded.
"""

import argparse
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile

from pagoda_daemon import Daemon

SKIP = 77
CLEAN_ENV = ["env", "-i", "PATH=/usr/bin:/bin"]
# What the package leaves to the machine it runs on (the script's exclusions), plus the vDSO.
SYSTEM_LIBRARY = re.compile(r"^(linux-vdso\.so|libc\.so|libm\.so|libpthread\.so|libdl\.so|"
                            r"librt\.so|ld-linux|libstdc\+\+\.so|libgcc_s\.so|libcuda\.so|"
                            r"libcublas)")
MAX_TOKENS = 8


def fail(message):
    print("FAIL:", message)
    sys.exit(1)


def package(script, build_dir, out_dir):
    return subprocess.run([script, build_dir, out_dir], capture_output=True, text=True,
                          timeout=120)


def check_refusals(script, build_dir, scratch):
    missing = package(script, os.path.join(scratch, "no-build"), os.path.join(scratch, "p1"))
    if missing.returncode == 0 or "missing" not in missing.stderr or \
            "build it first" not in missing.stderr:
        fail(f"a build dir without pagodad: exit {missing.returncode}, {missing.stderr!r}")
    foreign = os.path.join(scratch, "foreign")
    os.makedirs(foreign)
    keep = os.path.join(foreign, "keep.txt")
    open(keep, "w").close()
    refused = package(script, build_dir, foreign)
    if refused.returncode == 0 or not os.path.exists(keep):
        fail(f"a non-empty directory the script did not make was replaced: {refused.stderr!r}")


def is_inside(path, directory):
    return os.path.realpath(path).startswith(os.path.realpath(directory) + os.sep)


def check_libraries_resolve_inside(out):
    lib = os.path.join(out, "lib")
    shadowing = [name for name in os.listdir(lib) if SYSTEM_LIBRARY.match(name)]
    if shadowing:
        fail(f"the package holds system libraries it must leave to the machine: {shadowing}")
    files = [os.path.join(out, "libexec", name) for name in ("pagodad", "pagoda-cli")]
    files += [os.path.join(lib, name) for name in sorted(os.listdir(lib))]
    for path in files:
        ldd = subprocess.run(CLEAN_ENV + [f"LD_LIBRARY_PATH={lib}", "ldd", path],
                             capture_output=True, text=True, timeout=30)
        if ldd.returncode != 0:
            fail(f"ldd {path}: {ldd.stderr}")
        for line in ldd.stdout.splitlines():
            fields = line.split()
            if fields == ["statically", "linked"]:  # ldd's words for "needs nothing"
                continue
            if not fields or SYSTEM_LIBRARY.match(os.path.basename(fields[0])):
                continue
            if len(fields) < 3 or fields[1] != "=>" or not is_inside(fields[2], lib):
                fail(f"{os.path.basename(path)}: {line.strip()!r} does not resolve inside "
                     f"the package")
    print(f"ldd: {len(files)} packed files resolve every non-system library in the package")


def write_launchers(out, directory):
    """pagodad and pagoda-cli side by side (as Daemon wants them) that exec the package's
    wrappers in a clean environment; exec all the way down keeps the daemon's PID."""
    os.makedirs(directory)
    for name, wrapper in (("pagodad", "pagodad.sh"), ("pagoda-cli", "pagoda-cli.sh")):
        path = os.path.join(directory, name)
        command = " ".join(shlex.quote(a) for a in CLEAN_ENV + [f"{out}/bin/{wrapper}"])
        with open(path, "w") as f:
            f.write(f'#!/bin/sh\nexec {command} "$@"\n')
        os.chmod(path, 0o755)
    return os.path.join(directory, "pagodad")


def check_mapped_libraries(pid, out):
    with open(f"/proc/{pid}/maps") as f:
        mapped = {line.split()[-1] for line in f if ".so" in line.split()[-1]}
    foreign = [p for p in sorted(mapped) if not is_inside(p, os.path.join(out, "lib"))
               and not SYSTEM_LIBRARY.match(os.path.basename(p))]
    if foreign:
        fail(f"pagodad mapped libraries from outside the package: {foreign}")
    return mapped


def check_packed_daemon(out, pagodad):
    packed_model = os.path.join(out, "share", "pagoda", "models", "pagoda-kjv")
    with Daemon(pagodad, "--threads", "1", ready_timeout=60) as d:
        with open(f"/proc/{d.process.pid}/cmdline") as f:
            argv = f.read().split("\0")
        if argv[0] != os.path.join(out, "libexec", "pagodad") or argv[1:3] != [
                "--model", packed_model]:
            fail(f"bin/pagodad.sh ran {argv}, not the packed pagodad on the packed model")
        with open(f"/proc/{d.process.pid}/environ") as f:
            environ = dict(v.split("=", 1) for v in f.read().split("\0") if "=" in v)
        # The package's lib/ first; a CUDA build's wrapper appends the cuBLASLt it found.
        search = environ.get("LD_LIBRARY_PATH", "").split(":")
        links_cublas = "libcublasLt" in subprocess.run(
            ["ldd", os.path.join(out, "libexec", "pagodad")], capture_output=True,
            text=True).stdout
        if search[0] != os.path.join(out, "lib") or len(search) > 1 + links_cublas or (
                len(search) == 2 and not os.path.exists(
                    os.path.join(search[1], "libcublasLt.so.13"))):
            fail(f"pagodad's environment: {environ}")
        mapped = check_mapped_libraries(d.process.pid, out)
        info = d.cli_run("model-info")
        if info.returncode != 0 or 'model_name: "pagoda-kjv"' not in info.stdout:
            fail(f"model-info: {info.returncode} {info.stdout!r} {info.stderr!r}")
        run = d.cli_run("generate", "In the beginning", "--max-tokens", str(MAX_TOKENS),
                        "--temperature", "0", "--ignore-eos")
        if run.returncode != 0 or not run.stdout.strip() or \
                f"completion {MAX_TOKENS}," not in run.stderr:
            fail(f"generate: exit {run.returncode}, {run.stdout!r}, {run.stderr!r}")
        print(f"generate through the package: {run.stdout.strip()!r} {run.stderr.strip()}")
        print(f"pagodad mapped {len(mapped)} libraries, each packed or a system one")
    if d.exit_code != 0:
        fail(f"the packed pagodad exited {d.exit_code} on SIGTERM; its log:\n{d.log()}")

    with Daemon(pagodad, "--model=dummy:tiny", "--threads", "1", ready_timeout=60) as d:
        info = d.cli_run("model-info")
        if info.returncode != 0 or 'model_name: "dummy:tiny"' not in info.stdout:
            fail(f"--model=dummy:tiny did not replace the packed default: {info.stdout!r}")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--source-dir", required=True)
    parser.add_argument("--build-dir", required=True)
    args = parser.parse_args()
    if not os.path.isdir("/proc/self") or not all(shutil.which(t)
                                                  for t in ("ldd", "strip", "objdump")):
        print("SKIP: needs /proc, ldd, strip and objdump")
        sys.exit(SKIP)
    script = os.path.join(args.source_dir, "scripts", "package_pagodad.sh")
    scratch = os.path.realpath(tempfile.mkdtemp(prefix="pagoda_package_"))
    try:
        check_refusals(script, args.build_dir, scratch)
        out = os.path.join(scratch, "pagoda")
        made = package(script, args.build_dir, out)
        if made.returncode != 0:
            fail(f"package_pagodad.sh exited {made.returncode}: {made.stderr}")
        print(f"package: {made.stdout.strip()}")
        for path in ("bin/pagodad.sh", "bin/pagoda-cli.sh", "README.txt",
                     "share/pagoda/models/pagoda-kjv/config.json",
                     "share/pagoda/models/pagoda-kjv/model.safetensors"):
            if not os.path.exists(os.path.join(out, path)):
                fail(f"the package has no {path}")
        check_libraries_resolve_inside(out)
        check_packed_daemon(out, write_launchers(out, os.path.join(scratch, "launch")))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    print("PASS")


if __name__ == "__main__":
    main()
