#!/usr/bin/env bash
# Builds the capgate image from the Dockerfile without a Docker engine, idempotently:
#   1. debootstrap (minbase) a Debian bookworm root filesystem into .tools/image/, made
#      like debian:bookworm-slim (the Dockerfile's base, on Docker Hub, which CI cannot
#      reach): dpkg path excludes and apt settings as the slim image's, deb822 sources
#      with bookworm-updates and bookworm-security; skipped when present and stamped;
#   2. import it as localhost/capgate-base:bookworm (PATH and CMD as the real image's);
#      skipped when that image exists and carries the rootfs's stamp;
#   3. buildah bud the Dockerfile FROM it (--build-arg BASE_IMAGE=...), tagged as the
#      Helm chart's default image: <values.yaml image.repository>:<Chart.yaml appVersion>.
#      --layers: an unchanged step is a cache hit; --jobs 2: both stages at once.
#      pip in the build trusts this host's CA bundle (CA_BUNDLE, default Debian's), passed
#      as the Dockerfile's optional "ca-bundle" build secret: behind a TLS-intercepting
#      proxy PyPI is reachable from the build too; nothing of it lands in the image.
# Needs root (or sudo), buildah and debootstrap (scripts/bootstrap.sh installs them).
# Prints timings on stderr and the image reference as the last line on stdout.
# Measured on 2 CPUs: ~2 min from nothing (debootstrap ~45 s), ~8 s when nothing changed.
set -euo pipefail
cd "$(dirname "$0")/.."

SUITE="bookworm"
MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
BASE_IMAGE="localhost/capgate-base:${SUITE}"
CACHE="$PWD/.tools/image"
ROOTFS="$CACHE/rootfs-${SUITE}"
CA_BUNDLE="${CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}"
# Bump when the recipe below changes: the rootfs and the base image are then rebuilt.
RECIPE=1

SUDO=""
[ "$(id -u)" = "0" ] || SUDO="sudo"

DEBOOTSTRAP="$(command -v debootstrap || echo /usr/sbin/debootstrap)"
if ! command -v buildah >/dev/null 2>&1 || [ ! -x "$DEBOOTSTRAP" ]; then
  echo "build_image: buildah or debootstrap not found: run scripts/bootstrap.sh" >&2
  exit 1
fi

