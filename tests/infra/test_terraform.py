"""Offline checks of the Terraform in infra/ (no terraform binary, no cloud).

Run with the infra venv (python-hcl2 + pytest), from the repo root:
    .venv-infra/bin/python -m pytest tests/infra
infra/check.sh creates that venv and also runs checkov.

The checks tie the Terraform to the code it deploys: routes the server serves
(functions/routes.py), settings it reads (shared/config.py SETTINGS), the app tag the
log sink filters on (shared.APP_NAME), the result record exported to BigQuery
(shared/results.py) and the BigQuery remote-function handler's limits
(functions/bigquery_trigger.py).
"""
from __future__ import annotations

import ast
import json
import re
import sys
import textwrap
from functools import cache
from pathlib import Path

import pytest

hcl2 = pytest.importorskip("hcl2", reason="python-hcl2 lives in .venv-infra (infra/check.sh), not the main venv")
from hcl2.utils import SerializationOptions  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
INFRA = REPO / "infra"
SCHEMA_FILE = INFRA / "schema" / "run_googleapis_com_stdout.json"
TF_FILES = sorted(INFRA.glob("*.tf"))

if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

PUBLIC_PRINCIPALS = ("allUsers", "allAuthenticatedUsers")
PLATFORM_ENV = {"PORT", "GOOGLE_CLOUD_PROJECT"}  # set by Cloud Run / allowed besides SETTINGS
META_ARGS = {"count", "for_each", "depends_on", "lifecycle", "provider"}


# ---------------------------------------------------------------- reading the code's contracts (no execution)

def _module_constants(path: Path) -> dict:
    """Top-level NAME = literal assignments of a module, read with ast (nothing imported)."""
    values = {}
    for node in ast.parse(path.read_text()).body:
        targets, value = [], None
        if isinstance(node, ast.Assign):
            targets, value = node.targets, node.value
        elif isinstance(node, ast.AnnAssign) and node.value is not None:
            targets, value = [node.target], node.value
        for target in targets:
            if isinstance(target, ast.Name):
                try:
                    values[target.id] = ast.literal_eval(value)
                except ValueError:
                    pass
    return values


@cache
def routes() -> dict:
    return _module_constants(REPO / "functions" / "routes.py")


@cache
def app_name() -> str:
    return _module_constants(REPO / "shared" / "__init__.py")["APP_NAME"]


@cache
def _settings_dict() -> ast.Dict:
    for node in ast.parse((REPO / "shared" / "config.py").read_text()).body:
        target = node.target if isinstance(node, ast.AnnAssign) else (node.targets[0] if isinstance(node, ast.Assign) else None)
        if isinstance(target, ast.Name) and target.id == "SETTINGS" and isinstance(node.value, ast.Dict):
            return node.value
    raise AssertionError("shared/config.py defines no SETTINGS dict literal")


@cache
def settings_names() -> frozenset:
    """Keys of shared/config.py SETTINGS (the dict's keys are literals; values may call functions)."""
    return frozenset(ast.literal_eval(k) for k in _settings_dict().keys)


def setting_default(name: str) -> str:
    """The code's default of one setting, where it is a literal (SETTINGS[name][0])."""
    for key, value in zip(_settings_dict().keys, _settings_dict().values):
        if ast.literal_eval(key) == name:
            return ast.literal_eval(value)[0]
    raise AssertionError(f"{name} is not in shared/config.py SETTINGS")


@cache
def remote_function_handler() -> dict:
    """The remote-function protocol's code, read with ast: functions/delivery.py recognises a
    call, functions/bigquery_trigger.py parses and answers it, functions/parsing.py bounds
    top_k. Their constants and top-level function names."""
    found: dict = {"functions": set()}
    for name in ("delivery.py", "bigquery_trigger.py", "parsing.py"):
        path = REPO / "functions" / name
        found["functions"] |= {n.name for n in ast.parse(path.read_text()).body if isinstance(n, ast.FunctionDef)}
        found.update(_module_constants(path))
    return found


# ---------------------------------------------------------------- reading the Terraform

_OPTIONS = SerializationOptions(with_comments=False, explicit_blocks=False, strip_string_quotes=True)


@cache
def parsed(path: Path) -> dict:
    with open(path) as f:
        return hcl2.load(f, serialization_options=_OPTIONS)


class Config:
    """All infra/*.tf merged: resources[type][name], data[type][name], variables, locals, outputs."""

    def __init__(self):
        self.resources: dict[str, dict[str, dict]] = {}
        self.data: dict[str, dict[str, dict]] = {}
        self.variables: dict[str, dict] = {}
        self.locals: dict[str, object] = {}
        self.outputs: dict[str, dict] = {}
        self.terraform: list[dict] = []
        self.where: dict[tuple[str, str], str] = {}
        for path in TF_FILES:
            doc = parsed(path)
            for block in doc.get("resource", []):
                for rtype, instances in block.items():
                    for name, body in instances.items():
                        assert name not in self.resources.get(rtype, {}), f"{rtype}.{name} defined twice"
                        self.resources.setdefault(rtype, {})[name] = body
                        self.where[(rtype, name)] = path.name
            for block in doc.get("data", []):
                for dtype, instances in block.items():
                    for name, body in instances.items():
                        self.data.setdefault(dtype, {})[name] = body
            for block in doc.get("variable", []):
                self.variables.update(block)
            for block in doc.get("locals", []):
                for key, value in block.items():
                    assert key not in self.locals, f"local.{key} defined twice"
                    self.locals[key] = value
            for block in doc.get("output", []):
                self.outputs.update(block)
            self.terraform += doc.get("terraform", [])

    def of_type(self, rtype: str) -> dict[str, dict]:
        return self.resources.get(rtype, {})

    def one(self, rtype: str) -> tuple[str, dict]:
        items = list(self.of_type(rtype).items())
        assert len(items) == 1, f"expected exactly one {rtype}, found {[n for n, _ in items]}"
        return items[0]

    def default(self, var_name: str):
        assert var_name in self.variables, f"var.{var_name} is not declared"
        assert "default" in self.variables[var_name], f"var.{var_name} has no default"
        return self.variables[var_name]["default"]

    def resolve(self, value):
        """Replace ${var.x} (optionally wrapped in tostring()) with the variable's default."""
        if not isinstance(value, str):
            return value
        whole = re.fullmatch(r"\$\{(?:tostring\()?var\.(\w+)\)?\}", value)
        if whole:
            return self.default(whole.group(1))
        return re.sub(r"\$\{var\.(\w+)\}", lambda m: str(self.default(m.group(1))), value)


@pytest.fixture(scope="module")
def cfg() -> Config:
    return Config()


def first(block):
    """A nested block parses as a list of dicts; most appear once."""
    if isinstance(block, list):
        assert len(block) == 1, f"expected one block, got {len(block)}"
        return block[0]
    return block


def text(value: str) -> str:
    """The text of a string or heredoc value."""
    if isinstance(value, str) and value.startswith("<<"):
        lines = value.split("\n")
        value = textwrap.dedent("\n".join(lines[1:-1]))
    return value


def walk_strings(node, path=()):
    if isinstance(node, dict):
        for key, value in node.items():
            yield from walk_strings(value, path + (key,))
    elif isinstance(node, list):
        for item in node:
            yield from walk_strings(item, path)
    elif isinstance(node, str):
        yield path, node


def ref_name(expr: str, rtype: str) -> str:
    """The resource name in an expression like ${google_pubsub_topic.x[0].id}."""
    match = re.search(rf"\b{re.escape(rtype)}\.(\w+)", expr)
    assert match, f"{expr!r} does not reference a {rtype}"
    return match.group(1)


def dynamic_blocks(body: dict, name: str) -> list[dict]:
    found = []
    for dyn in body.get("dynamic", []):
        if name in dyn:
            found.append(dyn[name])
    return found


# ---------------------------------------------------------------- parsing & hygiene

@pytest.mark.parametrize("path", TF_FILES, ids=[p.name for p in TF_FILES])
def test_tf_file_parses(path):
    assert isinstance(parsed(path), dict)


