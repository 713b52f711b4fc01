#!/usr/bin/env bash
# Builds the tools orgforge needs from source through the Go module proxy and
# caches them outside the repository, keyed by version. Prints nothing but
# progress on stderr; on success prints the requested path on stdout.
#
#   hack/tools.sh envtest     -> folder with kube-apiserver, kube-controller-manager and etcd
#   hack/tools.sh versitygw   -> path of the versitygw binary
#   hack/tools.sh postgres    -> folder with Debian's PostgreSQL server binaries
#   hack/tools.sh all         -> all of the above
set -euo pipefail

K8S_VERSION="${K8S_VERSION:-1.37.2}"
K8S_STAGING_VERSION="${K8S_STAGING_VERSION:-0.37.2}"
ETCD_VERSION="${ETCD_VERSION:-3.6.16}"
VERSITYGW_VERSION="${VERSITYGW_VERSION:-1.8.0}"
CACHE="${ORGFORGE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/orgforge}"

log() { echo "tools: $*" >&2; }

# build_kube builds the named commands of k8s.io/kubernetes (kube-apiserver,
# kube-controller-manager) into dest. They share one scratch module, so one
# `go get` resolves them all and one `go build` compiles their common packages
# once.
build_kube() {
	local dest="$1" work pkgs=() cmd
	shift
	for cmd in "$@"; do pkgs+=("k8s.io/kubernetes/cmd/${cmd}"); done
	work="$(mktemp -d)"
	log "building $* v${K8S_VERSION} from source (about 12 minutes on 2 idle cores for both when cold, 4 of them for kube-controller-manager)"
	(
		cd "$work"
		go mod init orgforge.local/envtest-build >/dev/null 2>&1
		gomod="$(go mod download -json "k8s.io/kubernetes@v${K8S_VERSION}" | sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",\{0,1\}$/\1/p')"
		[ -f "$gomod" ] || { log "could not read go.mod of k8s.io/kubernetes v${K8S_VERSION}"; exit 1; }
		# kubernetes maps its staging modules to ./staging; point each at the published release.
		sed -n 's#^[[:space:]]*\(k8s\.io/[A-Za-z0-9._-]*\) => \./staging/.*#\1#p' "$gomod" | sort -u | while read -r m; do
			go mod edit -replace "${m}=${m}@v${K8S_STAGING_VERSION}"
		done
		go mod edit -require "k8s.io/kubernetes@v${K8S_VERSION}"
		local gets=()
		for p in "${pkgs[@]}"; do gets+=("${p}@v${K8S_VERSION}"); done
		go get "${gets[@]}" >/dev/null 2>&1 || go get "${gets[@]}"
		local minor="${K8S_VERSION#*.}"; minor="${minor%%.*}"
		mkdir -p "$work/bin"
		CGO_ENABLED=0 go build -trimpath -o "$work/bin/" \
			-ldflags "-s -w -X k8s.io/component-base/version.gitVersion=v${K8S_VERSION} -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=${minor}" \
			"${pkgs[@]}"
	)
	# Each binary lands in dest by a rename, so an interrupted build never
	# leaves a half-written one behind.
	for cmd in "$@"; do
		mv "$work/bin/$cmd" "$dest/$cmd.tmp"
		mv "$dest/$cmd.tmp" "$dest/$cmd"
	done
	rm -rf "$work"
}

build_etcd() {
	local dest="$1" work
	work="$(mktemp -d)"
	log "building etcd v${ETCD_VERSION} from source"
	(
		cd "$work"
		go mod init orgforge.local/etcd-build >/dev/null 2>&1
		go get "go.etcd.io/etcd/server/v3@v${ETCD_VERSION}" >/dev/null 2>&1 || go get "go.etcd.io/etcd/server/v3@v${ETCD_VERSION}"
		CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$dest/etcd.tmp" go.etcd.io/etcd/server/v3
	)
	rm -rf "$work"
	mv "$dest/etcd.tmp" "$dest/etcd"
}

envtest() {
	local dest="$CACHE/envtest/${K8S_VERSION}-etcd${ETCD_VERSION}"
	mkdir -p "$dest"
	# A folder cached before a command joined the list gets only what it lacks.
	local cmd missing=()
	for cmd in kube-apiserver kube-controller-manager; do
		[ -x "$dest/$cmd" ] || missing+=("$cmd")
	done
	[ "${#missing[@]}" -eq 0 ] || build_kube "$dest" "${missing[@]}"
	[ -x "$dest/etcd" ] || build_etcd "$dest"
	echo "$dest"
}

versitygw() {
	local dest="$CACHE/versitygw/${VERSITYGW_VERSION}"
	if [ ! -x "$dest/versitygw" ]; then
		log "installing versitygw v${VERSITYGW_VERSION}"
		mkdir -p "$dest"
		GOBIN="$dest" CGO_ENABLED=0 go install "github.com/versity/versitygw/cmd/versitygw@v${VERSITYGW_VERSION}"
	fi
	echo "$dest/versitygw"
}

postgres() {
	local bin
	bin="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n1 || true)"
	if [ -z "$bin" ] || [ ! -x "$bin/initdb" ] || [ ! -x "$bin/postgres" ]; then
		if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
			log "installing Debian's postgresql package"
			DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2
			DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >&2
			bin="$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n1)"
		else
			log "PostgreSQL server binaries not found under /usr/lib/postgresql/*/bin;"
			log "install them (Debian/Ubuntu: apt-get install postgresql) and run again"
			exit 1
		fi
	fi
	echo "$bin"
}

case "${1:-all}" in
envtest) envtest ;;
versitygw) versitygw ;;
postgres) postgres ;;
all) envtest; versitygw; postgres ;;
*) echo "usage: $0 envtest|versitygw|postgres|all" >&2; exit 2 ;;
esac
