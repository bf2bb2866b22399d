# Shared by scripts/test, scripts/demo, scripts/bench, scripts/soak and scripts/ui-check: create (once)
# and return a virtual environment with the provider installed in editable mode on one Airflow line
# (3 = 3.3.x, 2 = 2.11.x) or for the soak (soak = 3.3.x with Celery and PostgreSQL drivers).
#
# Every environment is locked: it installs from constraints/airflow-<line>.txt, committed in the
# repository (constraints/soak.txt for the soak), so a fresh clone next month resolves exactly the set that passed here. The locks change
# only on purpose, with scripts/lock (see constraints/README.md). uv itself is pinned in
# constraints/tools.txt.
#
# The 3.3 environment also has the OpenLineage provider (its lineage is tested there) and Selenium
# (scripts/ui-check drives Chromium with it); the 2.11 one has no OpenLineage, which proves the
# provider works without it. Both have the Amazon provider and moto, for the s3:// input tests.
# Editing this file, pyproject.toml or a lock rebuilds the environments.

ensure_uv() {
  local want
  want=$(grep '^uv==' constraints/tools.txt | cut -d= -f3)
  if [ ! -x .venv-tools/bin/uv ] || [ "$(.venv-tools/bin/uv --version | cut -d' ' -f2)" != "$want" ]; then
    python3 -m venv .venv-tools >&2
    .venv-tools/bin/pip install -q -r constraints/tools.txt >&2
  fi
  UV=.venv-tools/bin/uv
}

ensure_venv() {
  local line=$1 venv name lock stamp
  case "$line" in
    3) venv=.venv-airflow3 ;;
    2) venv=.venv-airflow2 ;;
    soak) venv=.venv-soak ;;
    *) echo "unknown Airflow line: $line" >&2; return 1 ;;
  esac
  [ "$line" = soak ] && name=soak || name=airflow-$line
  lock=constraints/$name.txt
  stamp="$venv/.installed-$(cat pyproject.toml scripts/_env.sh "constraints/$name.in" "$lock" | cksum | cut -d' ' -f1)"
  if [ ! -f "$stamp" ]; then
    ensure_uv
    [ -d "$venv" ] || "$UV" venv -q -p python3 "$venv" >&2
    # The .in file names what this line needs besides the provider; the lock fixes every version.
    VIRTUAL_ENV="$PWD/$venv" "$UV" pip install -q -c "$lock" -r "constraints/$name.in" -e ".[dev]" >&2
    rm -f "$venv"/.installed-*
    touch "$stamp"
  fi
  echo "$venv"
}