def test_expected_files_exist():
    for name in ("main.tf", "variables.tf", "outputs.tf", "versions.tf", "terraform.tfvars.example",
                 "apis.tf", "registry.tf", "iam.tf", "storage.tf", "pubsub.tf", "run.tf",
                 "bigquery.tf", "logging.tf", "monitoring.tf", "eventarc.tf", "remote_function.tf"):
        assert (INFRA / name).is_file(), f"infra/{name} missing"


def test_tfvars_example_parses_and_names_declared_variables(cfg):
    example = parsed(INFRA / "terraform.tfvars.example")
    unknown = {k for k in example if not k.startswith("__")} - set(cfg.variables)
    assert not unknown, f"terraform.tfvars.example sets undeclared variables: {sorted(unknown)}"
    required = {name for name, body in cfg.variables.items() if "default" not in body}
    assert required <= set(example), f"example misses required variables {sorted(required - set(example))}"


def test_every_variable_has_type_and_description(cfg):
    for name, body in cfg.variables.items():
        assert body.get("type"), f"var.{name} has no type"
        assert str(body.get("description", "")).strip(), f"var.{name} has no description"


def test_provider_constraints_admit_the_checked_versions(cfg):
    """versions.tf pins ranges that hold the provider versions the schema check ran against
    (infra/tools/provider_schema.py), and no wider: a major version not checked is refused."""
    sys.path.insert(0, str(INFRA / "tools"))
    from provider_schema import PROVIDER_PACKAGES

    required = {}
    for block in cfg.terraform:
        for providers in block.get("required_providers", []):
            for name, spec in providers.items():
                assert name not in required, f"declare the {name} provider once (versions.tf)"
                required[name] = spec
    assert "google" in required
    for name, spec in required.items():
        assert name in PROVIDER_PACKAGES, f"{name}: no schema package checks it (provider_schema.PROVIDER_PACKAGES)"
        assert spec["source"] == f"hashicorp/{name}"
        checked = tuple(int(x) for x in PROVIDER_PACKAGES[name][2].split("."))
        assert _admits(spec["version"], checked), f"{name}: {spec['version']!r} must admit the checked {checked}"
        assert not _admits(spec["version"], (checked[0] + 1, 0, 0)), f"{name}: {spec['version']!r} admits an unchecked major version"
    google = required["google"]["version"]
    assert not _admits(google, (6, 27, 99)), f"{google!r} must require at least 6.28 (GPU fields)"


def _admits(constraint: str, version: tuple) -> bool:
    for part in constraint.split(","):
        match = re.fullmatch(r"\s*(>=|<=|!=|~>|>|<|=)?\s*(\d+(?:\.\d+)*)\s*", part)
        assert match, f"cannot read version constraint {part!r}"
        op, raw = match.group(1) or "=", match.group(2)
        bound = tuple(int(x) for x in raw.split("."))
        padded = bound + (0,) * (3 - len(bound))
        if op == "~>":
            upper = list(bound[:-1]) if len(bound) > 1 else [bound[0] + 1]
            upper[-1] += 1
            upper_t = tuple(upper) + (0,) * (3 - len(upper))
            ok = padded <= version < upper_t
        else:
            ok = {
                ">=": version >= padded, ">": version > padded, "<=": version <= padded,
                "<": version < padded, "=": version == padded, "!=": version != padded,
            }[op]
        if not ok:
            return False
    return True


def test_references_resolve(cfg):
    """A poor man's `terraform validate`: every var./local./resource/data reference exists,
    and counted resources are indexed (x[0], x[*]) while single ones are not."""
    declared_resources = {(t, n) for t, names in cfg.resources.items() for n in names}
    declared_data = {(t, n) for t, names in cfg.data.items() for n in names}
    counted = {(t, n) for t, names in cfg.resources.items() for n, b in names.items() if "count" in b or "for_each" in b}
    problems = []
    for path in TF_FILES:
        for where, value in walk_strings(parsed(path)):
            if where[:1] == ("moved",) and where[-1] == "from":
                # The old address of a moved resource: it must be gone from the config.
                old = re.search(r"(google_[a-z0-9_]+)\.([a-z0-9_]+)", value)
                if not old or (old.group(1), old.group(2)) in declared_resources:
                    problems.append(f"{path.name}: moved from {value}, which is still declared")
                continue
            for name in re.findall(r"\bvar\.(\w+)", value):
                if name not in cfg.variables:
                    problems.append(f"{path.name}: var.{name} undeclared")
            for name in re.findall(r"\blocal\.(\w+)", value):
                if name not in cfg.locals:
                    problems.append(f"{path.name}: local.{name} undefined")
            for dtype, name in re.findall(r"\bdata\.(google_\w+)\.(\w+)", value):
                if (dtype, name) not in declared_data:
                    problems.append(f"{path.name}: data.{dtype}.{name} undefined")
            for m in re.finditer(r"(?<![\w.])(google_[a-z0-9_]+)\.([a-z0-9_]+)(\[)?", value):
                key = (m.group(1), m.group(2))
                if value[max(0, m.start() - 5):m.start()] == "data.":
                    continue
                if key not in declared_resources:
                    problems.append(f"{path.name}: {key[0]}.{key[1]} undefined")
                    continue
                if "depends_on" in where:
                    continue
                iterated = value[max(0, m.start() - 3):m.start()] == "in "  # for x in google_y.z : ...
                if key in counted and not m.group(3) and not iterated:
                    problems.append(f"{path.name}: {key[0]}.{key[1]} has count/for_each but is used unindexed")
                if key not in counted and m.group(3):
                    problems.append(f"{path.name}: {key[0]}.{key[1]} is indexed but has no count/for_each")
    assert not problems, "\n".join(problems)


# ---------------------------------------------------------------- nothing public, least privilege

def test_no_public_principals_anywhere():
    offenders = []
    for path in sorted(INFRA.rglob("*")):
        if path.is_file() and path.suffix in {".tf", ".example", ".json", ".sql", ".sh", ".tfvars"}:
            content = path.read_text()
            for principal in PUBLIC_PRINCIPALS:
                if principal in content:
                    offenders.append(f"{path.relative_to(REPO)} mentions {principal}")
    assert not offenders, offenders


def test_iam_members_are_never_public(cfg):
    for rtype, instances in cfg.resources.items():
        if "_iam_" not in rtype:
            continue
        for name, body in instances.items():
            member = cfg.resolve(body.get("member", ""))
            assert member not in PUBLIC_PRINCIPALS, f"{rtype}.{name} grants {member}"
            if member == "${each.value}":
                source = body.get("for_each", "")
                var = re.search(r"var\.(\w+)", source)
                assert var, f"{rtype}.{name}: for_each must come from a variable"
                assert not set(cfg.default(var.group(1))) & set(PUBLIC_PRINCIPALS)


def test_invoker_members_variable_refuses_public_principals(cfg):
    validation = first(cfg.variables["invoker_members"]["validation"])
    pattern = re.search(r'regex\("([^"]+)"', validation["condition"]).group(1)
    for principal in PUBLIC_PRINCIPALS:
        assert re.search(pattern, principal), f"validation pattern {pattern!r} lets {principal} through"
    assert not re.search(pattern, "user:someone@example.com")


def _validation_pattern(cfg, name: str) -> re.Pattern:
    validation = first(cfg.variables[name]["validation"])
    pattern = re.search(rf'can\(regex\("([^"]+)", var\.{name}\)\)', validation["condition"])
    assert pattern, f"var.{name} should be validated with can(regex(...))"
    return re.compile(pattern.group(1))


