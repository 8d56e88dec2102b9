#!/usr/bin/env bash
# Installs the system tools that backupd's tests need and a fresh Debian
# machine may lack, through apt-get, and only those that are missing:
#   redis-server          the Redis-backed tests run against a real server
#   gcc, libc6-dev        `go test -race` needs cgo
#   make                  .ci/run calls `make checkgenerate` and `make lint`
#   python3, python3-venv scripts/test.sh puts moto in a project-local venv
# Go itself is not installed here (Debian's is too old): it must be on PATH.
#
# Usage: scripts/ensure-tools.sh   (idempotent; quiet when nothing is missing)
set -euo pipefail

missing=()
have() { command -v "$1" >/dev/null 2>&1; }

have redis-server || missing+=(redis-server)
have make || missing+=(make)
if ! have gcc; then
	missing+=(gcc libc6-dev)
fi
if ! have python3; then
	missing+=(python3 python3-venv)
elif ! python3 -c 'import ensurepip, venv' >/dev/null 2>&1; then
	# Debian's python3 ships venv without ensurepip; pyenv's has both.
	missing+=(python3-venv)
fi

if ((${#missing[@]} > 0)); then
	if ! have apt-get; then
		echo "ensure-tools: missing ${missing[*]} and no apt-get to install them" >&2
		exit 1
	fi
	sudo=()
	if [[ "$(id -u)" != 0 ]]; then
		have sudo || {
			echo "ensure-tools: need root (or sudo) to apt-get install ${missing[*]}" >&2
			exit 1
		}
		sudo=(sudo)
	fi
	echo "ensure-tools: apt-get install ${missing[*]}" >&2
	"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq
	"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
		--no-install-recommends "${missing[@]}" >/dev/null
fi

if ! have go; then
	echo "ensure-tools: go is not on PATH; install the Go toolchain named in go.mod" >&2
	exit 1
fi
