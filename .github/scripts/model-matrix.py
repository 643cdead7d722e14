#!/usr/bin/env python3
"""The model matrix of .github/workflows/build.yml.

    model-matrix.py MODELS_DIR MAX_IMAGE_BYTES

Prints one JSON list, an entry per MODELS_DIR/<short>.lock.json:
{"model": short, "bytes": total size of the locked files, "schema":
models/<short>.schema or modelwrap-v1, "path": "nix" or "stream"}.
A model whose files add up to at most MAX_IMAGE_BYTES is built as an image
with `nix build .#model-<short>`; a larger one would not fit a runner's
disk and publishes the same documents by `mpk reproduce --lock -o`, which
streams from the Hub and writes no image. Names and schemas are checked,
since they reach shell commands and artifact names.
"""
import json
import pathlib
import re
import sys

SCHEMAS = ("modelwrap-v1", "modelwrap-v2")
SHORT = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


def entries(models: pathlib.Path, limit: int):
    out = []
    for lock in sorted(models.glob("*.lock.json")):
        short = lock.name[: -len(".lock.json")]
        if not SHORT.fullmatch(short):
            sys.exit(f"{lock}: the short name {short!r} is not [A-Za-z0-9._-]")
        doc = json.loads(lock.read_text())
        if doc.get("version") != 1:
            sys.exit(f"{lock}: not a version 1 lock")
        sizes = [f.get("size") for f in doc["files"]]
        if not all(isinstance(s, int) and s >= 0 for s in sizes):
            sys.exit(f"{lock}: a file size is not a non-negative integer")
        total = sum(sizes)
        schema_file = models / f"{short}.schema"
        schema = schema_file.read_text().strip() if schema_file.exists() else SCHEMAS[0]
        if schema not in SCHEMAS:
            sys.exit(f"{schema_file}: {schema!r} is not one of {', '.join(SCHEMAS)}")
        out.append(
            {
                "model": short,
                "bytes": total,
                "schema": schema,
                "path": "nix" if total <= limit else "stream",
            }
        )
    return out


def main():
    if len(sys.argv) != 3 or not sys.argv[2].isdigit():
        sys.exit("usage: model-matrix.py MODELS_DIR MAX_IMAGE_BYTES")
    print(json.dumps(entries(pathlib.Path(sys.argv[1]), int(sys.argv[2]))))


if __name__ == "__main__":
    main()