# Makes the debootstrapped tree $1 like debian:bookworm-slim: apt settings as the Docker
# images' (no package caches kept, no translations, gzipped indexes), deb822 sources with
# updates and security, the paths dpkg now excludes removed, no traces of this host.
slim_rootfs() {
  local root="$1"
  case "$root" in
    /*/rootfs-*.tmp) ;;
    *) echo "slim_rootfs: refusing $root" >&2 && return 1 ;;
  esac
  [ -x "$root/usr/bin/apt-get" ] || { echo "slim_rootfs: $root: no apt-get" >&2 && return 1; }
  local clean='"rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true";'
  printf '%s\n' "DPkg::Post-Invoke { $clean };" "APT::Update::Post-Invoke { $clean };" \
    'Dir::Cache::pkgcache "";' 'Dir::Cache::srcpkgcache "";' \
    >"$root/etc/apt/apt.conf.d/docker-clean"
  echo 'Acquire::Languages "none";' >"$root/etc/apt/apt.conf.d/docker-no-languages"
  echo 'Acquire::GzipIndexes "true";' >"$root/etc/apt/apt.conf.d/docker-gzip-indexes"
  echo 'Apt::AutoRemove::SuggestsImportant "false";' \
    >"$root/etc/apt/apt.conf.d/docker-autoremove-suggests"
  rm -f "$root/etc/apt/sources.list"
  printf '%s\n' 'Types: deb' 'URIs: http://deb.debian.org/debian' \
    'Suites: bookworm bookworm-updates' 'Components: main' \
    'Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg' '' \
    'Types: deb' 'URIs: http://deb.debian.org/debian-security' 'Suites: bookworm-security' \
    'Components: main' 'Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg' \
    >"$root/etc/apt/sources.list.d/debian.sources"
  # What debootstrap's first stage extracted before dpkg's excludes applied.
  find "$root/usr/share/doc" -mindepth 1 ! -type d ! -name copyright -delete
  find "$root/usr/share/doc" -mindepth 1 -type d -empty -delete
  find "$root/usr/share/locale" -mindepth 1 -maxdepth 1 ! -name locale.alias -exec rm -rf {} +
  local dir
  for dir in groff info linda lintian/overrides man; do
    if [ -d "$root/usr/share/$dir" ]; then
      find "$root/usr/share/$dir" -mindepth 1 -delete
    fi
  done
  # debootstrap's own files, caches, logs, and what it copied from this host.
  rm -rf "$root/debootstrap" "$root/etc/hostname" "$root/etc/resolv.conf"
  find "$root/var/lib/apt/lists" "$root/var/cache/apt" "$root/tmp" -mindepth 1 \
    ! -type d ! -name lock -delete
  find "$root/var/log" -type f \( -name '*.log' -o -path '*/apt/*' \) -delete
}

if [ "${1:-}" = "--slim-rootfs" ]; then # (run as root, below)
  slim_rootfs "$2"
  exit 0
fi

now() { date +%s.%N; }
took() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }
T0="$(now)"

# The chart's default image (templates/_helpers.tpl "capgate.image"): image.repository,
# tag image.tag, which defaults to the chart's appVersion.
APP_VERSION="$(awk '$1 == "appVersion:" { gsub(/"/, "", $2); print $2; exit }' \
  helm/capgate/Chart.yaml)"
REPOSITORY="$(awk '/^image:/ { in_image = 1; next }
  in_image && /^[^[:space:]#]/ { exit }
  in_image && $1 == "repository:" { print $2; exit }' helm/capgate/values.yaml)"
if [ -z "$APP_VERSION" ] || [ -z "$REPOSITORY" ]; then
  echo "build_image: cannot read appVersion (helm/capgate/Chart.yaml) or image.repository" \
    "(helm/capgate/values.yaml)" >&2
  exit 1
fi
IMAGE="${REPOSITORY}:${APP_VERSION}"

# ---- 1. the stand-in for debian:bookworm-slim ----
STAMP="$(printf '%s\n' "$SUITE" "$MIRROR" minbase "recipe-$RECIPE" | sha256sum | cut -c1-16)"
t="$(now)"
if [ -d "$ROOTFS" ] && [ "$(cat "$ROOTFS.stamp" 2>/dev/null)" = "$STAMP" ]; then
  echo "build_image: $ROOTFS present (stamp $STAMP)" >&2
else
  echo "build_image: debootstrap --variant=minbase $SUITE into $ROOTFS" >&2
  mkdir -p "$CACHE"
  $SUDO rm -rf "$ROOTFS" "$ROOTFS.tmp" "$ROOTFS.stamp"
  # dpkg's path excludes, as the slim image's (debuerreotype --slimify): no documentation,
  # man pages or translations in what apt installs later; removed from the base below.
  $SUDO mkdir -p "$ROOTFS.tmp/etc/dpkg/dpkg.cfg.d"
  printf '%s\n' \
    'path-exclude /usr/share/doc/*' \
    'path-include /usr/share/doc/*/copyright' \
    'path-exclude /usr/share/groff/*' \
    'path-exclude /usr/share/info/*' \
    'path-exclude /usr/share/linda/*' \
    'path-exclude /usr/share/lintian/overrides/*' \
    'path-exclude /usr/share/locale/*' \
    'path-include /usr/share/locale/locale.alias' \
    'path-exclude /usr/share/man/*' |
    $SUDO tee "$ROOTFS.tmp/etc/dpkg/dpkg.cfg.d/docker" >/dev/null
  # No fsync per file, as the Docker images' docker-apt-speedup (debootstrap's own dpkg
  # runs, and the Dockerfile's apt-get installs, are much faster).
  echo 'force-unsafe-io' | $SUDO tee "$ROOTFS.tmp/etc/dpkg/dpkg.cfg.d/docker-apt-speedup" \
    >/dev/null
  if ! $SUDO "$DEBOOTSTRAP" --variant=minbase "$SUITE" "$ROOTFS.tmp" "$MIRROR" \
    >"$CACHE/debootstrap.log" 2>&1; then
    tail -n 30 "$CACHE/debootstrap.log" >&2
    echo "build_image: debootstrap failed (log: $CACHE/debootstrap.log)" >&2
    exit 1
  fi
  $SUDO bash "$PWD/scripts/build_image.sh" --slim-rootfs "$ROOTFS.tmp"
  $SUDO mv "$ROOTFS.tmp" "$ROOTFS"
  echo "$STAMP" | $SUDO tee "$ROOTFS.stamp" >/dev/null
fi
echo "build_image: [timing] base rootfs: $(took "$t") s" >&2

# ---- 2. the rootfs as a local image ----
t="$(now)"
label='{{index .OCIv1.Config.Labels "capgate.base.stamp"}}'
if [ "$($SUDO buildah inspect --type image --format "$label" "$BASE_IMAGE" 2>/dev/null)" \
  = "$STAMP" ]; then
  echo "build_image: $BASE_IMAGE present (stamp $STAMP)" >&2
else
  echo "build_image: importing $ROOTFS as $BASE_IMAGE" >&2
  ctr="$($SUDO buildah from --pull=never scratch)"
  trap '$SUDO buildah rm "$ctr" >/dev/null 2>&1 || true' EXIT
  mnt="$($SUDO buildah mount "$ctr")"
  $SUDO tar -C "$ROOTFS" --numeric-owner -cf - . | $SUDO tar -C "$mnt" --numeric-owner -xpf -
  $SUDO buildah umount "$ctr" >/dev/null
  # debian:bookworm-slim's config: PATH and CMD ["bash"].
  $SUDO buildah config \
    --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    --cmd '["bash"]' \
    --label "capgate.base.stamp=$STAMP" \
    --label "capgate.base.description=stand-in for debian:${SUITE}-slim (debootstrap minbase)" \
    "$ctr"
  $SUDO buildah commit --quiet --rm "$ctr" "$BASE_IMAGE" >/dev/null
  trap - EXIT
fi
echo "build_image: [timing] base image: $(took "$t") s" >&2

# ---- 3. the Dockerfile ----
t="$(now)"
# pip in the build trusts what this host trusts (a TLS-intercepting proxy's CA included):
# the Dockerfile's optional "ca-bundle" build secret, mounted for the pip step only.
secret=()
if [ -s "$CA_BUNDLE" ]; then
  secret=(--secret "id=ca-bundle,src=$CA_BUNDLE")
fi
echo "build_image: buildah bud -t $IMAGE (FROM $BASE_IMAGE)" >&2
$SUDO buildah bud \
  --isolation chroot \
  --pull=never \
  --network host \
  --layers \
  --force-rm \
  --jobs 2 \
  "${secret[@]}" \
  --build-arg "BASE_IMAGE=$BASE_IMAGE" \
  -t "$IMAGE" \
  -f Dockerfile \
  . >&2
echo "build_image: [timing] buildah bud: $(took "$t") s" >&2
echo "build_image: [timing] total: $(took "$T0") s" >&2
echo "$IMAGE"