@pytest.mark.parametrize("name,good,bad", [
    # Cloud Run service names may not end in a dash; service-account ids (6-30 characters)
    # are built as SERVICE-run / SERVICE-push / SERVICE-build.
    ("service_name", ["bucketeye", "ab", "img-2", "a" * 20], ["bucketeye-", "Bucketeye", "1eye", "a", "a" * 21, "b_eye"]),
    # BigQuery datasets: letters, digits and underscores.
    ("dataset_id", ["bucketeye", "Bucket_Eye_2", "_results"], ["bucketeye-results", "bucket eye", "", "a.b"]),
])
def test_name_validations(cfg, name, good, bad):
    pattern = _validation_pattern(cfg, name)
    assert pattern.fullmatch(cfg.default(name))
    for value in good:
        assert pattern.search(value), f"var.{name} refuses {value!r}"
    for value in bad:
        assert not pattern.search(value), f"var.{name} lets {value!r} through"


def test_cloud_run_invoker_iam_is_not_disabled(cfg):
    _, service = cfg.one("google_cloud_run_v2_service")
    assert service.get("invoker_iam_disabled") in (None, False)
    assert not cfg.of_type("google_cloud_run_v2_service_iam_binding")
    assert not cfg.of_type("google_cloud_run_v2_service_iam_policy")


def test_no_authoritative_iam(cfg):
    authoritative = [f"{t}.{n}" for t, names in cfg.resources.items() if t.endswith(("_iam_binding", "_iam_policy")) for n in names]
    assert not authoritative, f"authoritative IAM would remove grants made elsewhere: {authoritative}"


def test_project_level_grants_only_where_no_resource_level_exists(cfg):
    """The Eventarc variant's two roles, and the build account's log writing."""
    eventarc = {"roles/eventarc.eventReceiver", "roles/pubsub.publisher"}
    for name, body in cfg.of_type("google_project_iam_member").items():
        if body["member"] == "${local.build_member}":
            assert body["role"] == "roles/logging.logWriter", f"the build account's only project role is log writing ({name})"
            continue
        assert body["role"] in eventarc, f"project-level {body['role']} ({name}); grant it on the resource"
        assert "use_eventarc" in str(body.get("count", "")), f"{name} must exist only with the Eventarc variant"


def test_build_account_has_exactly_what_a_build_needs(cfg):
    assert cfg.locals["build_member"] == "${google_service_account.build.member}"
    grants = sorted(
        (rtype, body["role"])
        for rtype, instances in cfg.resources.items() if rtype.endswith("_iam_member")
        for body in instances.values() if body.get("member") == "${local.build_member}"
    )
    assert grants == [
        ("google_artifact_registry_repository_iam_member", "roles/artifactregistry.writer"),
        ("google_project_iam_member", "roles/logging.logWriter"),
        ("google_storage_bucket_iam_member", "roles/storage.objectViewer"),
    ]
    # A build run as a chosen account must log to Cloud Logging only (or a bucket of its own).
    assert re.search(r"^  logging: CLOUD_LOGGING_ONLY$", (REPO / "cloudbuild.yaml").read_text(), re.M)


# ---------------------------------------------------------------- Cloud Run GPU service

@pytest.fixture(scope="module")
def service(cfg):
    return cfg.one("google_cloud_run_v2_service")[1]


@pytest.fixture(scope="module")
def container(service):
    return first(first(service["template"])["containers"])


def _memory_gib(value: str) -> float:
    match = re.fullmatch(r"(\d+(?:\.\d+)?)(Gi|Mi|G|M)", value)
    assert match, f"cannot read memory {value!r}"
    number, unit = float(match.group(1)), match.group(2)
    return {"Gi": number, "Mi": number / 1024, "G": number * 1e9 / 2**30, "M": number * 1e6 / 2**30}[unit]


def test_gpu_settings(cfg, service, container):
    template = first(service["template"])
    assert first(template["node_selector"])["accelerator"] == "nvidia-l4"
    assert "gpu_zonal_redundancy_disabled" in template
    zonal = template["gpu_zonal_redundancy_disabled"]
    assert zonal == "${var.gpu_zonal_redundancy_disabled}", "gpu_zonal_redundancy_disabled should be a variable"
    assert cfg.variables["gpu_zonal_redundancy_disabled"]["type"] == "bool"

    resources = first(container["resources"])
    limits = resources["limits"]
    assert str(limits["nvidia.com/gpu"]) == "1"
    assert float(cfg.resolve(limits["cpu"])) >= 4
    assert _memory_gib(cfg.resolve(limits["memory"])) >= 16
    assert resources["cpu_idle"] is False


def test_scaling_and_concurrency_are_variables(cfg, service):
    template = first(service["template"])
    assert re.fullmatch(r"\$\{var\.\w+\}", str(template["max_instance_request_concurrency"]))
    scaling = first(template["scaling"])
    for key in ("min_instance_count", "max_instance_count"):
        assert re.fullmatch(r"\$\{var\.\w+\}", str(scaling[key])), f"scaling.{key} should be a variable"
    assert cfg.default("max_instance_count") >= 1
    assert cfg.default("min_instance_count") >= 0


def test_startup_probe_uses_health_route(container):
    assert not routes()["HEALTH_ROUTE"].endswith("z"), "Cloud Run reserves some paths ending in z"
    probe = first(container["startup_probe"])
    assert first(probe["http_get"])["path"] == routes()["HEALTH_ROUTE"]
    if "liveness_probe" in container:
        assert first(first(container["liveness_probe"])["http_get"])["path"] == routes()["HEALTH_ROUTE"]


def test_service_env_vars_are_settings(cfg, container):
    settings = settings_names()
    allowed = settings | PLATFORM_ENV

    static = [env["name"] for env in container.get("env", [])]
    assert set(static) <= allowed, f"unknown env vars {sorted(set(static) - allowed)}"
    assert "PORT" not in static, "Cloud Run sets PORT itself"

    dynamic = dynamic_blocks(container, "env")
    assert len(dynamic) <= 1
    if dynamic:
        assert dynamic[0]["for_each"] == "${local.service_env}"
        assert "local.service_env_fixed" in cfg.locals["service_env"]
        assert "var.settings_overrides" in cfg.locals["service_env"]

        fixed = set(cfg.locals["service_env_fixed"])
        overridable = set(cfg.locals["overridable_settings"])
        assert fixed <= settings, f"not in SETTINGS: {sorted(fixed - settings)}"
        assert overridable <= settings, f"not in SETTINGS: {sorted(overridable - settings)}"
        assert not fixed & overridable, f"set twice: {sorted(fixed & overridable)}"
        # Every setting the code reads can be configured on the service.
        missing = settings - fixed - overridable - set(static)
        assert not missing, f"SETTINGS not configurable from Terraform: {sorted(missing)}"
        # The override map is checked against that list before apply.
        precondition = first(first(cfg.one("google_cloud_run_v2_service")[1]["lifecycle"])["precondition"])
        assert "local.overridable_settings" in precondition["condition"]
        assert "var.settings_overrides" in precondition["condition"]


def test_allowed_buckets_is_the_uploads_bucket(cfg):
    fixed = cfg.locals["service_env_fixed"]
    assert "local.allowed_buckets" in fixed["ALLOWED_BUCKETS"]
    assert "google_storage_bucket.uploads.name" in cfg.locals["allowed_buckets"]
    assert "var.readable_buckets" in cfg.locals["allowed_buckets"]
    # ...and the runtime identity can read exactly those buckets.
    grants = cfg.of_type("google_storage_bucket_iam_member")
    readers = {n: b for n, b in grants.items() if b["role"] == "roles/storage.objectViewer"}
    runtime = {n: b for n, b in readers.items() if b["member"] == "${google_service_account.runtime.member}"}
    assert {b["bucket"] for b in runtime.values()} == {"${google_storage_bucket.uploads.name}", "${each.value}"}
    # The only other readers: the SQL connection, for the object table over the uploads
    # bucket (test_sql_connection_may_only_invoke_and_list_uploads), and the build account,
    # of its own source bucket (test_build_account_has_exactly_what_a_build_needs).
    others = {n: b for n, b in readers.items() if n not in runtime and b["member"] != "${local.build_member}"}
    assert all(b["member"] == sql_connection_member(cfg) for b in others.values()), others


