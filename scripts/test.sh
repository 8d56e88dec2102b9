#!/usr/bin/env bash
# shellcheck disable=SC2317 # functions run from traps and wait_until look unreachable
# Runs every backupd test with the services the tests need. It:
#   1. installs missing system tools (scripts/ensure-tools.sh: redis-server,
#      gcc for -race, python3-venv);
#   2. creates .venv/ with the pinned moto[server] and grpcio-tools from
#      scripts/requirements-test.txt (reused while the pins are unchanged);
#   3. starts redis-server (no persistence) and moto_server, each on a free
#      loopback port, and waits until both answer;
#   4. runs `go test -race -count=1 -timeout 20m ./...` with
#        BACKUPD_TEST_REDIS_ADDR=127.0.0.1:PORT
#        BACKUPD_TEST_MOTO_URL=http://127.0.0.1:PORT
#        BACKUPD_TEST_MOTO_SERVER=.venv/bin/moto_server (absolute path)
#        BACKUPD_TEST_PYTHON=.venv/bin/python (absolute path)
#        AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_REGION=us-east-1
#      (any other AWS_* variable of the caller is removed from the tests'
#      environment, so a developer's real profile can never be used);
#   5. stops both servers on exit, also on failure or Ctrl-C; their logs are
#      kept, and printed, only when something failed.
#
# Usage:
#   scripts/test.sh                      # everything
#   scripts/test.sh -run TestCreate -v   # extra arguments go to `go test`
#   BACKUPD_TEST_PKGS=./service/... scripts/test.sh   # other packages
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

REQUIREMENTS="$ROOT/scripts/requirements-test.txt"
VENV="$ROOT/.venv"
STAMP="$VENV/.backupd-requirements.sha256"
START_TIMEOUT_S=60

log() { printf 'test.sh: %s\n' "$*" >&2; }

# --- system tools -----------------------------------------------------------
"$ROOT/scripts/ensure-tools.sh"

# --- python venv with pinned moto ---------------------------------------------
moto_pin="$(sed -n 's/^moto\[server\]==\([^[:space:]]*\).*/\1/p' "$REQUIREMENTS")"
if [[ -z "$moto_pin" ]]; then
	log "no moto[server]==VERSION line in $REQUIREMENTS"
	exit 1
fi
want_stamp="$(sha256sum "$REQUIREMENTS" | cut -d' ' -f1) $(python3 -c 'import sys; print(sys.version.split()[0])')"

venv_ok() {
	[[ -x "$VENV/bin/python" && -x "$VENV/bin/moto_server" && -f "$STAMP" ]] &&
		[[ "$(cat "$STAMP")" == "$want_stamp" ]] &&
		[[ "$("$VENV/bin/python" -c 'import moto; print(moto.__version__)' 2>/dev/null)" == "$moto_pin" ]] &&
		"$VENV/bin/python" -c 'import grpc_tools.protoc, grpc_status' 2>/dev/null
}

if ! venv_ok; then
	if [[ -d "$VENV" ]] && ! "$VENV/bin/python" -c 'import sys' >/dev/null 2>&1; then
		log "removing broken $VENV"
		rm -rf "$VENV"
	fi
	log "installing moto[server]==$moto_pin into $VENV"
	python3 -m venv "$VENV"
	"$VENV/bin/python" -m pip install --disable-pip-version-check -q -r "$REQUIREMENTS"
	printf '%s\n' "$want_stamp" >"$STAMP"
	venv_ok || {
		log "venv at $VENV does not have moto $moto_pin after install"
		exit 1
	}
fi
PY="$VENV/bin/python"

# --- servers --------------------------------------------------------------------
WORKDIR="$(mktemp -d "${TMPDIR:-/tmp}/backupd-test.XXXXXX")"
PIDS=()

stop_servers() {
	local pid
	for pid in "${PIDS[@]}"; do
		kill "$pid" 2>/dev/null || true
	done
	for pid in "${PIDS[@]}"; do
		# Wait up to 5 s for a clean exit, then force it.
		for _ in $(seq 50); do
			kill -0 "$pid" 2>/dev/null || break
			sleep 0.1
		done
		kill -9 "$pid" 2>/dev/null || true
		wait "$pid" 2>/dev/null || true
	done
	PIDS=()
}

