#!/usr/bin/env bash
# Smoke test of a built image (CI: .github/workflows/image.yaml): it runs as uid 10001 with a read-only root filesystem,
# the embedded model is inside, the runtime becomes healthy (HEALTHCHECK), predictions and feedback move /metrics, and
# a mode missing its settings refuses with a fix.   usage: deploy/ci/container-smoke.sh IMAGE
set -euo pipefail
img="${1:?usage: $0 IMAGE}"

uid="$(docker run --rm --entrypoint id "$img" -u)"
[ "$uid" = 10001 ] || { echo "the image runs as uid $uid, not 10001"; exit 1; }
docker run --rm --read-only --tmpfs /data:uid=10001,gid=10001 "$img" \
  python -c "from dspyopt_nb.engines.llama import local_model_path; print('embedded model:', local_model_path())"

if out="$(docker run --rm "$img" job 2>&1)"; then echo "job without a config should fail"; exit 1; fi
grep -q "Fix:" <<<"$out" || { echo "no fix in: $out"; exit 1; }

cid="$(docker run -d --read-only --tmpfs /data:uid=10001,gid=10001 \
  -e DSPYOPT_LM=scripted:dspyopt_nb.engines.scripted:toy_sentiment "$img" serve --program sst2=task:sst2)"
trap 'docker logs "$cid" 2>&1 | tail -40; docker rm -f "$cid" >/dev/null' EXIT
status=starting
for _ in $(seq 60); do
  status="$(docker inspect -f '{{.State.Health.Status}}' "$cid")"
  [ "$status" = healthy ] && break
  sleep 5
done
[ "$status" = healthy ] || { echo "the container is $status, not healthy"; exit 1; }
docker exec "$cid" python -m dspyopt_nb.deploy.stack smoke --url http://127.0.0.1:8000
echo "container smoke test: OK"
