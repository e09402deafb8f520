#!/usr/bin/env bash
# Checks the Dockerfile on a machine without an image registry (podman, debootstrap), as far as such a
# machine allows:
#  1. the build stage: exactly the paths its COPY lines copy, in a directory of their own, built with its
#     `cargo build` command (the host's toolchain stands in for the rust image) — a path the build needs
#     and the Dockerfile does not copy (as `vendor/` once was) fails here;
#  2. the runtime stage, built by podman as written (apt-get, the user, the config, ENV, VOLUME, USER,
#     HEALTHCHECK, ENTRYPOINT) on debian:bookworm-slim — pulled when a registry answers, else a Debian
#     bookworm made with debootstrap and imported under that name — with step 1's binary in place of
#     `COPY --from=build`;
#  3. the image run: /healthz answers, the container runs as the unprivileged user, its HEALTHCHECK
#     passes, `turumba admin create-user` works inside it, a login works through the API, and the data
#     survive the container being removed and started again on the same volume.
#
#   scripts/check-container.sh            # needs podman, debootstrap, curl, jq; run as root
#
# Nothing is pushed; the images, the container and the volume it makes are removed at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
ENGINE="${ENGINE:-podman}"
IMAGE=localhost/turumba-check:latest
NAME=turumba-check
VOLUME=turumba-check-data
PORT="${CHECK_PORT:-18181}"
WORK=$(mktemp -d)
cleanup() {
  $ENGINE rm -f "$NAME" >/dev/null 2>&1 || true
  $ENGINE volume rm -f "$VOLUME" >/dev/null 2>&1 || true
  $ENGINE rmi -f "$IMAGE" >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap cleanup EXIT
for tool in "$ENGINE" curl jq; do command -v "$tool" >/dev/null || { echo "missing $tool" >&2; exit 1; }; done

# The Dockerfile's two stages.
awk '/^FROM /{n++} n==1' Dockerfile > "$WORK/build.stage"
awk '/^FROM /{n++} n==2' Dockerfile > "$WORK/runtime.stage"
grep -q '^FROM rust:' "$WORK/build.stage" || { echo "the first stage is not the rust build stage" >&2; exit 1; }

echo "== 1. the build stage, from exactly what it copies"
mkdir -p "$WORK/src"
grep '^COPY ' "$WORK/build.stage" | grep -v -- '--from' | while read -r _ args; do
  # shellcheck disable=SC2206
  parts=($args)
  dest="${parts[-1]}"
  unset 'parts[-1]'
  for p in "${parts[@]}"; do
    if [ "$dest" = "./" ]; then cp -r "$p" "$WORK/src/"; else mkdir -p "$WORK/src/$dest" && cp -r "$p/." "$WORK/src/$dest/"; fi
  done
done
# The stage's RUN line, minus the strip (done below on the result).
run=$(grep '^RUN cargo build' "$WORK/build.stage" | sed -e 's/^RUN //' -e 's/ &&.*//')
echo "   $run   (in a directory holding: $(ls "$WORK/src" | tr '\n' ' '))"
(cd "$WORK/src" && CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}" $run)
cp "${CARGO_TARGET_DIR:-$WORK/src/target}/release/turumba" "$WORK/turumba"
strip "$WORK/turumba"

echo "== 2. the runtime stage, built by $ENGINE"
base=$(awk '/^FROM /{print $2; exit}' "$WORK/runtime.stage")
if ! $ENGINE image exists "$base" && ! $ENGINE pull -q "$base" >/dev/null 2>&1; then
  tarball="$HOME/.cache/turumba/${base//[:\/]/-}-debootstrap.tar"
  if [ ! -f "$tarball" ]; then
    command -v debootstrap >/dev/null || { echo "no registry answers for $base and debootstrap is missing" >&2; exit 1; }
    echo "   no registry answers: $base made with debootstrap (bookworm, minbase)"
    mkdir -p "$(dirname "$tarball")"
    debootstrap --variant=minbase bookworm "$WORK/rootfs" http://deb.debian.org/debian >/dev/null
    tar -C "$WORK/rootfs" -cf "$tarball" .
    rm -rf "$WORK/rootfs"
  fi
  $ENGINE import -q "$tarball" "docker.io/library/$base" >/dev/null
fi
# Where containers cannot be run as the engine likes to (sandboxes: cgroups in hybrid mode, which crun
# refuses; resource limits that may be lowered but not raised), runc and lowered limits.
ENGINE_OPTS=()
LIMITS=()
if ! $ENGINE run --rm --network host "$base" true >/dev/null 2>&1; then
  ENGINE_OPTS=(--runtime runc)
  LIMITS=(--ulimit nofile=4096:4096 --ulimit nproc=4096:4096)
  $ENGINE "${ENGINE_OPTS[@]}" run --rm --network host "${LIMITS[@]}" "$base" true \
    || { echo "$ENGINE cannot run a container here" >&2; exit 1; }
  echo "   (containers run with runc and lowered resource limits on this machine)"
fi
mkdir -p "$WORK/context/config"
cp "$WORK/turumba" "$WORK/context/turumba"
cp config/default.toml "$WORK/context/config/"
sed 's#^COPY --from=build /src/target/release/turumba #COPY turumba #' "$WORK/runtime.stage" > "$WORK/context/Dockerfile"
grep -q '^COPY turumba ' "$WORK/context/Dockerfile" || { echo "the runtime stage no longer copies the binary from the build stage" >&2; exit 1; }
$ENGINE build -q --format docker --network host "${ENGINE_OPTS[@]}" "${LIMITS[@]}" -t "$IMAGE" "$WORK/context" >/dev/null

echo "== 3. the image, run"
start() {
  $ENGINE "${ENGINE_OPTS[@]}" run -d --name "$NAME" --network host "${LIMITS[@]}" -v "$VOLUME:/data" \
    -e TURUMBA_BIND="127.0.0.1:$PORT" "$IMAGE" >/dev/null
  for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$PORT/healthz" >/dev/null && return; sleep 0.2; done
  $ENGINE logs "$NAME" >&2; echo "the container did not answer /healthz" >&2; exit 1
}
start
echo "   /healthz: $(curl -s "http://127.0.0.1:$PORT/healthz")"
uid=$($ENGINE "${ENGINE_OPTS[@]}" exec "$NAME" id -u)
[ "$uid" = 10001 ] || { echo "the container runs as uid $uid, not the turumba user" >&2; exit 1; }
echo "   runs as uid $uid ($($ENGINE "${ENGINE_OPTS[@]}" exec "$NAME" id -un))"
$ENGINE "${ENGINE_OPTS[@]}" healthcheck run "$NAME" && echo "   HEALTHCHECK (turumba healthcheck): healthy"
$ENGINE "${ENGINE_OPTS[@]}" exec "$NAME" turumba admin create-user --email check@example.org --password 'check password 1' \
  --account-name Check >/dev/null
login() {
  curl -s "http://127.0.0.1:$PORT/v1/auth/login" -H 'content-type: application/json' \
    -d '{"email":"check@example.org","password":"check password 1"}' | jq -r '.data.access_token // empty'
}
[ -n "$(login)" ] || { echo "the user made inside the container cannot log in" >&2; exit 1; }
echo "   admin create-user inside the container, then a login through the API: ok"
echo "   /data holds: $($ENGINE "${ENGINE_OPTS[@]}" exec "$NAME" ls /data | tr '\n' ' ')"
$ENGINE rm -f "$NAME" >/dev/null
start
[ -n "$(login)" ] || { echo "the data did not survive a new container on the same volume" >&2; exit 1; }
echo "   a new container on the same volume: the user is still there"
echo "image size: $($ENGINE image inspect "$IMAGE" --format '{{.Size}}' | awk '{printf "%.0f MB", $1 / 1e6}')"
echo "container check: ok"
