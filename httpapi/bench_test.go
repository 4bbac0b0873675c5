package httpapi_test

// Benchmarks of the edge over loopback with the real journal: availability
// reads and durable bookings at 64 and 512 connections, the load generator
// (a fasthttp client) in the same process on the same machine.

import (
	"context"
	"fmt"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"slotd/allocator"
	"slotd/httpapi"
	"slotd/internal/slotdtest"
	"slotd/wal"
)

const benchOffices = 64

var benchNow = time.Date(2026, 11, 30, 0, 30, 0, 0, time.FixedZone("MSK", 3*3600))

// startBenchServer serves a real engine on a synced Pebble journal.
func startBenchServer(b *testing.B) (addr, key string) {
	b.Helper()
	db, err := wal.Open(b.TempDir(), wal.Options{})
	if err != nil {
		b.Fatal(err)
	}
	e, _ := allocator.New(allocator.Config{Journal: db})
	for i := 0; i < benchOffices; i++ {
		if _, err := e.PutOffice(benchNow, slotdtest.BenchOffice(i), allocator.Meta{Actor: "bench"}); err != nil {
			b.Fatal(err)
		}
	}
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

// doer is the client side: one request, one answer.
type doer interface {
	Do(req *fasthttp.Request, resp *fasthttp.Response) error
}

// drive sends b.N requests over conns connections, one at a time on each,
// and reports requests/s and latency percentiles; build fills request i.
func drive(b *testing.B, addr string, conns int, build func(i int64, req *fasthttp.Request), wantStatus int) {
	client := &fasthttp.HostClient{Addr: addr, MaxConns: conns, ReadTimeout: 30 * time.Second, WriteTimeout: 30 * time.Second}
	driveWith(b, client, conns, build, wantStatus)
}

// drivePipelined sends b.N requests from callers goroutines over conns
// connections with HTTP/1.1 pipelining: each connection carries many
// requests in flight, so one read and one write system call serve many.
func drivePipelined(b *testing.B, addr string, conns, callers int, build func(i int64, req *fasthttp.Request), wantStatus int) {
	client := &fasthttp.PipelineClient{Addr: addr, MaxConns: conns, MaxPendingRequests: callers,
		ReadTimeout: 30 * time.Second, WriteTimeout: 30 * time.Second}
	driveWith(b, client, callers, build, wantStatus)
}

func driveWith(b *testing.B, client doer, callers int, build func(i int64, req *fasthttp.Request), wantStatus int) {
	var next, failed atomic.Int64
	lat := make([][]time.Duration, callers)
	var wg sync.WaitGroup
	b.ResetTimer()
	start := time.Now()
	for c := 0; c < callers; c++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
			defer fasthttp.ReleaseRequest(req)
			defer fasthttp.ReleaseResponse(resp)
			for {
				i := next.Add(1)
				if i > int64(b.N) {
					return
				}
				req.Reset()
				build(i, req)
				t := time.Now()
				err := client.Do(req, resp)
				lat[c] = append(lat[c], time.Since(t))
				if err != nil || resp.StatusCode() != wantStatus {
					failed.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	all := slices.Concat(lat...)
	slices.Sort(all)
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "req/s")
	b.ReportMetric(float64(all[len(all)/2].Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(all[len(all)*99/100].Microseconds())/1000, "p99-ms")
	b.ReportMetric(float64(failed.Load()), "failed")
}

func BenchmarkHTTPAvailability(b *testing.B) {
	addr, key := startBenchServer(b)
	build := func(i int64, req *fasthttp.Request) {
		req.SetRequestURI(fmt.Sprintf("http://%s/v1/offices/o%03d/days/2026-12-0%d/slots?service=s", addr, i%benchOffices, 1+i%9))
		req.Header.Set("Authorization", "Bearer "+key)
	}
	for _, conns := range []int{64, 512} {
		b.Run(fmt.Sprintf("conns=%d", conns), func(b *testing.B) {
			drive(b, addr, conns, build, 200)
		})
	}
	// The same reads pipelined: what the server answers when the system
	// calls per request no longer dominate.
	b.Run("pipelined/conns=8/in-flight=512", func(b *testing.B) {
		drivePipelined(b, addr, 8, 512, build, 200)
	})
}

func BenchmarkHTTPDurableBooking(b *testing.B) {
	addr, key := startBenchServer(b)
	var base atomic.Int64 // seats are never reused across sub-benchmarks
	for _, conns := range []int{64, 512} {
		b.Run(fmt.Sprintf("conns=%d", conns), func(b *testing.B) {
			off := base.Add(int64(b.N) + 1)
			drive(b, addr, conns, func(i int64, req *fasthttp.Request) {
				n := off + i
				office := n % benchOffices
				k := n / benchOffices
				start := time.Date(2026, 11, 31+int((k/(64*96))%58), 0, 15*int((k/64)%96), 0, 0, benchNow.Location())
				req.Header.SetMethod("POST")
				req.SetRequestURI("http://" + addr + "/v1/bookings")
				req.Header.Set("Authorization", "Bearer "+key)
				req.SetBodyString(fmt.Sprintf(`{"office":"o%03d","service":"s","applicant":"a%d","start":%q,"confirm":true}`,
					office, n, start.Format(time.RFC3339)))
			}, 201)
			base.Add(int64(b.N))
		})
	}
}
