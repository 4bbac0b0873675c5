#!/bin/sh
# Starts a three-node slotd cluster on loopback with the demo offices:
# make cluster. Node N keeps its data in $DATA/nodeN, listens for the API
# on 127.0.0.1:808N, for its admin routes on 127.0.0.1:909N and for its
# peers on 127.0.0.1:700N. The nodes share node 1's development keys and
# ticket secret. Ctrl-C stops all three.
set -eu
BIN=${BIN:-./bin/slotd}
DATA=${DATA:-./data/cluster}
GROUPS_COUNT=${GROUPS_COUNT:-1}
PEERS=1=127.0.0.1:7001,2=127.0.0.1:7002,3=127.0.0.1:7003
EDGES=1=127.0.0.1:8081,2=127.0.0.1:8082,3=127.0.0.1:8083
mkdir -p "$DATA/node1" "$DATA/node2" "$DATA/node3"
pids=""
stop() {
	for p in $pids; do kill "$p" 2>/dev/null || true; done
	wait
}
trap stop INT TERM EXIT
start() {
	"$BIN" -demo -node-id "$1" -peers "$PEERS" -edges "$EDGES" -groups "$GROUPS_COUNT" \
		-addr "127.0.0.1:808$1" -admin-addr "127.0.0.1:909$1" -data "$DATA/node$1" &
	pids="$pids $!"
}
start 1
# Node 1 writes the development keys and the ticket secret; the others
# must answer with the same.
i=0
while [ ! -s "$DATA/node1/dev-keys.json" ] || [ ! -s "$DATA/node1/ticket-secret" ]; do
	i=$((i + 1))
	[ "$i" -gt 100 ] && { echo "node 1 did not start" >&2; exit 1; }
	sleep 0.1
done
for n in 2 3; do
	cp "$DATA/node1/dev-keys.json" "$DATA/node1/ticket-secret" "$DATA/node$n/"
	start "$n"
done
echo "slotd cluster: API on 127.0.0.1:8081, :8082, :8083; status: $BIN cluster status -admin-addr 127.0.0.1:9091,127.0.0.1:9092,127.0.0.1:9093"
wait