def test_model_cache_dir_matches_dockerfile(cfg):
    default = cfg.default("model_cache_dir")
    for dockerfile in ("Dockerfile", "Dockerfile.cpu"):
        content = (REPO / dockerfile).read_text()
        assert re.search(rf"MODEL_CACHE_DIR={re.escape(default)}\b", content), f"{dockerfile} must set MODEL_CACHE_DIR={default}"


# ---------------------------------------------------------------- delivery: push, retries, dead letters

def _push_subscriptions(cfg):
    return {n: b for n, b in cfg.of_type("google_pubsub_subscription").items() if "push_config" in b}


DELIVERIES = "${local.deliveries}"


def delivery_sources(cfg) -> dict:
    """local.delivery_sources: per source topic, its topic, route and dead-letter topic."""
    sources = cfg.locals["delivery_sources"]
    assert set(sources) == {"uploads", "requests"}
    return sources


def test_push_endpoints_end_with_served_routes(cfg):
    served = {routes()["STORAGE_ROUTE"], routes()["PUBSUB_ROUTE"], routes()["HTTP_ROUTE"]}
    pushes = _push_subscriptions(cfg)
    assert set(pushes) == {"push"}, "one push subscription resource, an instance per source"
    push = pushes["push"]
    assert push["for_each"] == DELIVERIES
    assert first(push["push_config"])["push_endpoint"] == "${google_cloud_run_v2_service.service.uri}${each.value.route}"
    assert push["topic"] == "${each.value.topic}"
    sources = delivery_sources(cfg)
    for source, delivery in sources.items():
        assert delivery["route"] in served, f"{source} pushes to {delivery['route']!r}, which the server does not serve"
    # Which route each source goes to.
    assert ref_name(sources["uploads"]["topic"], "google_pubsub_topic") == "uploads"
    assert sources["uploads"]["route"] == routes()["STORAGE_ROUTE"]
    assert ref_name(sources["requests"]["topic"], "google_pubsub_topic") == "requests"
    assert sources["requests"]["route"] == routes()["PUBSUB_ROUTE"]
    for trigger in cfg.of_type("google_eventarc_trigger").values():
        run = first(first(trigger["destination"])["cloud_run_service"])
        assert run["path"] == routes()["STORAGE_ROUTE"]


def test_push_is_authenticated_as_the_invoker(cfg):
    for name, body in _push_subscriptions(cfg).items():
        oidc = first(first(body["push_config"])["oidc_token"])
        assert "google_service_account.invoker.email" in oidc["service_account_email"], name
    grants = cfg.of_type("google_cloud_run_v2_service_iam_member")
    assert any(b["member"] == "${google_service_account.invoker.member}" and b["role"] == "roles/run.invoker" for b in grants.values())
    token = cfg.of_type("google_service_account_iam_member")
    assert any(b["role"] == "roles/iam.serviceAccountTokenCreator" and "pubsub_service_agent" in b["member"] for b in token.values())


def test_push_subscriptions_retry_and_dead_letter(cfg):
    for name, body in _push_subscriptions(cfg).items():
        retry = first(body.get("retry_policy", [{}]))
        assert retry.get("minimum_backoff") and retry.get("maximum_backoff"), f"{name}: exponential backoff retry policy"
        dead_letter = first(body.get("dead_letter_policy", [{}]))
        assert dead_letter.get("dead_letter_topic"), f"{name}: no dead-letter topic"
        attempts = cfg.resolve(dead_letter["max_delivery_attempts"])
        assert 5 <= attempts <= 100, f"{name}: max_delivery_attempts {attempts}"
        assert first(body["expiration_policy"])["ttl"] == "", f"{name} must never expire"


def test_every_dead_letter_topic_has_a_subscription(cfg):
    """Each source's push subscription dead-letters to its own topic, which has a pull
    subscription, and a source exists exactly when its topics do."""
    topics = cfg.of_type("google_pubsub_topic")
    subscriptions = cfg.of_type("google_pubsub_subscription")
    assert set(subscriptions) == {"push", "dead_letter"}
    push, parked = subscriptions["push"], subscriptions["dead_letter"]
    assert push["for_each"] == parked["for_each"] == DELIVERIES
    assert first(push["dead_letter_policy"])["dead_letter_topic"] == "${each.value.dead_letter_topic_id}"
    assert parked["topic"] == "${each.value.dead_letter_topic_id}", "the dead-letter subscription reads the dead-letter topic"
    for source, delivery in delivery_sources(cfg).items():
        topic = ref_name(delivery["topic"], "google_pubsub_topic")
        dead_letter = ref_name(delivery["dead_letter_topic_id"], "google_pubsub_topic")
        assert dead_letter == ref_name(delivery["dead_letter_topic_name"], "google_pubsub_topic") == f"{topic}_dead_letter"
        assert topics[topic].get("count") == topics[dead_letter].get("count"), f"{source}: its topics exist together"
        if "count" in topics[topic]:
            assert "local.use_notification" in topics[topic]["count"]
    # local.deliveries keeps the uploads source exactly when its (counted) topics exist.
    assert cfg.locals["deliveries"] == (
        '${{for source, delivery in local.delivery_sources : source => delivery if source != "uploads" || local.use_notification}}'
    )


def test_pubsub_agent_can_dead_letter(cfg):
    publisher = cfg.of_type("google_pubsub_topic_iam_member")["dead_letter_publisher"]
    assert publisher["for_each"] == DELIVERIES
    assert publisher["topic"] == "${each.value.dead_letter_topic_name}"
    assert publisher["role"] == "roles/pubsub.publisher" and "pubsub_service_agent" in publisher["member"]
    subscriber = cfg.of_type("google_pubsub_subscription_iam_member")["dead_letter_subscriber"]
    assert subscriber["for_each"] == DELIVERIES
    assert subscriber["subscription"] == "${google_pubsub_subscription.push[each.key].name}"
    assert subscriber["role"] == "roles/pubsub.subscriber" and "pubsub_service_agent" in subscriber["member"]
    assert "${google_pubsub_topic_iam_member.dead_letter_publisher}" in _push_subscriptions(cfg)["push"]["depends_on"]


def test_local_stack_delivery_file_matches_the_deployed_topology(cfg):
    """infra/delivery.json is what the local stack builds on the Pub/Sub emulator: the same
    names, routes, ack deadlines, retry and dead-letter policy and SKIP_PREFIXES as here."""
    spec = json.loads((INFRA / "delivery.json").read_text())
    service, push = spec["service_name"], spec["push"]
    assert service == cfg.default("service_name")
    topics = {cfg.resolve(b["name"]) for b in cfg.of_type("google_pubsub_topic").values()}
    sources = cfg.locals["delivery_sources"]
    assert sorted(sources) == sorted(spec["sources"])
    for source, item in spec["sources"].items():
        assert {f"{service}-{source}", f"{service}-{source}-dead-letter"} <= topics, source
        assert sources[source]["route"] == item["route"], source
    subscriptions = cfg.of_type("google_pubsub_subscription")
    sub, keep = subscriptions["push"], subscriptions["dead_letter"]
    assert cfg.resolve(sub["name"]) == f"{service}-${{each.key}}-push"
    assert cfg.resolve(keep["name"]) == f"{service}-${{each.key}}-dead-letter"
    assert first(sub["push_config"])["push_endpoint"].endswith("${each.value.route}")
    assert cfg.resolve(sub["ack_deadline_seconds"]) == push["ack_deadline_seconds"]
    assert cfg.resolve(sub["message_retention_duration"]) == f"{push['message_retention_seconds']}s"
    retry = first(sub["retry_policy"])
    assert cfg.resolve(retry["minimum_backoff"]) == f"{push['retry_minimum_backoff_seconds']}s"
    assert cfg.resolve(retry["maximum_backoff"]) == f"{push['retry_maximum_backoff_seconds']}s"
    assert cfg.resolve(first(sub["dead_letter_policy"])["max_delivery_attempts"]) == push["max_delivery_attempts"]
    assert keep["ack_deadline_seconds"] == spec["dead_letter"]["ack_deadline_seconds"]
    assert cfg.default("dead_letter_retention_days") == spec["dead_letter"]["retention_days"]
    assert cfg.default("skip_prefixes") == spec["skip_prefixes"]


