#!/usr/bin/env bash
# The staging deploy's secrets (CI: .github/workflows/staging.yaml): random values made for this run, masked in the log,
# stored only as Kubernetes Secrets in the kind cluster. In a real cluster an operator or an external secrets controller
# makes the same Secret (deploy/k8s/base/config.yaml lists its keys).   usage: deploy/ci/kind-secrets.sh NAMESPACE
set -euo pipefail
ns="${1:?usage: $0 NAMESPACE}"
gen() { local v; v="$(openssl rand -hex 24)"; echo "::add-mask::$v" >&2; echo "$v"; }
pg="$(gen)"; ml="$(gen)"; flask="$(gen)"
db="postgresql+psycopg://dspyopt:${pg}@postgres:5432"
kubectl -n "$ns" create secret generic postgres --from-literal=password="$pg"
kubectl -n "$ns" create secret generic dspyopt-secrets \
  --from-literal=database-url="$db/dspyopt" \
  --from-literal=mlflow-backend-uri="$db/mlflow" \
  --from-literal=mlflow-auth-uri="$db/mlflow_auth" \
  --from-literal=mlflow-username=admin \
  --from-literal=mlflow-password="$ml" \
  --from-literal=mlflow-flask-secret="$flask"
