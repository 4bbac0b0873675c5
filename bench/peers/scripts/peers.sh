#!/usr/bin/env bash
# Runs the peer comparison (DESIGN §6): starts PostgreSQL and Redis on
# 127.0.0.1 with temporary data directories and every write synced
# (PostgreSQL: fsync=on, synchronous_commit=on; Redis: appendonly yes,
# appendfsync always), runs the Go program with their addresses in
# SLOTD_PEERS_PG and SLOTD_PEERS_REDIS, and stops both and removes the
# directories on exit, however it exits.
#
# Where they come from is peers-select.sh's choice: the containers of
# deploy/compose.yaml's profile "peers" when a container engine answers
# and both images are present locally (nothing is pulled), else the
# Debian packages, installed if missing. Either way their data sits in
# the same temporary directory as slotd's, so all three sync to the same
# disk.
#
# Usage: bench/peers/scripts/peers.sh [flags of bench/cmd/peers]
# Environment: GO (default go), PEERS_TMP (parent of the temporary
# directories; default the system's), and peers-select.sh's:
# PEERS_ENGINE (auto, containers, packages), PEERS_POSTGRES_IMAGE,
# PEERS_REDIS_IMAGE, DOCKER.
set -euo pipefail

cd "$(dirname "$0")/../../.."
GO=${GO:-go}
export PEERS_POSTGRES_IMAGE=${PEERS_POSTGRES_IMAGE:-postgres:15}
export PEERS_REDIS_IMAGE=${PEERS_REDIS_IMAGE:-redis:7}

selected=$(bench/peers/scripts/peers-select.sh)
read -r MODE COMPOSE <<<"$selected"