def test_bucket_notification_feeds_the_uploads_topic(cfg):
    _, notification = cfg.one("google_storage_notification")
    assert notification["payload_format"] == "JSON_API_V1"
    assert notification["event_types"] == ["OBJECT_FINALIZE"]
    assert ref_name(notification["topic"], "google_pubsub_topic") == "uploads"
    publishers = cfg.of_type("google_pubsub_topic_iam_member").values()
    assert any("gcs_service_agent" in b["member"] and ref_name(b["topic"], "google_pubsub_topic") == "uploads" for b in publishers)


def test_eventarc_variant_is_optional_and_documented(cfg):
    trigger_name, trigger = cfg.one("google_eventarc_trigger")
    assert "use_eventarc" in str(trigger.get("count"))
    description = cfg.variables["upload_trigger"]["description"].lower()
    assert "dead-letter" in description and "eventarc" in description
    _, notification = cfg.one("google_storage_notification")
    assert "use_notification" in str(notification.get("count")), "the two upload paths must not both run"


@pytest.mark.parametrize("name", ["uploads", "build_source"])
def test_buckets_are_private(cfg, name):
    bucket = cfg.of_type("google_storage_bucket")[name]
    assert bucket["uniform_bucket_level_access"] is True
    assert bucket["public_access_prevention"] == "enforced"


def test_artifact_registry_has_cleanup_policies(cfg):
    _, repo = cfg.one("google_artifact_registry_repository")
    assert repo["format"] == "DOCKER"
    policies = repo.get("cleanup_policies", [])
    assert any(p["action"] == "DELETE" for p in policies)
    assert any(p["action"] == "KEEP" for p in policies)
    assert repo.get("cleanup_policy_dry_run") is False


# ---------------------------------------------------------------- logging, BigQuery, monitoring

def test_sink_filter_and_options(cfg):
    _, sink = cfg.one("google_logging_project_sink")
    assert sink["filter"] == "${local.results_filter}"
    flt = text(cfg.locals["results_filter"])
    assert f'jsonPayload.app="{app_name()}"' in flt
    assert 'resource.type="cloud_run_revision"' in flt
    assert 'resource.labels.service_name="${var.service_name}"' in flt
    assert 'logName="${local.stdout_log_name}"' in flt
    assert cfg.locals["stdout_log_name"] == "projects/${var.project_id}/logs/run.googleapis.com%2Fstdout"
    assert sink["unique_writer_identity"] is True
    assert first(sink["bigquery_options"])["use_partitioned_tables"] is True
    assert "google_bigquery_dataset.results.dataset_id" in sink["destination"]
    assert cfg.locals["app_name"] == app_name()


def test_sink_writer_has_data_editor_on_the_dataset_only(cfg):
    grants = [
        (t, n, b) for t, names in cfg.resources.items() if "_iam_" in t
        for n, b in names.items() if "writer_identity" in str(b.get("member", ""))
    ]
    assert len(grants) == 1, f"sink writer identity grants: {[(t, n) for t, n, _ in grants]}"
    rtype, _, grant = grants[0]
    assert rtype == "google_bigquery_dataset_iam_member"
    assert grant["role"] == "roles/bigquery.dataEditor"
    assert grant["dataset_id"] == "${google_bigquery_dataset.results.dataset_id}"
    assert grant["member"] == "${google_logging_project_sink.results.writer_identity}"


def test_sink_table_is_precreated_and_partitioned(cfg):
    tables = cfg.of_type("google_bigquery_table")
    stdout = tables["stdout"]
    assert cfg.resolve(stdout["table_id"]) == "${local.sink_table_id}"
    assert cfg.locals["sink_table_id"] == "run_googleapis_com_stdout"
    partitioning = first(stdout["time_partitioning"])
    assert partitioning["field"] == "timestamp" and partitioning["type"] == "DAY"
    assert "schema/run_googleapis_com_stdout.json" in stdout["schema"]
    assert "schema" in str(first(stdout["lifecycle"])["ignore_changes"]), "Logging adds columns: ignore schema drift"
    assert "view" not in stdout


def test_views_are_templated_from_infra_sql(cfg):
    tables = cfg.of_type("google_bigquery_table")
    for name in ("results", "predictions"):
        view = first(tables[name]["view"])
        assert view["use_legacy_sql"] is False
        match = re.search(r'templatefile\("\$\{path\.module\}/sql/(\w+\.sql)", \{(.*)\}\)', view["query"], re.S)
        assert match, f"view {name} must use templatefile() on infra/sql"
        sql_file, args = match.group(1), match.group(2)
        provided = set(re.findall(r"(\w+)\s*=", args))
        used = set(re.findall(r"\$\{(\w+)\}", (INFRA / "sql" / sql_file).read_text()))
        assert used <= provided, f"{sql_file} uses {sorted(used - provided)} which {name} does not pass"


def _schema_paths(fields, prefix=""):
    out = {}
    for f in fields:
        path = prefix + f["name"].lower()
        out[path] = (f["type"], f.get("mode", "NULLABLE"))
        if f["type"] in ("RECORD", "STRUCT"):
            out.update(_schema_paths(f["fields"], path + "."))
    return out


@cache
def table_schema() -> dict:
    return _schema_paths(json.loads(SCHEMA_FILE.read_text()))


def test_sql_references_exported_columns():
    schema = table_schema()
    sql = (INFRA / "sql" / "results.sql").read_text()
    body = "\n".join(line.split("--")[0] for line in sql.splitlines())
    for path in re.findall(r"\b((?:jsonPayload|resource)(?:\.\w+)+)", body):
        assert path.lower() in schema, f"results.sql reads {path}, not in the table schema"
    assert f"jsonPayload.app = '{app_name()}'" in body
    assert re.search(r"PARTITION BY jsonPayload\.result_id", body), "results must be de-duplicated on result_id"
    predictions = (INFRA / "sql" / "predictions.sql").read_text()
    assert "UNNEST(r.predictions)" in predictions


def test_log_metrics(cfg):
    metrics = cfg.of_type("google_logging_metric")
    counts = [m for m in metrics.values() if first(m["metric_descriptor"])["value_type"] == "INT64"]
    assert counts and all(m["filter"] == "${local.results_filter}" for m in counts)
    extractors = counts[0]["label_extractors"]
    assert extractors["status"] == "EXTRACT(jsonPayload.status)"
    assert extractors["error_code"] == "EXTRACT(jsonPayload.error.code)"
    latency = [m for m in metrics.values() if first(m["metric_descriptor"])["value_type"] == "DISTRIBUTION"]
    assert latency and latency[0]["value_extractor"] == "EXTRACT(jsonPayload.timings_ms.total)"
    assert "local.results_filter" in latency[0]["filter"]


def test_alerts_on_log_based_metrics_wait_until_the_metric_is_usable(cfg):
    """A new log-based metric is not usable in an alert policy for minutes: every policy
    on one depends on a time_sleep that is re-run when that metric is replaced."""
    sleeps = cfg.resources.get("time_sleep", {})
    checked = 0
    for name, policy in cfg.of_type("google_monitoring_alert_policy").items():
        metrics = set(re.findall(r"google_logging_metric\.(\w+)", json.dumps(policy)))
        if "local.results_metric_type" in json.dumps(policy):
            metrics |= set(re.findall(r"google_logging_metric\.(\w+)", cfg.locals["results_metric_type"]))
        if not metrics:
            continue
        checked += 1
        waits = [ref_name(d, "time_sleep") for d in policy.get("depends_on", []) if "time_sleep." in d]
        assert waits, f"alert policy {name} uses log-based metrics {sorted(metrics)} but waits for none"
        triggered = {m for w in waits for m in re.findall(r"google_logging_metric\.(\w+)", json.dumps(sleeps[w]["triggers"]))}
        assert metrics <= triggered, f"{name}: {sorted(metrics - triggered)} not among the sleep's triggers"
        assert re.fullmatch(r"\d+s", sleeps[waits[0]]["create_duration"])
    assert checked >= 1


