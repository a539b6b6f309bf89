# shellcheck shell=bash
# Sourced by scripts/run, scripts/test and friends: makes sure the project's virtualenv exists
# and is up to date, then puts it first on PATH.
#
#   source "$(dirname "${BASH_SOURCE[0]}")/_venv.sh"
#
# - Python: $PYTHON if set, else the first of python3.12, python3.11, python3 that is >= 3.11.
# - .venv is created when missing (or when its interpreter no longer runs).
# - `pip install -e '.[dev]' -e ./clients` runs only when pyproject.toml or
#   clients/pyproject.toml changed since the last successful install (sha256 stamp in .venv).
# Exports TRIVENI_ROOT (the repository root), VIRTUAL_ENV and PATH.

TRIVENI_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export TRIVENI_ROOT

_triveni_python_ok() {
  command -v "$1" >/dev/null 2>&1 &&
    "$1" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' >/dev/null 2>&1
}

_triveni_find_python() {
  local candidate
  for candidate in ${PYTHON:-} python3.12 python3.11 python3; do
    if _triveni_python_ok "$candidate"; then
      command -v "$candidate"
      return 0
    fi
  done
  echo "error: Python >= 3.11 not found (tried ${PYTHON:+\$PYTHON=$PYTHON, }python3.12, python3.11, python3)" >&2
  return 1
}

_triveni_create_venv() {
  local venv="$1" python
  python="$(_triveni_find_python)" || return 1
  echo "==> creating $venv with $python ($("$python" --version 2>&1))" >&2
  rm -rf "$venv"
  if "$python" -m venv "$venv" 2>/dev/null; then
    return 0
  fi
  # Debian/Ubuntu ship venv's ensurepip separately (python3-venv); fall back to the system pip.
  rm -rf "$venv"
  if "$python" -m venv --without-pip "$venv" &&
    "$python" -m pip --python "$venv/bin/python" install --quiet pip >&2; then
    return 0
  fi
  rm -rf "$venv"
  echo "error: could not create $venv: install the venv module (apt-get install python3-venv)" >&2
  return 1
}

_triveni_install_stamp() {
  "$1" - "$TRIVENI_ROOT" <<'PY'
import hashlib, sys
from pathlib import Path
root = Path(sys.argv[1])
digest = hashlib.sha256(sys.version.encode())
for name in ("pyproject.toml", "clients/pyproject.toml"):
    digest.update(name.encode() + b"\0" + (root / name).read_bytes())
print(digest.hexdigest())
PY
}

_triveni_ensure_venv() {
  local venv="$TRIVENI_ROOT/.venv"
  local stamp_file="$venv/.triveni-install-stamp"
  local stamp
  if ! "$venv/bin/python" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' \
    >/dev/null 2>&1; then
    _triveni_create_venv "$venv" || return 1
  fi
  stamp="$(_triveni_install_stamp "$venv/bin/python")" || return 1
  if [[ ! -f "$stamp_file" || "$(cat "$stamp_file")" != "$stamp" ]]; then
    echo "==> installing the project into $venv (pyproject changed or first run)" >&2
    (cd "$TRIVENI_ROOT" &&
      PIP_DISABLE_PIP_VERSION_CHECK=1 "$venv/bin/python" -m pip install --quiet \
        -e '.[dev]' -e ./clients >&2) || {
      echo "error: pip install failed" >&2
      return 1
    }
    echo "$stamp" >"$stamp_file"
  fi
  export VIRTUAL_ENV="$venv"
  export PATH="$venv/bin:$PATH"
}

_triveni_ensure_venv
