"""Check every resource, data and provider block of infra/*.tf against the providers' schemas.

For each block: its type exists in the provider; every argument and nested block it sets
exists at that place; every required argument and block is set; nothing deprecated is
used; a block the provider allows once appears once. The schemas come from the cdktf
packages of provider_schema.PROVIDER_PACKAGES, fetched with `npm pack` into a git-ignored
cache on the first run (provider_schema.py reads them); afterwards this needs no network,
and never a terraform binary.

    python infra/tools/schema_check.py [--infra DIR] [--packages DIR]

Prints one line per problem and exits 1 if there is any.
"""
from __future__ import annotations

import argparse
import difflib
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import hcl2
from hcl2.utils import SerializationOptions

sys.path.insert(0, str(Path(__file__).resolve().parent))
from provider_schema import PROVIDER_PACKAGES, PackageUnavailable, ensure_package, extract  # noqa: E402

# Terraform's own arguments, valid in every resource / data block whatever the schema says.
META_ARGUMENTS = {
    "resource": {"count", "for_each", "depends_on", "lifecycle", "provider", "provisioner", "connection"},
    "data": {"count", "for_each", "depends_on", "lifecycle", "provider"},
    "provider": {"alias"},
}
# Git-ignored; filled by `npm pack` on the first run, read offline afterwards.
DEFAULT_PACKAGES = Path(__file__).resolve().parents[2] / ".cache" / "provider-schemas"
# Bump when provider_schema.py extracts differently, so cached schemas are rebuilt.
CACHE_FORMAT = 1
_OPTIONS = SerializationOptions(with_comments=False, explicit_blocks=True, strip_string_quotes=True)
_BLOCK = "__is_block__"


@dataclass(frozen=True)
class Block:
    """One resource / data / provider block of a .tf file."""

    file: str
    kind: str  # resource | data | provider
    type: str
    name: str
    body: dict

    @property
    def label(self) -> str:
        prefix = {"resource": "", "data": "data.", "provider": "provider."}[self.kind]
        return f"{self.file}: {prefix}{self.type}" + (f".{self.name}" if self.name else "")

    @property
    def provider(self) -> str:
        """The provider's local name: the `provider` meta-argument, else the type's prefix."""
        if self.kind == "provider":
            return self.type
        chosen = self.body.get("provider")
        if isinstance(chosen, str):
            return chosen.strip("${}").split(".")[0]
        return self.type.split("_")[0]


def read_blocks(infra: Path) -> list[Block]:
    blocks = []
    for path in sorted(infra.glob("*.tf")):
        with open(path) as f:
            doc = hcl2.load(f, serialization_options=_OPTIONS)
        for kind in ("resource", "data"):
            for group in doc.get(kind, []):
                for rtype, instances in group.items():
                    if rtype == _BLOCK:
                        continue
                    for name, body in instances.items():
                        if name != _BLOCK:
                            blocks.append(Block(path.name, kind, rtype, name, body))
        for group in doc.get("provider", []):
            for ptype, body in group.items():
                if ptype != _BLOCK:
                    blocks.append(Block(path.name, "provider", ptype, "", body))
    return blocks


class SchemaCache:
    """Schemas of the types infra/ uses, extracted from the packages once and kept as JSON beside them."""

    def __init__(self, packages: Path):
        self.packages = packages

    def schemas(self, provider: str, wanted: set[tuple[str, str]]) -> dict:
        package = ensure_package(provider, self.packages)
        cache = package.with_suffix(".schemas.json")
        known = json.loads(cache.read_text()) if cache.is_file() else {}
        if known.get("format") != CACHE_FORMAT:  # written by an older extractor: start over
            known = {"format": CACHE_FORMAT, "types": {}, "absent": []}
        keys = {" ".join(pair) for pair in wanted}
        missing = keys - set(known["types"]) - set(known["absent"])
        if missing:
            found = extract(package, {tuple(key.split(" ", 1)) for key in missing})
            known["types"].update(found)
            known["absent"] = sorted(set(known["absent"]) | (missing - set(found)))
            partial = cache.with_name(f"{cache.name}.{os.getpid()}")
            partial.write_text(json.dumps(known, sort_keys=True))
            partial.replace(cache)  # atomic: a concurrent reader sees the old or the new file
        return known["types"]


def _is_block(value) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(v, dict) and v.get(_BLOCK) for v in value)