def test_grants_to_service_agents_wait_for_them(cfg):
    """The Pub/Sub agent is created explicitly (grants reference it, so they follow it);
    grants to the BigQuery connection's account wait until IAM knows it."""
    assert cfg.locals["pubsub_service_agent"] == "${google_project_service_identity.pubsub.member}"
    identity = cfg.of_type("google_project_service_identity")["pubsub"]
    assert identity["service"] == "pubsub.googleapis.com" and identity["provider"].strip("${}") == "google-beta"
    waiting = 0
    for rtype, instances in cfg.resources.items():
        for name, body in instances.items():
            if rtype.endswith("_iam_member") and body.get("member") == sql_connection_member(cfg):
                assert "${time_sleep.sql_connection_account}" in body.get("depends_on", []), f"{rtype}.{name} must wait"
                waiting += 1
    assert waiting == 2


def test_alert_policies(cfg):
    policies = cfg.of_type("google_monitoring_alert_policy")
    filters = [
        first(c["condition_threshold"])["filter"]
        for p in policies.values() for c in p.get("conditions", [])
    ]
    assert any("local.results_metric_type" in f and 'status = "error"' in f for f in filters), "error-rate alert"
    dead_letter = [
        dyn for p in policies.values() for dyn in dynamic_blocks(p, "conditions")
    ]
    assert dead_letter, "dead-letter backlog alert"
    threshold = first(first(dead_letter[0]["content"])["condition_threshold"])
    assert "subscription/num_undelivered_messages" in threshold["filter"]
    assert dead_letter[0]["for_each"] == "${local.dead_letter_subscriptions}"
    # ...covering every dead-letter subscription.
    assert cfg.locals["dead_letter_subscriptions"] == (
        "${{for source, subscription in google_pubsub_subscription.dead_letter : source => subscription.name}}"
    )


def test_outputs(cfg):
    for name in ("service_url", "uploads_bucket", "topics", "dataset", "example_queries"):
        assert name in cfg.outputs, f"output {name} missing"
        assert cfg.outputs[name].get("description")


# ---------------------------------------------------------------- classify from SQL (remote_function.tf)

REMOTE_FUNCTIONS = {"classify": [("uri", "STRING")], "classify_top_k": [("uri", "STRING"), ("top_k", "INT64")]}
FEATURE_COUNT = "${local.use_remote_function ? 1 : 0}"


def sql_connection_member(cfg) -> str:
    """The IAM member of the Cloud resource connection's service account."""
    name, _ = cfg.one("google_bigquery_connection")
    return f"serviceAccount:${{google_bigquery_connection.{name}[0].cloud_resource[0].service_account_id}}"


def _type_kind(data_type: str) -> str:
    """typeKind of a routine's data_type / return_type, written as jsonencode({typeKind = "X"})."""
    match = re.fullmatch(r'\$\{jsonencode\(\{\s*typeKind\s*=\s*"(\w+)"\s*\}\)\}', data_type)
    assert match, f"write types as jsonencode({{ typeKind = \"...\" }}), not {data_type!r}"
    return match.group(1)


def _local_or_value(cfg, value):
    """A value written as ${local.x} replaced by the local's definition."""
    match = re.fullmatch(r"\$\{local\.(\w+)\}", value) if isinstance(value, str) else None
    return cfg.locals[match.group(1)] if match else value


def _sql_connection_grants(cfg) -> list[tuple[str, str, dict]]:
    return [
        (rtype, name, body) for rtype, names in cfg.resources.items() if "_iam_" in rtype
        for name, body in names.items() if "google_bigquery_connection" in str(body.get("member", ""))
    ]


def test_remote_function_is_optional(cfg):
    assert cfg.variables["enable_remote_function"]["type"] == "bool"
    assert cfg.default("enable_remote_function") is True
    assert cfg.locals["use_remote_function"] == "${var.enable_remote_function}"
    feature = [("google_bigquery_connection", n) for n in cfg.of_type("google_bigquery_connection")]
    feature += [("google_bigquery_table", "uploads_objects")]
    feature += [(t, n) for t, n, _ in _sql_connection_grants(cfg)]
    for rtype, name in feature:
        assert cfg.resources[rtype][name].get("count") == FEATURE_COUNT, f"{rtype}.{name} must exist only with enable_remote_function"
    _, routines = cfg.one("google_bigquery_routine")
    assert routines["for_each"] == (
        "${{for name, function in local.remote_functions : name => function if local.use_remote_function}}"
    ), "the routines must exist only with enable_remote_function"
    assert cfg.where[("google_bigquery_table", "uploads_objects")] == "remote_function.tf"


def test_sql_connection_is_a_cloud_resource_connection_in_the_dataset_location(cfg):
    _, connection = cfg.one("google_bigquery_connection")
    assert first(connection["cloud_resource"]) == {}
    _, dataset = cfg.one("google_bigquery_dataset")
    assert connection["location"] == dataset["location"] == "${local.bigquery_location}"
    assert '"bigqueryconnection.googleapis.com"' in cfg.locals["apis"], "enable the BigQuery Connection API"


def test_sql_connection_may_only_invoke_and_list_uploads(cfg):
    """Its account may call the service and read the uploads bucket's objects: nothing else."""
    grants = _sql_connection_grants(cfg)
    assert sorted((t, b["role"]) for t, _, b in grants) == [
        ("google_cloud_run_v2_service_iam_member", "roles/run.invoker"),
        ("google_storage_bucket_iam_member", "roles/storage.objectViewer"),
    ], f"the SQL connection's grants: {[(t, n) for t, n, _ in grants]}"
    for rtype, name, grant in grants:
        assert grant["member"] == sql_connection_member(cfg), f"{rtype}.{name}"
        if rtype == "google_cloud_run_v2_service_iam_member":
            assert grant["name"] == "${google_cloud_run_v2_service.service.name}"
            assert grant["location"] == "${google_cloud_run_v2_service.service.location}"
        else:
            assert grant["bucket"] == "${google_storage_bucket.uploads.name}", "the uploads bucket only"


def test_run_invokers_are_the_push_account_the_listed_callers_and_the_sql_connection(cfg):
    invokers = cfg.of_type("google_cloud_run_v2_service_iam_member")
    assert all(b["role"] == "roles/run.invoker" for b in invokers.values())
    assert all(b["name"] == "${google_cloud_run_v2_service.service.name}" for b in invokers.values())
    members = sorted(b["member"] for b in invokers.values())
    assert members == sorted(["${google_service_account.invoker.member}", "${each.value}", sql_connection_member(cfg)])
    listed = next(b for b in invokers.values() if b["member"] == "${each.value}")
    assert listed["for_each"] == "${toset(var.invoker_members)}"
    # Nowhere else: no project-wide invoker role, no Cloud Run v1 IAM.
    for rtype, names in cfg.resources.items():
        if rtype.startswith(("google_project_iam", "google_folder_iam", "google_organization_iam")):
            assert all(b.get("role") != "roles/run.invoker" for b in names.values()), f"{rtype} grants run.invoker"
        assert not rtype.startswith("google_cloud_run_service_iam"), f"{rtype}: grant on the v2 service"


