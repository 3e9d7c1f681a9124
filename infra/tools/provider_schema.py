"""The Terraform provider schemas infra/ is checked against, read from cdktf's npm packages.

A prebuilt cdktf provider package is generated from the provider's own schema: each
resource, data source and the provider block has a `lib/<name>/index.d.ts` whose config
interface lists every argument (camelCase, `?` when optional) and every nested block (an
interface of its own), each with a link to its Terraform registry anchor, which is the
argument's real (snake_case) name. This module turns those files into a plain schema:

    {"arguments": {name: {"required": bool, "deprecated": bool}},
     "blocks": {name: {"required": bool, "list": bool, "deprecated": bool, "schema": {...}}}}

The packages carry no deprecation flag: an argument whose description starts with
"Deprecated" counts as deprecated (that is how the provider words it).

    python infra/tools/provider_schema.py PACKAGE.tgz google_pubsub_topic   # prints one schema
"""
from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

# The packages infra/ is checked against, by Terraform provider local name: (npm package,
# package version, provider version it was generated from). infra/versions.tf pins
# ranges that include these provider versions; tests/infra checks the two agree.
PROVIDER_PACKAGES = {
    "google": ("@cdktf/provider-google", "16.12.1", "6.50.0"),
    "google-beta": ("@cdktf/provider-google-beta", "16.12.1", "6.50.0"),
    "time": ("@cdktf/provider-time", "11.0.1", "0.13.1"),
}

KINDS = {"TerraformResource": "resource", "TerraformDataSource": "data", "TerraformProvider": "provider"}

_CLASS = re.compile(
    r"export declare class \w+ extends cdktf\.(?P<base>TerraformResource|TerraformDataSource|TerraformProvider) \{\s*"
    r'static readonly tfResourceType = "(?P<type>[\w-]+)";.*?'
    r"constructor\(scope: Construct, id: string, config\??: (?P<config>\w+)\);",
    re.S,
)
_INTERFACE = re.compile(r"^export interface (?P<name>\w+)(?: extends [\w.]+)? \{\n(?P<body>.*?)^\}", re.S | re.M)
_MEMBER = re.compile(
    r"(?:/\*\*(?P<doc>(?:(?!\*/).)*)\*/\s*)?readonly (?P<name>\w+)(?P<optional>\??): (?P<type>[^;{]*(?:\{[^}]*\}[^;]*)?);",
    re.S,
)
_ANCHOR = re.compile(r"#(\w+) \w+#\1\}")
_DEPRECATED = re.compile(r"^\W*deprecated\b", re.I)


def package_file_name(provider: str) -> str:
    """The file `npm pack` writes for a provider's package, e.g. cdktf-provider-google-16.12.1.tgz."""
    package, version, _ = PROVIDER_PACKAGES[provider]
    return f"{package.lstrip('@').replace('/', '-')}-{version}.tgz"


class PackageUnavailable(Exception):
    """A provider package is neither cached nor fetchable (no npm, no registry)."""


def ensure_package(provider: str, cache: Path) -> Path:
    """The provider's package tarball in `cache`, fetched with `npm pack` the first time only."""
    package, version, _ = PROVIDER_PACKAGES[provider]
    path = cache / package_file_name(provider)
    if path.is_file():
        return path
    npm = shutil.which("npm")
    if npm is None:
        raise PackageUnavailable(f"cannot fetch {package}@{version}: npm is not installed (apt-get install npm)")
    cache.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        [npm, "pack", f"{package}@{version}", "--pack-destination", str(cache), "--loglevel=error"],
        capture_output=True, text=True, timeout=300,
    )
    if done.returncode != 0 or not path.is_file():
        raise PackageUnavailable(f"cannot fetch {package}@{version} from the npm registry: {_npm_reason(done.stderr)}")
    return path


def _npm_reason(stderr: str) -> str:
    """The one line of npm's error output that says why (e.g. `request to ... failed, reason: ...`)."""
    lines = [line.removeprefix("npm error").strip() for line in stderr.splitlines() if line.startswith("npm error")]
    telling = [line for line in lines if "failed" in line or "404" in line] or lines or ["npm gave no reason"]
    return telling[0]


def _snake(camel: str) -> str:
    return re.sub(r"(?<=[a-z0-9])([A-Z])", r"_\1", camel).lower()


def _description(doc: str) -> str:
    lines = (re.sub(r"^\s*\*\s?", "", line).strip() for line in doc.splitlines())
    return " ".join(line for line in lines if line and not line.startswith("Docs at Terraform Registry"))


class _DeclarationFile:
    """One lib/<name>/index.d.ts: its interfaces, and the schema of one of them."""

    def __init__(self, text: str):
        self.interfaces = {m["name"]: m["body"] for m in _INTERFACE.finditer(text)}

    def schema(self, interface: str, seen: tuple = ()) -> dict:
        if interface in seen:
            raise ValueError(f"nested blocks loop back to {interface}")
        arguments, blocks = {}, {}
        for member in _MEMBER.finditer(self.interfaces[interface]):
            doc = member["doc"] or ""
            anchor = _ANCHOR.search(doc)
            name = anchor.group(1) if anchor else _snake(member["name"])
            required = not member["optional"]
            deprecated = bool(_DEPRECATED.match(_description(doc)))
            kind = member["type"].replace("| cdktf.IResolvable", "").strip()
            nested = kind.removesuffix("[]")
            if nested in self.interfaces:
                blocks[name] = {
                    "required": required,
                    "list": kind.endswith("[]"),
                    "deprecated": deprecated,
                    "schema": self.schema(nested, seen + (interface,)),
                }
            else:
                arguments[name] = {"required": required, "deprecated": deprecated}
        return {"arguments": arguments, "blocks": blocks}


def extract(package: Path, wanted: set[tuple[str, str]]) -> dict:
    """Schemas of (kind, type) pairs from a package tarball, e.g. ("resource", "google_pubsub_topic").

    Returns {"kind type": schema}; a pair the package does not define is left out.
    """
    # A type's declarations are all .d.ts files of its lib/<name>/ folder: the largest
    # resources keep their nested blocks' interfaces in index-structs/*.d.ts.
    folders: dict[str, list[str]] = {}
    with tarfile.open(package) as archive:
        for member in archive:
            parts = member.name.split("/")
            if member.isfile() and len(parts) > 3 and parts[1] == "lib" and member.name.endswith(".d.ts"):
                folders.setdefault(parts[2], []).append(archive.extractfile(member).read().decode())
    found = {}
    for texts in folders.values():
        for match in _CLASS.finditer("\n".join(texts)):
            key = (KINDS[match["base"]], match["type"])
            if key in wanted:
                found[" ".join(key)] = _DeclarationFile("\n".join(texts)).schema(match["config"])
    return found


def provider_version(package: Path) -> str:
    """The Terraform provider version a package was generated from (its package.json)."""
    with tarfile.open(package) as archive:
        meta = json.load(archive.extractfile("package/package.json"))
    return meta["cdktf"]["provider"]["version"]


def main(argv: list[str]) -> int:
    if len(argv) < 3:
        print(__doc__.strip().splitlines()[-1].strip(), file=sys.stderr)
        return 2
    package, types = Path(argv[1]), argv[2:]
    wanted = {(kind, t) for t in types for kind in ("resource", "data")}
    print(json.dumps(extract(package, wanted), indent=1, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