def _paths_of(schema: dict, name: str, path: tuple = ()) -> list[str]:
    """Where else in a type's schema an argument or block of this name lives."""
    here = [".".join(path) or "the top level"] if name in schema["arguments"] or name in schema["blocks"] else []
    for block, spec in schema["blocks"].items():
        here += _paths_of(spec["schema"], name, path + (block,))
    return here


def check_body(body: dict, schema: dict, root: dict, where: str, skip: set[str] = frozenset()) -> list[str]:
    """Problems of one block body (and its nested blocks) against its schema."""
    problems = []
    static: dict[str, int] = {}  # times each nested block is written out
    dynamic: set[str] = set()  # nested blocks generated by `dynamic`
    known = set(schema["arguments"]) | set(schema["blocks"])
    for key, value in body.items():
        if key == _BLOCK or key in skip:
            continue
        if key == "dynamic" and isinstance(value, list):
            # [{label: {for_each, content: [body]}}]: the label names the generated block.
            for generated in value:
                for name, spec in generated.items():
                    if name == _BLOCK:
                        continue
                    if name not in schema["blocks"]:
                        problems.append(_unknown(name, known, root, where, "dynamic block"))
                        continue
                    dynamic.add(name)
                    for content in spec.get("content", []):
                        problems += check_body(content, schema["blocks"][name]["schema"], root, f"{where}{name}.")
            continue
        if key in schema["blocks"]:
            spec = schema["blocks"][key]
            if not _is_block(value):
                problems.append(f"{where}{key} is a block: write `{key} {{ ... }}`, not `{key} = ...`")
                continue
            if spec["deprecated"]:
                problems.append(f"{where}{key} is deprecated")
            static[key] = len(value)
            for item in value:
                problems += check_body(item, spec["schema"], root, f"{where}{key}.")
        elif key in schema["arguments"]:
            if _is_block(value):
                problems.append(f"{where}{key} is an argument: write `{key} = ...`, not a block")
            if schema["arguments"][key]["deprecated"]:
                problems.append(f"{where}{key} is deprecated")
        else:
            problems.append(_unknown(key, known, root, where))
    for name, spec in schema["arguments"].items():
        if spec["required"] and name not in body:
            problems.append(f"{where}{name} is required and not set")
    for name, spec in schema["blocks"].items():
        if spec["required"] and not static.get(name) and name not in dynamic:
            problems.append(f"{where}{name} {{ ... }} is required and not set")
        if not spec["list"] and static.get(name, 0) > 1:
            problems.append(f"{where}{name} may appear once, found {static[name]}")
    return problems


def _unknown(name: str, known: set[str], root: dict, where: str, what: str = "argument or block") -> str:
    message = f"{where}{name}: no such {what} here"
    elsewhere = [p for p in _paths_of(root, name) if f"{p}." != where and not (p == "the top level" and not where)]
    if elsewhere:
        return f"{message}; it belongs in {' or '.join(elsewhere)}"
    close = difflib.get_close_matches(name, sorted(known), n=1)
    return f"{message}" + (f" (did you mean {close[0]}?)" if close else "")


def check(infra: Path, packages: Path) -> list[str]:
    blocks = read_blocks(infra)
    problems = []
    by_provider: dict[str, list[Block]] = {}
    for block in blocks:
        by_provider.setdefault(block.provider, []).append(block)
    cache = SchemaCache(packages)
    for provider, members in sorted(by_provider.items()):
        if provider not in PROVIDER_PACKAGES:
            problems += [f"{b.label}: provider {provider!r} has no schema package (provider_schema.PROVIDER_PACKAGES)" for b in members]
            continue
        schemas = cache.schemas(provider, {(b.kind, b.type) for b in members})
        for block in members:
            schema = schemas.get(f"{block.kind} {block.type}")
            if schema is None:
                package, version, _ = PROVIDER_PACKAGES[provider]
                problems.append(f"{block.label}: {block.kind} type {block.type} does not exist in {package}@{version}")
                continue
            found = check_body(block.body, schema, schema, "", META_ARGUMENTS[block.kind])
            problems += [f"{block.label}: {p}" for p in found]
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("--infra", type=Path, default=Path(__file__).resolve().parents[1])
    parser.add_argument("--packages", type=Path, default=DEFAULT_PACKAGES, help="cache folder of the npm-packed provider packages")
    args = parser.parse_args(argv)
    try:
        problems = check(args.infra, args.packages)
    except PackageUnavailable as unavailable:
        print(f"schema check: {unavailable}", file=sys.stderr)
        return 2
    for problem in problems:
        print(problem)
    checked = len(read_blocks(args.infra))
    print(f"schema check: {checked} blocks, {len(problems)} problem(s)", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
