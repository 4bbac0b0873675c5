// Package api is the wire contract of slotd's HTTP API v1 (DESIGN §3),
// spelled once: the stable error codes with their HTTP statuses and
// titles, the booking statuses, and the JSON shapes of bookings, problems,
// availability and pages. The server's edge (httpapi) and the peer
// comparison's edge (bench/peers) answer in these shapes and codes.
// Clients — the load tool (loadtest), the benchmarks' generators, a
// portal written in Go — use package client, generated from
// docs/openapi.yaml, which httpapi's tests hold to this package; they may
// branch on the codes here.
//
// The edge renders the hot answers with hand-written appenders for speed;
// its tests hold every appender to what encoding/json makes of these
// types, so a field renamed here fails there. docs/openapi.yaml describes
// the same shapes; httpapi's tests hold it to the codes here.
//
// The package imports the standard library and package allocator, whose
// status names and office config it shares rather than spelling them a
// second time; it holds no behaviour beyond its tables, and its types are
// plain values.
package api
