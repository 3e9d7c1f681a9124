"""The provider schema check (infra/tools/schema_check.py) against the real provider schemas.

Runs in .venv-infra (python-hcl2). The provider packages are fetched with npm into the
git-ignored .cache/provider-schemas on the first run (infra/check.sh does that first);
tests that need them skip with the fetch error when they cannot be had.
"""
from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

pytest.importorskip("hcl2", reason="python-hcl2 lives in .venv-infra (infra/check.sh), not the main venv")

REPO = Path(__file__).resolve().parents[2]
INFRA = REPO / "infra"
sys.path.insert(0, str(INFRA / "tools"))

import provider_schema  # noqa: E402
import schema_check  # noqa: E402


@pytest.fixture(scope="module")
def packages() -> Path:
    """The cache folder, with every provider infra/ uses fetched (skips if that cannot be done)."""
    used = {block.provider for block in schema_check.read_blocks(INFRA)}
    try:
        for provider in sorted(used & set(provider_schema.PROVIDER_PACKAGES)):
            provider_schema.ensure_package(provider, schema_check.DEFAULT_PACKAGES)
    except provider_schema.PackageUnavailable as unavailable:
        pytest.skip(str(unavailable))
    return schema_check.DEFAULT_PACKAGES


def _mutated(tmp_path: Path, file: str, old: str, new: str) -> Path:
    """A copy of infra/ with one edit in one file (the edit must apply exactly once)."""
    copy = tmp_path / "infra"
    shutil.copytree(INFRA, copy, ignore=shutil.ignore_patterns("tools", "__pycache__"))
    path = copy / file
    content = path.read_text()
    assert content.count(old) == 1, f"{file}: expected {old!r} once"
    path.write_text(content.replace(old, new))
    return copy


def test_todays_infra_matches_the_provider_schemas(packages):
    assert schema_check.check(INFRA, packages) == []


def test_every_block_is_checked(packages):
    """No resource, data or provider block slips past as an unknown provider."""
    blocks = schema_check.read_blocks(INFRA)
    assert len(blocks) >= 40
    assert {b.provider for b in blocks} <= set(provider_schema.PROVIDER_PACKAGES)


def test_catches_a_misspelt_argument(packages, tmp_path):
    infra = _mutated(tmp_path, "storage.tf", "uniform_bucket_level_access = true", "uniform_bucket_level_acess = true")
    assert schema_check.check(infra, packages) == [
        "storage.tf: google_storage_bucket.uploads: uniform_bucket_level_acess: no such argument or block here"
        " (did you mean uniform_bucket_level_access?)"
    ]


def test_catches_an_argument_at_the_wrong_nesting_level(packages, tmp_path):
    # cpu_idle belongs in containers.resources, not in containers.
    infra = _mutated(tmp_path, "run.tf", "      image = local.image\n", "      image = local.image\n      cpu_idle = false\n")
    assert schema_check.check(infra, packages) == [
        "run.tf: google_cloud_run_v2_service.service: template.containers.cpu_idle: no such argument or block here;"
        " it belongs in template.containers.resources"
    ]


def test_catches_a_missing_required_argument(packages, tmp_path):
    infra = _mutated(tmp_path, "apis.tf", "  service = each.value\n", "")
    assert schema_check.check(infra, packages) == [
        "apis.tf: google_project_service.apis: service is required and not set"
    ]


def test_catches_a_misspelt_block(packages, tmp_path):
    infra = _mutated(tmp_path, "bigquery.tf", "  view {\n    query = templatefile(\"${path.module}/sql/results.sql\"",
                     "  views {\n    query = templatefile(\"${path.module}/sql/results.sql\"")
    assert schema_check.check(infra, packages) == [
        "bigquery.tf: google_bigquery_table.results: views: no such argument or block here (did you mean view?)"
    ]


def test_catches_a_missing_required_block(packages, tmp_path):
    infra = _mutated(tmp_path, "eventarc.tf", "  destination {\n", "  ignored_destination {\n")
    problems = schema_check.check(infra, packages)
    assert "eventarc.tf: google_eventarc_trigger.uploads: destination { ... } is required and not set" in problems


def test_catches_an_invented_resource_type_and_a_block_written_as_argument(packages, tmp_path):
    infra = _mutated(tmp_path, "registry.tf", "  cleanup_policy_dry_run = false\n",
                     "  cleanup_policy_dry_run = false\n  versioning = { enabled = true }\n")
    (infra / "extra.tf").write_text('resource "google_cloud_run_v3_service" "x" {\n  name = "x"\n}\n')
    problems = schema_check.check(infra, packages)
    assert "extra.tf: google_cloud_run_v3_service.x: resource type google_cloud_run_v3_service does not exist in @cdktf/provider-google@16.12.1" in problems
    assert any(p.startswith("registry.tf: google_artifact_registry_repository.images: versioning: no such") for p in problems), problems