GOTEST_PID=""
on_exit() {
	local rc=$?
	trap - EXIT INT TERM
	if [[ -n "$GOTEST_PID" ]] && kill -0 "$GOTEST_PID" 2>/dev/null; then
		log "stopping go test (process group $GOTEST_PID)"
		kill -TERM -- "-$GOTEST_PID" 2>/dev/null || true
		wait "$GOTEST_PID" 2>/dev/null || true
	fi
	stop_servers
	if ((rc != 0)); then
		log "failed (exit $rc); server logs are in $WORKDIR"
		local f
		for f in "$WORKDIR"/*.log; do
			[[ -f "$f" ]] || continue
			printf '\n===== %s (last 40 lines) =====\n' "$f" >&2
			tail -n 40 "$f" >&2 || true
		done
	else
		rm -rf "$WORKDIR"
	fi
	exit "$rc"
}
trap on_exit EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

free_port() {
	"$PY" -c 'import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])'
}

# wait_until PID NAME CHECK...: runs CHECK until it succeeds, the process dies,
# or START_TIMEOUT_S passes.
wait_until() {
	local pid=$1 name=$2
	shift 2
	local deadline=$((SECONDS + START_TIMEOUT_S))
	until "$@" >/dev/null 2>&1; do
		if ! kill -0 "$pid" 2>/dev/null; then
			log "$name exited during start-up"
			return 1
		fi
		if ((SECONDS >= deadline)); then
			log "$name did not answer within ${START_TIMEOUT_S}s"
			return 1
		fi
		sleep 0.2
	done
}

redis_ping() {
	# Plain RESP over bash's /dev/tcp, so redis-cli is not needed.
	local port=$1 reply=""
	exec 3<>"/dev/tcp/127.0.0.1/$port" || return 1
	printf 'PING\r\n' >&3
	IFS= read -r -t 2 reply <&3 || true
	exec 3<&- 3>&-
	[[ "$reply" == "+PONG"* ]]
}

http_ok() {
	"$PY" -c 'import sys, urllib.request
urllib.request.urlopen(sys.argv[1], timeout=2).read()' "$1"
}

# start_server NAME CHECK_FN CMD...: CMD and CHECK_FN may use the word PORT,
# replaced by a fresh free port; retried on another port if the first is
# taken between choosing and binding. Sets STARTED_PORT.
start_server() {
	local name=$1 check=$2
	shift 2
	local attempt port pid args a
	for attempt in 1 2 3; do
		port="$(free_port)"
		args=()
		for a in "$@"; do args+=("${a//PORT/$port}"); done
		"${args[@]}" >>"$WORKDIR/$name.log" 2>&1 &
		pid=$!
		PIDS+=("$pid")
		if wait_until "$pid" "$name" "$check" "$port"; then
			STARTED_PORT=$port
			log "$name listening on 127.0.0.1:$port (pid $pid)"
			return 0
		fi
		kill "$pid" 2>/dev/null || true
		wait "$pid" 2>/dev/null || true
		log "$name attempt $attempt failed; retrying"
	done
	return 1
}

moto_check() { http_ok "http://127.0.0.1:$1/moto-api/"; }

start_server redis redis_ping \
	redis-server --bind 127.0.0.1 --port PORT --save '' --appendonly no \
	--dir "$WORKDIR" --daemonize no --protected-mode yes --logfile ''
REDIS_PORT=$STARTED_PORT

start_server moto moto_check "$VENV/bin/moto_server" -H 127.0.0.1 -p PORT
MOTO_PORT=$STARTED_PORT

# --- tests ------------------------------------------------------------------------
export BACKUPD_TEST_REDIS_ADDR="127.0.0.1:$REDIS_PORT"
export BACKUPD_TEST_MOTO_URL="http://127.0.0.1:$MOTO_PORT"
# For tests that need a moto of their own (testenv.StartMoto), e.g. to turn
# on moto's IAM enforcement, which is global to one server.
export BACKUPD_TEST_MOTO_SERVER="$VENV/bin/moto_server"
# For tests of the clients other teams generate (grpcio-tools, grpcio-status).
export BACKUPD_TEST_PYTHON="$PY"
read -r -a pkgs <<<"${BACKUPD_TEST_PKGS:-./...}"

log "go test -race -count=1 -timeout 20m $* ${pkgs[*]}"
# go test runs in its own process group (set -m), waited for in the
# background, so that a signal to this script stops it and its test binaries
# at once (on_exit) instead of waiting for them to finish.
set -m
(
	# The AWS settings below are for the test process only: drop whatever
	# AWS_* the caller had (profiles, real keys, endpoints).
	while IFS= read -r v; do unset "$v"; done < <(compgen -e | grep '^AWS_' || true)
	export AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_REGION=us-east-1
	export AWS_EC2_METADATA_DISABLED=true AWS_CONFIG_FILE=/dev/null AWS_SHARED_CREDENTIALS_FILE=/dev/null
	exec go test -race -count=1 -timeout 20m "$@" "${pkgs[@]}"
) </dev/null &
GOTEST_PID=$!
set +m
rc=0
wait "$GOTEST_PID" || rc=$?
GOTEST_PID=""
exit "$rc"
