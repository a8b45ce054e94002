#!/usr/bin/python3
"""schema_check.py: keeps manifests/pipectl.schema.json honest.

Validates every manifests/*.yaml and every tests/unit/cases/manifest/good/*.yaml against the
JSON Schema, and checks that every bad case whose .expect mentions "unknown key" is rejected by
the schema too (additionalProperties: false), naming the offending key. Exits 1 on any failure.

Needs Debian's python3-jsonschema and python3-yaml.
Usage: /usr/bin/python3 tests/unit/schema_check.py [SOURCE_ROOT]
"""
import glob
import json
import os
import re
import sys

import jsonschema
import yaml


def load_yaml(path):
    with open(path, "rb") as f:
        return yaml.safe_load(f)


def main():
    root = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
    root = os.path.abspath(root)
    schema_path = os.path.join(root, "manifests", "pipectl.schema.json")
    with open(schema_path) as f:
        schema = json.load(f)
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    validator = cls(schema)
    failures = 0
    checked = 0

    good = sorted(glob.glob(os.path.join(root, "manifests", "*.yaml")))
    good += sorted(glob.glob(os.path.join(root, "tests", "unit", "cases", "manifest", "good", "*.yaml")))
    if not good:
        print("schema_check: no manifests found under %s" % root, file=sys.stderr)
        return 1
    for path in good:
        rel = os.path.relpath(path, root)
        checked += 1
        try:
            doc = load_yaml(path)
        except yaml.YAMLError as e:
            print("FAIL %s: not YAML: %s" % (rel, e))
            failures += 1
            continue
        errors = sorted(validator.iter_errors(doc), key=lambda e: list(e.absolute_path))
        for e in errors:
            where = "/".join(str(p) for p in e.absolute_path) or "(top)"
            print("FAIL %s: %s: %s" % (rel, where, e.message))
        failures += 1 if errors else 0

    bad_dir = os.path.join(root, "tests", "unit", "cases", "manifest", "bad")
    unknown = 0
    for expect in sorted(glob.glob(os.path.join(bad_dir, "*.expect"))):
        with open(expect, encoding="utf-8") as f:
            first = f.readline()
        m = re.search(r"unknown key '([^']*)'", first)
        if not m:
            continue
        unknown += 1
        checked += 1
        path = expect[: -len(".expect")] + ".yaml"
        rel = os.path.relpath(path, root)
        try:
            doc = load_yaml(path)
        except yaml.YAMLError as e:
            print("FAIL %s: not YAML, so the schema cannot judge the unknown key: %s" % (rel, e))
            failures += 1
            continue
        key = m.group(1)
        msgs = [e.message for e in validator.iter_errors(doc)]
        if not any(repr(key) in msg or key in msg for msg in msgs):
            print("FAIL %s: the schema accepts unknown key '%s' (errors: %s)" % (rel, key, msgs))
            failures += 1
    if unknown == 0:
        print("FAIL: no bad case mentions 'unknown key'")
        failures += 1

    print("schema_check: %d files checked, %d failed" % (checked, failures))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