def test_checks_dynamic_blocks_content(packages, tmp_path):
    infra = _mutated(tmp_path, "run.tf", "          value = env.value\n", "          valeu = env.value\n")
    assert schema_check.check(infra, packages) == [
        "run.tf: google_cloud_run_v2_service.service: template.containers.env.valeu: no such argument or block here"
        " (did you mean value?)"
    ]


# ---------------------------------------------------------------- the checker's rules, on a small schema

SCHEMA = {
    "arguments": {"name": {"required": True, "deprecated": False}, "old": {"required": False, "deprecated": True}},
    "blocks": {
        "policy": {"required": False, "list": False, "deprecated": False, "schema": {
            "arguments": {"ttl": {"required": False, "deprecated": False}}, "blocks": {}}},
    },
}


def _block(**body):
    return dict(body, __is_block__=True)


def test_deprecated_arguments_are_refused():
    assert schema_check.check_body({"name": "x", "old": 1}, SCHEMA, SCHEMA, "") == ["old is deprecated"]


def test_a_single_block_may_appear_once():
    body = {"name": "x", "policy": [_block(ttl="1s"), _block(ttl="2s")]}
    assert schema_check.check_body(body, SCHEMA, SCHEMA, "") == ["policy may appear once, found 2"]


def test_an_argument_written_as_a_block_is_refused():
    body = {"name": [_block(value="x")]}
    assert schema_check.check_body(body, SCHEMA, SCHEMA, "") == ["name is an argument: write `name = ...`, not a block"]


# ---------------------------------------------------------------- reading the declaration files

DECLARATIONS = '''
export interface ThingConfig extends cdktf.TerraformMetaArguments {
    /**
    * The thing's name.
    *
    * Docs at Terraform Registry: {@link https://registry.terraform.io/providers/hashicorp/google/6.50.0/docs/resources/thing#name Thing#name}
    */
    readonly name: string;
    /**
    * Deprecated. Use name.
    *
    * Docs at Terraform Registry: {@link https://registry.terraform.io/providers/hashicorp/google/6.50.0/docs/resources/thing#old_name Thing#old_name}
    */
    readonly oldName?: string;
    /**
    * Docs at Terraform Registry: {@link https://registry.terraform.io/providers/hashicorp/google/6.50.0/docs/resources/thing#labels Thing#labels}
    */
    readonly labels?: {
        [key: string]: string;
    };
    /**
    * rule block
    *
    * Docs at Terraform Registry: {@link https://registry.terraform.io/providers/hashicorp/google/6.50.0/docs/resources/thing#rule Thing#rule}
    */
    readonly rule?: ThingRule[] | cdktf.IResolvable;
}
export interface ThingRule {
    /**
    * Docs at Terraform Registry: {@link https://registry.terraform.io/providers/hashicorp/google/6.50.0/docs/resources/thing#max_age_days Thing#max_age_days}
    */
    readonly maxAgeDays: number;
}
export declare class Thing extends cdktf.TerraformResource {
    static readonly tfResourceType = "google_thing";
    constructor(scope: Construct, id: string, config: ThingConfig);
}
'''


def test_extract_reads_arguments_blocks_required_and_deprecated(tmp_path):
    import io
    import tarfile

    package = tmp_path / "package.tgz"
    with tarfile.open(package, "w:gz") as archive:
        data = DECLARATIONS.encode()
        info = tarfile.TarInfo("package/lib/thing/index.d.ts")
        info.size = len(data)
        archive.addfile(info, io.BytesIO(data))
    schemas = provider_schema.extract(package, {("resource", "google_thing"), ("data", "google_thing")})
    assert schemas == {"resource google_thing": {
        "arguments": {
            "name": {"required": True, "deprecated": False},
            "old_name": {"required": False, "deprecated": True},
            "labels": {"required": False, "deprecated": False},
        },
        "blocks": {"rule": {"required": False, "list": True, "deprecated": False, "schema": {
            "arguments": {"max_age_days": {"required": True, "deprecated": False}}, "blocks": {}}}},
    }}


# ---------------------------------------------------------------- a package that cannot be fetched

def _closed_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_an_unreachable_registry_is_one_clear_line(tmp_path, monkeypatch, capsys):
    if not shutil.which("npm"):
        pytest.skip("npm is not installed (infra/check.sh installs Debian's)")
    monkeypatch.setenv("npm_config_registry", f"http://127.0.0.1:{_closed_port()}/")
    monkeypatch.setenv("npm_config_cache", str(tmp_path / "npm-cache"))  # not npm's own cache
    monkeypatch.setenv("npm_config_fetch_retries", "0")

    assert schema_check.main(["--packages", str(tmp_path / "empty")]) == 2

    out, err = capsys.readouterr()
    assert out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("schema check: cannot fetch @cdktf/provider-")
    assert "from the npm registry: " in lines[0] and "ECONNREFUSED" in lines[0]
