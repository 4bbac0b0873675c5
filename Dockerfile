# slotd's container image: FROM scratch over a static binary built on the
# host, so building it pulls no base image. Build it with `make image`
# (IMAGE=name:tag to name it), which builds the binary with CGO_ENABLED=0
# and hands docker build a context of two entries: the binary `slotd`
# and an empty `data/`.
#
# Nothing else is needed at run time: the binary embeds the time zone
# database (offices name IANA zones), slotd makes no outgoing TLS
# connections (no CA certificates), and it runs as a numeric user (no
# /etc/passwd).
#
#   docker run -d --name slotd -v slotd-data:/data \
#     -v "$PWD/keys.json:/etc/slotd/keys.json:ro" -e SLOTD_KEYS=/etc/slotd/keys.json \
#     -p 8080:8080 -p 127.0.0.1:9090:9090 slotd:TAG
#
# The admin listener (9090: /metrics, /healthz, /readyz, /debug/pprof/)
# answers without a key. Inside the container it binds 0.0.0.0 so that it
# can be published at all: publish it only on loopback or a management
# network (as above), never on a public address.
FROM scratch

ARG VERSION=devel
ARG COMMIT=unknown
LABEL org.opencontainers.image.title="slotd" \
      org.opencontainers.image.description="Appointment slot allocation for public-service offices" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${COMMIT}"

COPY slotd /slotd
# The data directory belongs to the user slotd runs as; a named volume
# mounted here starts as a copy of it, ownership included.
COPY --chown=65532:65532 data /data

USER 65532:65532
ENV SLOTD_DATA=/data \
    SLOTD_ADDR=:8080 \
    SLOTD_ADMIN_ADDR=0.0.0.0:9090
VOLUME /data
EXPOSE 8080 9090
# SIGTERM drains (-shutdown-delay, then up to 30 s of in-flight
# requests): give the runtime a stop timeout longer than both, e.g.
# docker stop -t 45.
STOPSIGNAL SIGTERM
ENTRYPOINT ["/slotd"]