if [ "$MODE" = packages ]; then
	need_install=()
	command -v redis-server >/dev/null || need_install+=(redis-server)
	ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need_install+=(postgresql)
	if ((${#need_install[@]})); then
		as_root=()
		[ "$(id -u)" -eq 0 ] || as_root=(sudo)
		echo "peers: installing ${need_install[*]}" >&2
		if ! "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y "${need_install[@]}" >&2; then
			"${as_root[@]}" apt-get update >&2
			"${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y "${need_install[@]}" >&2
		fi
	fi
	# The Debian packages start their own services; this script uses its
	# own instances and leaves those alone.
	PGBIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
fi

# free_port prints a TCP port no socket uses, listening or connected. It
# picks below the kernel's range for outgoing connections, so that no
# client connection takes the port between this check and the server's
# bind.
free_port() {
	local p low=32768
	read -r low _ </proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || true
	[ "$low" -gt 11000 ] || low=32768
	for _ in $(seq 1 200); do
		p=$((10000 + RANDOM % (low - 10000)))
		# awk reads the whole table (no early exit that a pipefail would
		# count), and a missing tcp6 table (IPv6 off) is no error.
		if ! { cat /proc/net/tcp /proc/net/tcp6 2>/dev/null || true; } |
			awk -v h="$(printf ':%04X' "$p")" '$2 ~ h"$" {f = 1} END {exit !f}' &&
			! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
			echo "$p"
			return
		fi
	done
	echo "peers: no free port found" >&2
	return 1
}

TMP=$(mktemp -d "${PEERS_TMP:-${TMPDIR:-/tmp}}/slotd-peers.XXXXXX")
PGDATA=$TMP/pg
REDISDIR=$TMP/redis
mkdir -p "$PGDATA" "$REDISDIR" "$TMP/slotd"
PG_STARTED=
REDIS_PID=
CONTAINERS=

# compose runs Compose on the peers' profile, as one project per run.
PROJECT=slotd-peers-$$
compose() {
	# shellcheck disable=SC2086 # COMPOSE is "docker compose" or "docker-compose"
	$COMPOSE -f deploy/compose.yaml -p "$PROJECT" --profile peers "$@"
}

# PostgreSQL refuses to run as root: run it as the postgres user then.
as_pg=()
if [ "$MODE" = packages ] && [ "$(id -u)" -eq 0 ]; then
	chown -R postgres: "$PGDATA"
	chmod 755 "$TMP"
	as_pg=(runuser -u postgres --)
fi

cleanup() {
	local rc=$?
	if [ -n "$PG_STARTED" ]; then
		"${as_pg[@]}" "$PGBIN/pg_ctl" -D "$PGDATA" -m fast -w stop >/dev/null 2>&1 || true
	fi
	if [ -n "$REDIS_PID" ]; then
		kill "$REDIS_PID" 2>/dev/null || true
		wait "$REDIS_PID" 2>/dev/null || true
	fi
	if [ -n "$CONTAINERS" ]; then
		compose down --timeout 30 >/dev/null 2>&1 || true
		# The servers' files belong to their users inside the containers
		# (other uids on this host): remove them from a container.
		compose run --rm --no-deps --user 0:0 --entrypoint sh postgres -c 'rm -rf /var/lib/postgresql/data/pgdata' >/dev/null 2>&1 || true
		compose run --rm --no-deps --user 0:0 --entrypoint sh redis -c 'find /data -mindepth 1 -delete' >/dev/null 2>&1 || true
		compose down --timeout 30 >/dev/null 2>&1 || true
	fi
	rm -rf "$TMP"
	exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

PGPORT=$(free_port)
REDISPORT=$(free_port)
while [ "$REDISPORT" = "$PGPORT" ]; do REDISPORT=$(free_port); done
if [ "$MODE" = containers ]; then
	export PEERS_DATA=$TMP PEERS_PG_PORT=$PGPORT PEERS_REDIS_PORT=$REDISPORT
	CONTAINERS=1
	compose up -d --no-build postgres redis >&2
	# Ready: PostgreSQL answers on TCP once its first-start initdb is
	# done and it has restarted for good; Redis answers PING.
	for _ in $(seq 1 600); do
		compose exec -T postgres pg_isready -q -h 127.0.0.1 -U postgres >/dev/null 2>&1 &&
			compose exec -T redis redis-cli ping >/dev/null 2>&1 && break
		sleep 0.1
	done
	if ! compose exec -T postgres pg_isready -q -h 127.0.0.1 -U postgres >/dev/null 2>&1 ||
		! compose exec -T redis redis-cli ping >/dev/null 2>&1; then
		compose logs --tail 50 >&2 || true
		exit 1
	fi
	PGVERSION=$(compose exec -T postgres postgres --version | awk '{print $3}')
	REDISVERSION=$(compose exec -T redis redis-server --version | awk '{print $3}' | cut -d= -f2)
else
	"${as_pg[@]}" "$PGBIN/initdb" -D "$PGDATA" -U postgres -A trust -E UTF8 --no-locale >"$TMP/initdb.log" 2>&1 ||
		{ cat "$TMP/initdb.log" >&2; exit 1; }
	"${as_pg[@]}" "$PGBIN/pg_ctl" -D "$PGDATA" -l "$PGDATA/server.log" -w -t 60 start -o \
		"-c listen_addresses=127.0.0.1 -p $PGPORT -c unix_socket_directories=$PGDATA \
		 -c fsync=on -c synchronous_commit=on -c full_page_writes=on \
		 -c max_connections=600 -c shared_buffers=256MB" >/dev/null ||
		{ cat "$PGDATA/server.log" >&2; exit 1; }
	PG_STARTED=1

	redis-server --port "$REDISPORT" --bind 127.0.0.1 --dir "$REDISDIR" \
		--appendonly yes --appendfsync always --save '' --protected-mode yes \
		--maxclients 4096 --daemonize no --logfile "$REDISDIR/redis.log" &
	REDIS_PID=$!
	for _ in $(seq 1 100); do
		redis-cli -p "$REDISPORT" ping >/dev/null 2>&1 && break
		sleep 0.1
	done
	redis-cli -p "$REDISPORT" ping >/dev/null || { cat "$REDISDIR/redis.log" >&2; exit 1; }
	PGVERSION=$("$PGBIN/postgres" --version | awk '{print $3}')
	REDISVERSION=$(redis-server --version | awk '{print $3}' | cut -d= -f2)
fi

export SLOTD_PEERS_PG="postgres://postgres@127.0.0.1:$PGPORT/postgres?sslmode=disable"
export SLOTD_PEERS_REDIS="redis://127.0.0.1:$REDISPORT/0"
echo "peers: PostgreSQL $PGVERSION on 127.0.0.1:$PGPORT, Redis $REDISVERSION on 127.0.0.1:$REDISPORT ($MODE), data in $TMP" >&2

if [ -n "${PEERS_CMD:-}" ]; then
	# Used by make to run the tests against the live peers instead.
	eval "$PEERS_CMD"
else
	"$GO" build -o "$TMP/peers" ./bench/cmd/peers
	"$TMP/peers" -data-dir "$TMP/slotd" "$@"
fi
