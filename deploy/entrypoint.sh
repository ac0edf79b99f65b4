#!/usr/bin/env bash
# dspyopt's process commands, one per mode: the image's entrypoint (deploy/Dockerfile), the commands compose.yaml and the
# Kubernetes manifests run, and what `make stack` starts on loopback without containers (dspyopt_nb.deploy.stack).
#
#   dspyopt-entrypoint serve [dspyopt serve options]     the runtime (predict, feedback, experiments, /metrics) on $DSPYOPT_PORT
#   dspyopt-entrypoint scheduler [options]               cron schedules of job configs (dspyopt scheduler)
#   dspyopt-entrypoint learner CONFIG.yaml [options]     drift detection and gated re-optimization (dspyopt learn)
#   dspyopt-entrypoint job CONFIG.yaml [options]         one papermill job now (dspyopt run); exit 0 ok, 1 failed, 2 bad config
#   dspyopt-entrypoint lab                               JupyterLab on $JUPYTER_PORT (token from $JUPYTER_TOKEN)
#   dspyopt-entrypoint mlflow                            MLflow tracking server with basic-auth on $MLFLOW_PORT
#   dspyopt-entrypoint exporter                          Prometheus metrics of jobs and runs on $DSPYOPT_EXPORTER_PORT (beside the scheduler)
#   dspyopt-entrypoint migrate                           upgrade the store ($DSPYOPT_DB_URL) to the newest schema
#   dspyopt-entrypoint health                            exit 0 when the process this container runs answers
#   dspyopt-entrypoint ANY OTHER COMMAND                 run it as is (a shell, dspyopt runs list, pg_dump, ...)
#
# DSPYOPT_LOG_FORMAT=json makes the dspyopt commands log JSON lines (dspyopt_nb.deploy.logs): the runtime logs each
# request with the request id of its trace and feedback.
# Secrets (database URLs with passwords, MLflow credentials, tokens, keys) come only from the environment; none is
# ever written to the image or printed.
set -euo pipefail

HOST="${DSPYOPT_HOST:-127.0.0.1}"
STATE="${DSPYOPT_STATE_DIR:-${TMPDIR:-/tmp}}"
mkdir -p "$STATE" "${TMPDIR:-/tmp}"

die() { echo "dspyopt-entrypoint: $*" >&2; exit 2; }
need() { [ -n "${!1:-}" ] || die "\$$1 is not set. Fix: $2"; }
remember() { echo "$1" > "$STATE/dspyopt-mode"; }   # `health` reads it: the healthcheck runs in a process of its own

# DSPYOPT_LOG_FORMAT=json: the dspyopt commands log one JSON object per line, the runtime one per request with its id
exec_dspyopt() {
  if [ "${DSPYOPT_LOG_FORMAT:-text}" = json ]; then exec python -m dspyopt_nb.deploy.logs "$@"; else exec dspyopt "$@"; fi
}

