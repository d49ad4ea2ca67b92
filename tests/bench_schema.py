#!/usr/bin/env python3
"""Validates benchmark JSON against docs/bench/schema.json.

usage: python3 tests/bench_schema.py SCHEMA FILE...

A file whose top level is an object (a report of `attamba bench suite`) is validated against the whole
schema; an array (what `attamba bench <name> --json` writes) item by item against definitions/entry.
Prints every error with its path; exits 1 on any error or unreadable file, 2 on usage. Needs the
jsonschema module (Debian bookworm: python3-jsonschema 4.10).
"""
import json
import sys

import jsonschema


def where(error):
    """The error's location in the file, e.g. entries/3/roofline/fraction."""
    return "/".join(str(p) for p in error.absolute_path) or "(top level)"


def check(path, report, entry):
    try:
        with open(path, encoding="utf-8") as f:
            doc = json.load(f)
    except (OSError, ValueError) as e:
        print(f"{path}: cannot read: {e}")
        return 1
    if isinstance(doc, dict):
        errors = [(where(e), e.message) for e in report.iter_errors(doc)]
    elif isinstance(doc, list):
        errors = [("/".join(str(p) for p in [i, *e.absolute_path]), e.message)
                  for i, item in enumerate(doc) for e in entry.iter_errors(item)]
    else:
        errors = [("(top level)", "neither an object (a suite report) nor an array of entries")]
    for loc, msg in sorted(errors):
        print(f"{path}: {loc}: {msg}")
    if not errors:
        print(f"{path}: ok ({'report' if isinstance(doc, dict) else 'entries'})")
    return 1 if errors else 0


def main(argv):
    if len(argv) < 3:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    with open(argv[1], encoding="utf-8") as f:
        schema = json.load(f)
    jsonschema.Draft7Validator.check_schema(schema)
    report = jsonschema.Draft7Validator(schema)
    # definitions/entry through a $ref, so that the refs inside it resolve against the same definitions
    entry = jsonschema.Draft7Validator({"$ref": "#/definitions/entry", "definitions": schema["definitions"]})
    bad = 0
    for path in argv[2:]:
        bad |= check(path, report, entry)
    return bad


if __name__ == "__main__":
    sys.exit(main(sys.argv))
