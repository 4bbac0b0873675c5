#!/usr/bin/env bash
# Chooses how the peer comparison runs PostgreSQL and Redis, and prints
# one line:
#
#   containers <compose command>   deploy/compose.yaml's profile "peers"
#   packages                       the Debian packages (peers.sh installs them if missing)
#
# Containers when a container engine answers, Compose is installed and
# both images are present locally (docker image inspect): nothing is
# ever pulled. Otherwise packages, with the reason on standard error.
#
# Environment: PEERS_ENGINE (auto, containers or packages; containers
# fails with the reason when it cannot run them), PEERS_POSTGRES_IMAGE
# (postgres:15) and PEERS_REDIS_IMAGE (redis:7), the same defaults as
# compose.yaml; DOCKER, the container engine's command (docker).
set -euo pipefail

DOCKER=${DOCKER:-docker}
PEERS_ENGINE=${PEERS_ENGINE:-auto}
PEERS_POSTGRES_IMAGE=${PEERS_POSTGRES_IMAGE:-postgres:15}
PEERS_REDIS_IMAGE=${PEERS_REDIS_IMAGE:-redis:7}

case "$PEERS_ENGINE" in
auto | containers | packages) ;;
*)
	echo "peers: PEERS_ENGINE=$PEERS_ENGINE: want auto, containers or packages" >&2
	exit 2
	;;
esac
if [ "$PEERS_ENGINE" = packages ]; then
	echo packages
	exit 0
fi

# check sets REASON to why the containers cannot run, or COMPOSE to the
# command that runs Compose when they can.
REASON=
COMPOSE=
check() {
	if ! command -v "$DOCKER" >/dev/null 2>&1; then
		REASON="no container engine ($DOCKER not found)"
		return
	fi
	if ! timeout 30 "$DOCKER" info >/dev/null 2>&1; then
		REASON="the container engine does not answer ($DOCKER info failed)"
		return
	fi
	local image
	for image in "$PEERS_POSTGRES_IMAGE" "$PEERS_REDIS_IMAGE"; do
		if ! timeout 30 "$DOCKER" image inspect "$image" >/dev/null 2>&1; then
			REASON="image $image is not present locally (load it first; nothing is pulled)"
			return
		fi
	done
	if timeout 30 "$DOCKER" compose version >/dev/null 2>&1; then
		COMPOSE="$DOCKER compose"
	elif command -v docker-compose >/dev/null 2>&1; then
		COMPOSE=docker-compose
	else
		REASON="neither $DOCKER compose nor docker-compose is installed"
	fi
}

check
if [ -n "$REASON" ]; then
	if [ "$PEERS_ENGINE" = containers ]; then
		echo "peers: PEERS_ENGINE=containers, but $REASON" >&2
		exit 1
	fi
	echo "peers: running the Debian packages: $REASON" >&2
	echo packages
	exit 0
fi
echo "peers: running $PEERS_POSTGRES_IMAGE and $PEERS_REDIS_IMAGE from deploy/compose.yaml" >&2
echo "containers $COMPOSE"