mode="${1:-serve}"
[ $# -gt 0 ] && shift

case "$mode" in
  serve)
    remember serve
    args=(--host "$HOST" --port "${DSPYOPT_PORT:-8000}" --lm "${DSPYOPT_LM:-local}" --log-level "${DSPYOPT_LOG_LEVEL:-warning}")
    [ -n "${DSPYOPT_DB_URL:-}" ] && args+=(--db "$DSPYOPT_DB_URL")
    [ -n "${MLFLOW_TRACKING_URI:-}" ] && args+=(--tracking-uri "$MLFLOW_TRACKING_URI")
    if [ "${DSPYOPT_MIGRATE:-1}" = 1 ]; then "$0" migrate; fi
    exec_dspyopt serve "${args[@]}" "$@" ;;
  scheduler)
    remember scheduler
    exec_dspyopt scheduler "$@" ;;
  learner)
    [ $# -ge 1 ] || die "learner needs a learner config. Fix: dspyopt-entrypoint learner /config/learner.yaml (fields: dspyopt_nb.learn.learner.LearnConfig)"
    remember learner
    exec_dspyopt learn "$@" ;;
  job)
    [ $# -ge 1 ] || die "job needs a config. Fix: dspyopt-entrypoint job /config/job.yaml [--set KEY=VALUE ...]"
    remember job
    exec_dspyopt run "$@" ;;
  lab)
    need JUPYTER_TOKEN "set it to a long random string (a Secret in Kubernetes); JupyterLab asks for it."
    remember lab
    exec jupyter lab --ip "$HOST" --port "${JUPYTER_PORT:-8888}" --no-browser --ServerApp.root_dir="${JUPYTER_ROOT:-$PWD}" "$@" ;;
  mlflow)
    need MLFLOW_BACKEND_STORE_URI "a database URL for MLflow's runs and registry, e.g. postgresql+psycopg://mlflow:PASSWORD@db/mlflow."
    args=(server --host "$HOST" --port "${MLFLOW_PORT:-5000}" --workers "${MLFLOW_WORKERS:-2}"
          --backend-store-uri "$MLFLOW_BACKEND_STORE_URI" --serve-artifacts
          --artifacts-destination "${MLFLOW_ARTIFACTS_DESTINATION:-$PWD/mlartifacts}"
          --allowed-hosts "${MLFLOW_ALLOWED_HOSTS:-mlflow,mlflow:*,mlflow.*,localhost,localhost:*,127.0.0.1,127.0.0.1:*}")
    # (MLflow refuses Host headers it does not know, against DNS rebinding: clients reach it as the Service `mlflow`)
    if [ "${MLFLOW_AUTH:-basic}" = basic ]; then
      need MLFLOW_AUTH_ADMIN_USERNAME "the MLflow admin's user name (clients use it as MLFLOW_TRACKING_USERNAME)."
      need MLFLOW_AUTH_ADMIN_PASSWORD "the MLflow admin's password (clients use it as MLFLOW_TRACKING_PASSWORD)."
      need MLFLOW_FLASK_SERVER_SECRET_KEY "a long random string: MLflow signs its sessions and CSRF tokens with it."
      need MLFLOW_AUTH_DATABASE_URI "a database URL for MLflow's users and permissions (may be the backend store's database)."
      # basic-auth reads its settings from an ini file: write it where only this user can read it, from the environment
      ini="$STATE/mlflow-basic-auth.ini"
      (umask 077; printf '[mlflow]\ndefault_permission = %s\ndatabase_uri = %s\nadmin_username = %s\nadmin_password = %s\nauthorization_function = mlflow.server.auth:authenticate_request_basic_auth\n' \
        "${MLFLOW_AUTH_DEFAULT_PERMISSION:-READ}" "$MLFLOW_AUTH_DATABASE_URI" "$MLFLOW_AUTH_ADMIN_USERNAME" "$MLFLOW_AUTH_ADMIN_PASSWORD" > "$ini")
      export MLFLOW_AUTH_CONFIG_PATH="$ini"
      args+=(--app-name basic-auth)
    fi
    remember mlflow
    exec mlflow "${args[@]}" "$@" ;;
  exporter)
    remember exporter
    exec python -m dspyopt_nb.deploy.monitoring ;;
  migrate)
    exec python -c "from dspyopt_nb.store.db import migrate, store_url; import re; r = migrate(); \
print('dspyopt-entrypoint: store', re.sub(r'//[^@/]*@', '//***@', store_url()), 'at', ', '.join(r))" ;;
  health)
    running="$(cat "$STATE/dspyopt-mode" 2>/dev/null || echo none)"
    case "$running" in
      serve)  path="http://127.0.0.1:${DSPYOPT_PORT:-8000}/healthz" ;;
      mlflow) path="http://127.0.0.1:${MLFLOW_PORT:-5000}/health" ;;
      lab)    path="http://127.0.0.1:${JUPYTER_PORT:-8888}/api" ;;
      exporter) path="http://127.0.0.1:${DSPYOPT_EXPORTER_PORT:-9108}/metrics" ;;
      *)      exit 0 ;;   # scheduler, learner, job: alive while the container runs (tini exits with them)
    esac
    exec python -c "
import sys, urllib.request
try: sys.exit(0 if urllib.request.urlopen('$path', timeout=4).status == 200 else 1)
except Exception as e: sys.exit(f'dspyopt-entrypoint: $running does not answer at $path: {e}')" ;;
  -h|--help|help)
    sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//' ;;
  *)
    exec "$mode" "$@" ;;
esac
