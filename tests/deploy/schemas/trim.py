#!/usr/bin/env python3
"""Writes the trimmed copy of a vendored schema (tests/deploy/schemas/README.md says which).

    trim.py json SOURCE.json > OUT.json         # a standalone JSON schema
    trim.py crd SOURCE.yaml VERSION > OUT.yaml  # a CustomResourceDefinition, one version kept

Only the human-readable "description" of each schema node goes (and, for a CRD, the versions
other than VERSION): every constraint stays as it was. A property that is itself called
"description" is kept.
"""

import json
import sys


def strip(node):
    if isinstance(node, list):
        return [strip(item) for item in node]
    if not isinstance(node, dict):
        return node
    out = {}
    for key, value in node.items():
        if key in ("properties", "patternProperties", "definitions") and isinstance(value, dict):
            out[key] = {name: strip(child) for name, child in value.items()}
        elif key == "description" and isinstance(value, str):
            continue
        else:
            out[key] = strip(value)
    return out


def main():
    if sys.argv[1:2] == ["json"] and len(sys.argv) == 3:
        with open(sys.argv[2]) as f:
            json.dump(strip(json.load(f)), sys.stdout, indent=1)
        sys.stdout.write("\n")
    elif sys.argv[1:2] == ["crd"] and len(sys.argv) == 4:
        import yaml
        with open(sys.argv[2]) as f:
            crd = yaml.safe_load(f)
        versions = [v for v in crd["spec"]["versions"] if v["name"] == sys.argv[3]]
        if not versions:
            sys.exit(f"{sys.argv[2]} has no version {sys.argv[3]}")
        versions[0]["schema"] = strip(versions[0]["schema"])
        crd["spec"]["versions"] = versions
        yaml.safe_dump(crd, sys.stdout, sort_keys=False, width=100)
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