def test_remote_functions_call_the_served_http_route(cfg):
    """One routine resource, one instance per local.remote_functions entry."""
    functions = cfg.locals["remote_functions"]
    assert set(functions) == set(REMOTE_FUNCTIONS)
    for name, function in functions.items():
        assert [(a["name"], a["type"]) for a in function["arguments"]] == REMOTE_FUNCTIONS[name]
    connection_name, _ = cfg.one("google_bigquery_connection")
    _, routine = cfg.one("google_bigquery_routine")
    assert routine["routine_id"] == "${each.key}"
    assert routine["dataset_id"] == "${google_bigquery_dataset.results.dataset_id}"
    assert routine["routine_type"] == "SCALAR_FUNCTION"
    assert routine["definition_body"] == "" and not routine.get("language"), "a remote function has no body or language"
    (arguments,) = dynamic_blocks(routine, "arguments")
    assert arguments["for_each"] == "${each.value.arguments}"
    content = first(arguments["content"])
    assert content["name"] == "${arguments.value.name}"
    assert re.fullmatch(r"\$\{jsonencode\(\{\s*typeKind\s*=\s*arguments\.value\.type\s*\}\)\}", content["data_type"])
    assert _type_kind(routine["return_type"]) == "JSON"

    options = first(routine["remote_function_options"])
    endpoint = _local_or_value(cfg, options["endpoint"])
    service_uri = "${google_cloud_run_v2_service.service.uri}"
    assert endpoint.startswith(service_uri), "the remote functions must call the service"
    assert endpoint[len(service_uri):] == routes()["HTTP_ROUTE"], f"they call {endpoint!r}, not the HTTP route"
    assert options["connection"] == f"${{google_bigquery_connection.{connection_name}[0].name}}"
    assert options["max_batching_rows"] == "${tostring(var.remote_function_max_batching_rows)}"
    assert _local_or_value(cfg, options["user_defined_context"]) == {"top_k": "${tostring(var.top_k)}"}
    assert "google_cloud_run_v2_service_iam_member" in str(routine.get("depends_on")), "create after the invoker grant"

    # The route's handler speaks the protocol, and accepts the default top_k sent in the context.
    handler = remote_function_handler()
    assert {"is_remote_call", "parse", "answer"} <= handler["functions"]
    assert 1 <= cfg.default("top_k") <= handler["MAX_TOP_K"]


def test_max_batching_rows_fits_the_service_queue(cfg):
    """The handler refuses a request with more calls than BATCH_QUEUE_SIZE (which fails the query)."""
    rows = cfg.default("remote_function_max_batching_rows")
    assert 1 <= rows <= int(setting_default("BATCH_QUEUE_SIZE")), "the default must fit the code's default queue"
    assert rows <= cfg.default("batch_queue_size")
    assert cfg.locals["service_env_fixed"]["BATCH_QUEUE_SIZE"] == "${tostring(var.batch_queue_size)}"
    validation = first(cfg.variables["remote_function_max_batching_rows"]["validation"])["condition"]
    assert "var.remote_function_max_batching_rows >= 1" in validation, "0 lets BigQuery pick any batch size"
    # ...and a plan with a larger value is refused.
    _, connection = cfg.one("google_bigquery_connection")
    preconditions = first(connection["lifecycle"])["precondition"]
    assert any(
        p["condition"] == "${var.remote_function_max_batching_rows <= var.batch_queue_size}" for p in preconditions
    ), "a precondition must tie remote_function_max_batching_rows to batch_queue_size"
    top_k = next(p["condition"] for p in preconditions if "var.top_k" in p["condition"])
    assert f"var.top_k <= {remote_function_handler()['MAX_TOP_K']}" in top_k


def test_object_table_lists_the_uploads_bucket(cfg):
    table = cfg.of_type("google_bigquery_table")["uploads_objects"]
    assert table["table_id"] == "uploads_objects"
    assert table["dataset_id"] == "${google_bigquery_dataset.results.dataset_id}"
    assert "schema" not in table, "an object table's schema is fixed by BigQuery"
    external = first(table["external_data_configuration"])
    assert external["object_metadata"] == "SIMPLE"
    assert "source_format" not in external
    assert external["autodetect"] is False
    assert external["source_uris"] == ["gs://${google_storage_bucket.uploads.name}/*"]
    connection_name, _ = cfg.one("google_bigquery_connection")
    assert external["connection_id"] == f"${{google_bigquery_connection.{connection_name}[0].name}}"
    assert external["metadata_cache_mode"] == "AUTOMATIC"
    staleness = _local_or_value(cfg, table["max_staleness"])
    assert "var.object_table_max_staleness_minutes" in staleness, "metadata caching needs max_staleness"
    assert "google_storage_bucket_iam_member" in str(table.get("depends_on"))
    # The service may read every object the table lists (ALLOWED_BUCKETS).
    assert "google_storage_bucket.uploads.name" in cfg.locals["allowed_buckets"]


def test_remote_function_outputs(cfg):
    for name in ("remote_function", "remote_function_queries"):
        assert cfg.outputs[name].get("description"), f"output {name} missing"
    names = cfg.outputs["remote_function"]["value"]
    for key in ("classify", "classify_top_k", "object_table", "connection", "service_account"):
        assert f"{key} =" in names, f"output remote_function lacks {key}"
    queries = cfg.outputs["remote_function_queries"]["value"]
    for key in ("classify_table", "top_labels", "unnest_labels", "classify_unclassified", "model_disagreements"):
        assert f"{key} =" in queries, f"output remote_function_queries lacks {key}"
    for needle in ("local.sql_classify", "local.sql_classify_top_k", "local.sql_object_table", "local.sql_results",
                   "JSON_QUERY_ARRAY(labels, '$.labels')", "JSON_VALUE(labels, '$.top_label')"):
        assert needle in queries, f"the example queries should use {needle}"


def test_sql_templates_get_their_variables():
    """Every templatefile() of infra/sql passes each variable its SQL uses."""
    calls = 0
    for path in TF_FILES:
        for _, value in walk_strings(parsed(path)):
            for match in re.finditer(r'templatefile\("\$\{path\.module\}/sql/(\w+\.sql)", \{(.*?)\}\)', value, re.S):
                calls += 1
                sql_file, args = match.group(1), match.group(2)
                provided = set(re.findall(r"(\w+)\s*=", args))
                used = set(re.findall(r"\$\{(\w+)\}", (INFRA / "sql" / sql_file).read_text()))
                assert used <= provided, f"{path.name}: {sql_file} uses {sorted(used - provided)}, not passed"
    assert calls >= 3


# ---------------------------------------------------------------- schema file vs the result record

BQ_TYPE = {str: {"STRING"}, bool: {"BOOLEAN", "BOOL"}, int: {"FLOAT", "FLOAT64"}, float: {"FLOAT", "FLOAT64"}}
# jsonPayload fields the log handler (shared/result_log.py) adds beside the record.
HANDLER_FIELDS = {"message": "STRING"}


def _import_record_modules():
    """shared.errors / shared.refs / shared.results, without running shared/__init__.py.

    Those modules need only the stdlib and shared's two constants; the package's
    __init__ may one day import heavier things this venv lacks. So, unless the package
    is already imported, stand in a bare `shared` package holding the constants (read
    with ast) and import the three modules from their files.
    """
    import importlib
    import types

    if "shared" not in sys.modules:
        package = types.ModuleType("shared")
        package.__path__ = [str(REPO / "shared")]
        package.__dict__.update(_module_constants(REPO / "shared" / "__init__.py"))
        sys.modules["shared"] = package
    return (importlib.import_module(f"shared.{name}") for name in ("errors", "refs", "results"))


def _sample_records() -> list[dict]:
    """Result records with every field set, built by the code itself."""
    errors, refs, results = _import_record_modules()
    BucketeyeError, ImageRef = errors.BucketeyeError, refs.ImageRef
    TIMING_NAMES, Detection, ImageInfo = results.TIMING_NAMES, results.Detection, results.ImageInfo
    Prediction, Result = results.Prediction, results.Result

    ref = ImageRef(
        trigger="storage", uri="gs://b/cat.jpg", bucket="b", object="cat.jpg", generation="1700000000000000",
        event_id="e-1", content_type="image/jpeg", size_bytes=123456, md5_hash="bWQ1", key="k1",
    )
    model = {"name": "efficientnet_lite0", "version": "1", "id": "efficientnet_lite0@1"}
    ok = Result(
        ref=ref, model=model,
        predictions=[Prediction("tabby", 281, 0.75), Prediction("tiger cat", 282, 0.2)],
        detections=[Detection("cat", 17, 0.9, (0.1, 0.2, 0.8, 0.9))],
        image=ImageInfo("JPEG", 640, 480),
        timings_ms={name: 1.5 for name in TIMING_NAMES},
        content_md5="bWQ1",
    )
    failed = Result(ref=ref, model=model, error=BucketeyeError("fetch_failed"))
    return [ok.to_record(), failed.to_record()]


