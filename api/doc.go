// Package api is the wire contract of slotd's HTTP API v1 (DESIGN §3),
// spelled once: the stable error codes with their HTTP statuses and
// titles, the booking statuses, and the JSON shapes of bookings, problems,
// availability and pages. The server's edge (httpapi) answers in these
// shapes and codes, the load tool (loadtest) and the peer comparison's
// edge (bench/peers) read and write them, and a portal written in Go can
// decode into them.
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
