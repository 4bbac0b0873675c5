#!/bin/sh
# Runs a slotload scenario against a slotd started here with demo data on
# loopback ports and a throw-away data directory, then stops slotd.
#
#   loadtest/scripts/loadtest.sh [slotload flags...]
#
# Environment: SLOTD (binary, default bin/slotd), SLOTLOAD (bin/slotload),
# API_PORT (18080), ADMIN_PORT (19090), OUT (report directory,
# default loadtest/out), READY_TIMEOUT (seconds, 30).
set -eu

SLOTD=${SLOTD:-bin/slotd}
SLOTLOAD=${SLOTLOAD:-bin/slotload}
API_PORT=${API_PORT:-18080}
ADMIN_PORT=${ADMIN_PORT:-19090}
OUT=${OUT:-loadtest/out}
READY_TIMEOUT=${READY_TIMEOUT:-30}

data=$(mktemp -d "${TMPDIR:-/tmp}/slotload-data.XXXXXX")
log="$data.log"
pid=""
cleanup() {
	if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
		kill -TERM "$pid" 2>/dev/null || true
		i=0
		while kill -0 "$pid" 2>/dev/null && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
		kill -KILL "$pid" 2>/dev/null || true
	fi
	rm -rf "$data" "$log"
}
trap cleanup EXIT INT TERM

"$SLOTD" -demo -log-level warn -addr "127.0.0.1:$API_PORT" -admin-addr "127.0.0.1:$ADMIN_PORT" -data "$data" >"$log" 2>&1 &
pid=$!

# Ready after recovery: poll /readyz with a deadline.
deadline=$(($(date +%s) + READY_TIMEOUT))
until curl -fsS -o /dev/null "http://127.0.0.1:$ADMIN_PORT/readyz" 2>/dev/null; do
	if ! kill -0 "$pid" 2>/dev/null; then
		echo "loadtest: slotd exited before it was ready:" >&2
		cat "$log" >&2
		exit 2
	fi
	if [ "$(date +%s)" -ge "$deadline" ]; then
		echo "loadtest: slotd not ready after ${READY_TIMEOUT}s:" >&2
		cat "$log" >&2
		exit 2
	fi
	sleep 0.1
done
if [ ! -s "$data/dev-keys.json" ]; then
	echo "loadtest: slotd wrote no $data/dev-keys.json" >&2
	exit 2
fi

status=0
"$SLOTLOAD" -url "http://127.0.0.1:$API_PORT" -keys-file "$data/dev-keys.json" -out "$OUT" "$@" || status=$?
if [ $status -ne 0 ]; then
	echo "loadtest: slotload exited with $status; slotd log tail:" >&2
	tail -n 20 "$log" >&2
fi
exit $status
