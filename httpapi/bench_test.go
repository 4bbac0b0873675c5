package httpapi_test

// Benchmarks of the edge over loopback with the real journal: availability
// reads and durable bookings at 64 and 512 connections, the load generator
// (internal/httpload, lean enough that the server's cost shows) in the
// same process on the same machine.

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"slotd/allocator"
	"slotd/httpapi"
	"slotd/internal/httpload"
	"slotd/internal/slotdtest"
	"slotd/wal"
)

// The bench offices and clock of every benchmark.
const benchOffices = slotdtest.BenchOffices

var benchNow = slotdtest.BenchNow

// startBenchServer serves a real engine on a synced Pebble journal.
func startBenchServer(b *testing.B) (addr, key string) {
	b.Helper()
	db, err := wal.Open(b.TempDir(), wal.Options{})
	if err != nil {
		b.Fatal(err)
	}
	e, _ := allocator.New(allocator.Config{Journal: db})
	slotdtest.PutBenchOffices(b, e)
	key = "bench-portal-key-0123456789"
	srv, err := httpapi.New(httpapi.Config{Engine: e, Idempotency: db, Events: db,
		Keys:   []httpapi.Key{{Key: key, Name: "bench", Scopes: []string{httpapi.ScopePortal}, Offices: []string{"*"}}},
		Secret: []byte("bench-secret-bench-secret-bench-secret"), Now: func() time.Time { return benchNow },
		RatePerSecond: 1e9, InFlightMax: 1 << 16})
	if err != nil {
		b.Fatal(err)
	}
	srv.SetReady(true)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	go srv.Serve(ln)
	b.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
		db.Close()
	})
	return ln.Addr().String(), key
}

// readLoads are the read benchmarks' connection counts and depths.
var readLoads = []struct{ conns, depth int }{{64, 1}, {512, 1}, {8, 64}}

func BenchmarkHTTPAvailability(b *testing.B) {
	addr, key := startBenchServer(b)
	// Every office and the nine days after the first: 576 distinct reads,
	// built once, as a portal's cache-less polling would send them.
	var reqs [][]byte
	for i := range benchOffices * 9 {
		reqs = append(reqs, fmt.Appendf(nil, "GET /v1/offices/o%03d/days/2026-12-0%d/slots?service=s HTTP/1.1\r\nHost: %s\r\nAuthorization: Bearer %s\r\n\r\n",
			i%benchOffices, 1+i/benchOffices, addr, key))
	}
	benchReads(b, addr, reqs)
}

// BenchmarkHTTPStaticAnswer is the machine's ceiling for the reads above:
// a bare fasthttp server answering every request with a fixed body of an
// availability answer's size, driven the same way. What separates
// BenchmarkHTTPAvailability from it is slotd's own work.
func BenchmarkHTTPStaticAnswer(b *testing.B) {
	body := bytes.Repeat([]byte{'x'}, 4500)
	srv := &fasthttp.Server{Handler: func(ctx *fasthttp.RequestCtx) {
		ctx.SetContentType("application/json")
		ctx.SetBody(body)
	}}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	go srv.Serve(ln)
	b.Cleanup(func() { srv.Shutdown() })
	addr := ln.Addr().String()
	benchReads(b, addr, [][]byte{fmt.Appendf(nil, "GET /v1/offices/o001/days/2026-12-01/slots?service=s HTTP/1.1\r\nHost: %s\r\nAuthorization: Bearer bench-portal-key-0123456789\r\n\r\n", addr)})
}

// benchReads sends reqs round-robin at each of readLoads.
func benchReads(b *testing.B, addr string, reqs [][]byte) {
	for _, c := range readLoads {
		name := fmt.Sprintf("conns=%d", c.conns)
		if c.depth > 1 {
			// Pipelined: one read and one write system call serve many
			// requests, so the server's own work shows.
			name = fmt.Sprintf("pipelined/conns=%d/depth=%d", c.conns, c.depth)
		}
		b.Run(name, func(b *testing.B) {
			res, err := httpload.Run(httpload.Config{Addr: addr, Conns: c.conns, Depth: c.depth, Requests: b.N,
				Request: func(i int) []byte { return reqs[i%len(reqs)] }})
			if err != nil {
				b.Fatal(err)
			}
			reportLoad(b, &res, 200)
		})
	}
}

// reportLoad reports an httpload run: requests/s, latency percentiles, and
// the answers whose status was not want.
func reportLoad(b *testing.B, res *httpload.Result, want int) {
	b.ReportMetric(res.PerSecond(), "req/s")
	b.ReportMetric(float64(res.Percentile(50).Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(res.Percentile(99).Microseconds())/1000, "p99-ms")
	b.ReportMetric(float64(res.Requests-res.Status[want]), "failed")
}

func BenchmarkHTTPDurableBooking(b *testing.B) {
	addr, key := startBenchServer(b)
	var base atomic.Int64 // seats are never reused across sub-benchmarks
	for _, conns := range []int{64, 512} {
		b.Run(fmt.Sprintf("conns=%d", conns), func(b *testing.B) {
			off := base.Add(int64(b.N) + 1)
			res, err := httpload.Run(httpload.Config{Addr: addr, Conns: conns, Depth: 1, Requests: b.N,
				Request: func(i int) []byte {
					n := off + int64(i)
					office, start := slotdtest.BenchSeat(n)
					body := fmt.Sprintf(`{"office":%q,"service":"s","applicant":"a%d","start":%q,"confirm":true}`,
						office, n, start.Format(time.RFC3339))
					return fmt.Appendf(nil, "POST /v1/bookings HTTP/1.1\r\nHost: %s\r\nAuthorization: Bearer %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s",
						addr, key, len(body), body)
				}})
			if err != nil {
				b.Fatal(err)
			}
			reportLoad(b, &res, 201)
			base.Add(int64(b.N))
		})
	}
}
