#!/usr/bin/env bash
# Offline checks of infra/: every block against the providers' real schemas, the
# Terraform tests (tests/infra, python-hcl2) and checkov.
#
#   infra/check.sh            # from anywhere; exits non-zero if any check fails
#
# The provider schemas come from cdktf's npm packages (infra/tools/provider_schema.py
# names them), fetched once with `npm pack` into the git-ignored .cache/provider-schemas;
# later runs need no network. npm comes from Debian's package if it is missing.
#
# Each tool gets its own venv at the repo root, built from its pinned requirements file
# (python-hcl2 and checkov both install a package named `hcl2`, so they cannot share one):
#   .venv-infra    <- infra/requirements-infra.txt   (python-hcl2, pytest)
#   .venv-checkov  <- infra/requirements-checkov.txt (checkov)
# A venv is (re)installed only when its requirements file changed since the last install
# (a stamp file in the venv holds the file's hash), so later runs start at once.
#
# Environment: PYTHON (interpreter for new venvs, default python3).
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT" || exit 2
PYTHON="${PYTHON:-python3}"

log() { printf '[infra/check] %s\n' "$*" >&2; }

# ensure_venv DIR REQUIREMENTS: create/refresh DIR so it holds exactly the pinned set.
ensure_venv() {
    local dir="$1" requirements="$2" stamp="$1/.requirements.sha256" want have
    want="$(sha256sum "$requirements" | cut -d' ' -f1)" || return 1
    have="$(cat "$stamp" 2>/dev/null || true)"
    if [[ -x "$dir/bin/python" && "$want" == "$have" ]]; then
        return 0
    fi
    if [[ ! -x "$dir/bin/python" ]]; then
        log "creating $dir"
        "$PYTHON" -m venv "$dir" || return 1
    fi
    log "installing $requirements into $dir"
    "$dir/bin/python" -m pip install --quiet --disable-pip-version-check -r "$requirements" || return 1
    printf '%s\n' "$want" > "$stamp"
}

# ensure_npm: Debian's npm (and nodejs) when npm is missing; needs root or sudo.
ensure_npm() {
    command -v npm >/dev/null 2>&1 && return 0
    local sudo=""
    [[ "$(id -u)" == 0 ]] || sudo=sudo
    log "installing Debian's npm"
    $sudo apt-get update -qq && $sudo apt-get install -y -qq npm >/dev/null
}

status=0
started=$SECONDS

if ensure_venv .venv-infra infra/requirements-infra.txt; then
    ensure_npm || log "npm is missing and could not be installed"
    log "provider schema check (infra/tools/schema_check.py)"
    .venv-infra/bin/python infra/tools/schema_check.py || status=1
    log "pytest tests/infra"
    # --noconftest and tests/infra/pytest.ini keep this venv independent of the main
    # test suite's conftest files and plugins.
    .venv-infra/bin/python -m pytest tests/infra -q --noconftest -p no:cacheprovider || status=1
else
    log "could not prepare .venv-infra"
    status=1
fi

if ensure_venv .venv-checkov infra/requirements-checkov.txt; then
    log "checkov -d infra"
    # --skip-download: no network (checkov otherwise fetches guidelines from its vendor).
    .venv-checkov/bin/checkov -d infra --quiet --compact --framework terraform --skip-download || status=1
else
    log "could not prepare .venv-checkov"
    status=1
fi

if [[ $status -eq 0 ]]; then
    log "all infra checks passed in $((SECONDS - started)) s"
else
    log "infra checks FAILED (after $((SECONDS - started)) s)"
fi
exit $status