def _record_types(value, prefix, out):
    if isinstance(value, dict):
        if prefix:
            out.setdefault(prefix, set()).add(("RECORD", "NULLABLE"))
        for key, item in value.items():
            assert key == key.lower() and re.fullmatch(r"[a-z][a-z0-9_]*", key), f"field {prefix}.{key} is not snake_case"
            _record_types(item, f"{prefix}.{key}" if prefix else key, out)
    elif isinstance(value, list):
        out.setdefault(prefix, set())
        for item in value:
            if isinstance(item, dict):
                out[prefix].add(("RECORD", "REPEATED"))
                for key, sub in item.items():
                    _record_types(sub, f"{prefix}.{key}", out)
            else:
                assert not isinstance(item, list), f"{prefix}: no lists of lists"
                out[prefix].add((type(item), "REPEATED"))
    else:
        out.setdefault(prefix, set())
        if value is not None:
            out[prefix].add((type(value), "NULLABLE"))


def test_schema_file_matches_result_record():
    schema = table_schema()
    observed: dict[str, set] = {}
    for record in _sample_records():
        assert record["app"] == app_name()
        _record_types(record, "", observed)

    problems = []
    for path, kinds in sorted(observed.items()):
        column = f"jsonpayload.{path}"
        if not kinds:
            problems.append(f"{path}: no sample sets it, cannot check its type (extend _sample_records)")
            continue
        if column not in schema:
            problems.append(f"{path}: not in {SCHEMA_FILE.name}")
            continue
        bq_type, bq_mode = schema[column]
        for kind, mode in kinds:
            expected = {"RECORD", "STRUCT"} if kind == "RECORD" else BQ_TYPE[kind]
            if bq_type not in expected or bq_mode != mode:
                held = getattr(kind, "__name__", kind)
                problems.append(f"{path}: schema has {bq_type} {bq_mode}, the record holds {held} {mode} "
                                f"(expected one of {sorted(expected)})")
    for field, bq_type in HANDLER_FIELDS.items():
        if schema.get(f"jsonpayload.{field}", (None,))[0] != bq_type:
            problems.append(f"{field}: the log handler writes it; the schema needs it as {bq_type}")
    stale = sorted(
        p for p in schema
        if p.startswith("jsonpayload.") and p[len("jsonpayload."):] not in observed and p[len("jsonpayload."):] not in HANDLER_FIELDS
    )
    if stale:
        problems.append(f"schema columns the record no longer has: {stale}")
    assert not problems, "\n".join(problems)


def test_schema_file_has_logentry_columns():
    schema = table_schema()
    expected = {
        "timestamp": "TIMESTAMP", "receivetimestamp": "TIMESTAMP", "severity": "STRING", "insertid": "STRING",
        "logname": "STRING", "trace": "STRING", "spanid": "STRING", "tracesampled": "BOOLEAN",
        "resource": "RECORD", "resource.type": "STRING", "resource.labels.service_name": "STRING",
        "resource.labels.revision_name": "STRING", "jsonpayload": "RECORD",
    }
    for column, bq_type in expected.items():
        assert column in schema, f"{column} missing from {SCHEMA_FILE.name}"
        assert schema[column][0] == bq_type, f"{column}: {schema[column][0]} != {bq_type}"


def test_checkov_skips_give_reasons():
    """Each checkov suppression sits in the resource it excuses and says why."""
    for path in TF_FILES:
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if "checkov:skip" in line:
                match = re.search(r"#\s*checkov:skip=(CKV2?_[A-Z]+_\d+):\s*(\S.{20,})", line)
                assert match, f"{path.name}:{number}: write `# checkov:skip=CKV_...: reason` (a real reason)"


# ---------------------------------------------------------------- container build files

def _dockerfile_env(content: str) -> dict:
    env = {}
    for block in re.findall(r"^ENV\s+((?:.*\\\n)*.*)$", content, re.M):
        for name, value in re.findall(r"(\w+)=(\S+)", block.replace("\\\n", " ")):
            env[name] = value
    return env


@pytest.mark.parametrize("name", ["Dockerfile", "Dockerfile.cpu"])
def test_dockerfile_production_settings(cfg, name):
    content = (REPO / name).read_text()
    assert content.rstrip().splitlines()[-1] == 'CMD ["python", "main.py", "serve"]'
    users = re.findall(r"^USER\s+(\S+)", content, re.M)
    assert users and users[-1] not in ("root", "0"), "the service must run as a non-root user"
    env = _dockerfile_env(content)
    # Server processes, each with its model and batcher: the GPU image one per vCPU (WORKERS=8
    # for an L4 with 8 vCPUs), the CPU image one (its LiteRT lanes already use every core).
    assert env.get("WORKERS") == ("8" if name == "Dockerfile" else "1")
    assert env.get("CLOUD_RUN_TIMEOUT_SECONDS") == "0"
    assert int(env["THREADS"]) >= cfg.default("concurrency"), "THREADS must cover the default concurrency"
    limit = re.search(r"var\.concurrency <= (\d+)", first(cfg.variables["concurrency"]["validation"])["condition"])
    assert limit and int(limit.group(1)) <= int(env["THREADS"]), "concurrency may not exceed THREADS"
    assert "python -m shared.models.default_model --cache-dir /opt/bucketeye/models" in content


def test_gpu_dockerfile_uses_the_cuda_build_of_the_pinned_tensorflow():
    content = (REPO / "Dockerfile").read_text()
    version = re.search(r"^ARG TF_VERSION=(\S+)", content, re.M).group(1)
    assert '"tensorflow[and-cuda]==${TF_VERSION}"' in content
    requirements = REPO / "requirements.txt"
    if requirements.exists():
        pins = re.findall(r"^tensorflow-cpu==(\S+)", requirements.read_text(), re.M)
        assert pins == [version], f"requirements.txt pins tensorflow-cpu {pins}, the GPU image builds {version}"


def test_cloudbuild_pushes_where_terraform_deploys_from(cfg):
    content = (REPO / "cloudbuild.yaml").read_text()
    subs = dict(re.findall(r"^  (_[A-Z_]+): (\S+)$", content, re.M))
    assert subs["_REPOSITORY"] == cfg.default("repository_id")
    assert subs["_IMAGE"] == cfg.default("image_name")
    assert subs["_REGION"] == cfg.default("region")
    assert subs["_IMAGE_URI"] == "${_REGION}-docker.pkg.dev/${PROJECT_ID}/${_REPOSITORY}/${_IMAGE}"
    assert "${_IMAGE_URI}:${_TAG}" in content and "${_IMAGE_URI}:${BUILD_ID}" in content


def test_cloudbuild_cache_is_a_fixed_tag_it_also_pushes():
    """The layer cache is pulled by a tag that exists before the build (not the new _TAG or
    BUILD_ID), and every build pushes that tag for the next one."""
    content = (REPO / "cloudbuild.yaml").read_text()
    subs = dict(re.findall(r"^  (_[A-Z_]+): (\S+)$", content, re.M))
    pulled = re.search(r"docker pull (\S+?) ", content).group(1)
    cache_from = re.search(r"--cache-from=(\S+)", content).group(1)
    pushed = re.findall(r"^  - (\$\{_IMAGE_URI\}:\S+)$", content, re.M)
    assert pulled == cache_from == "${_IMAGE_URI}:${_CACHE_TAG}"
    assert subs["_CACHE_TAG"] not in ("", "${_TAG}") and "BUILD_ID" not in subs["_CACHE_TAG"]
    assert cache_from in pushed
    assert f"--tag={cache_from}" in content


def test_dockerignore_keeps_the_context_small():
    ignored = {line.strip() for line in (REPO / ".dockerignore").read_text().splitlines()}
    for entry in (".git", ".venv", ".venv-*", "tests", "infra"):
        assert entry in ignored, f".dockerignore should exclude {entry}"
