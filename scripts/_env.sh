# Shared by scripts/test and scripts/demo: create (once) and return a virtual environment with the
# provider installed in editable mode on the newest Airflow of a release line (3 = 3.3.x, 2 = 2.11.x).
# uv makes this take seconds; it comes from PyPI like everything else.
# The 3.3 environment also has the OpenLineage provider (its lineage is tested there); the 2.11 one
# has not, which proves the provider works without it. Selenium (3.3 only) drives Chromium in
# scripts/ui-check. Editing this file rebuilds the environments.

ensure_uv() {
  if command -v uv >/dev/null 2>&1; then
    UV=uv
  else
    if [ ! -x .venv-tools/bin/uv ]; then
      python3 -m venv .venv-tools >&2
      .venv-tools/bin/pip install -q uv >&2
    fi
    UV=.venv-tools/bin/uv
  fi
}

ensure_venv() {
  local line=$1 venv spec extras stamp
  case "$line" in
    3) venv=.venv-airflow3; spec="apache-airflow>=3.3.2,<3.4"; extras="apache-airflow-providers-openlineage selenium" ;;
    2) venv=.venv-airflow2; spec="apache-airflow>=2.11.2,<2.12"; extras="" ;;
    *) echo "unknown Airflow line: $line" >&2; return 1 ;;
  esac
  stamp="$venv/.installed-$(cat pyproject.toml scripts/_env.sh | cksum | cut -d' ' -f1)"
  if [ ! -f "$stamp" ]; then
    ensure_uv
    [ -d "$venv" ] || "$UV" venv -q -p python3 "$venv" >&2
    VIRTUAL_ENV="$PWD/$venv" "$UV" pip install -q "$spec" "apache-airflow-providers-http" $extras -e ".[dev]" >&2
    touch "$stamp"
  fi
  echo "$venv"
}
