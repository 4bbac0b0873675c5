package httpapi

import (
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/valyala/fasthttp"

	"slotd/allocator"
	"slotd/internal/slotdtest"
)

// BenchmarkHandlerSlots is the CPU of one availability answer without the
// network: routing, the key, the limits, the engine's read, the rendering,
// the metrics and the access log — what a server core spends on each read
// besides the system calls. The starts of 64 offices over nine days.
func BenchmarkHandlerSlots(b *testing.B) {
	now := slotdtest.BenchNow
	e, _ := allocator.New(allocator.Config{Journal: &allocator.MemJournal{}})
	slotdtest.PutBenchOffices(b, e)
	key := "bench-portal-key-0123456789"
	srv, err := New(Config{Engine: e, Idempotency: newMemStore(), Events: newMemStore(), Registry: prometheus.NewRegistry(),
		Keys:   []Key{{Key: key, Name: "bench", Scopes: []string{ScopePortal}, Offices: []string{"*"}}},
		Secret: []byte("bench-secret-bench-secret-bench-secret"), Now: func() time.Time { return now },
		RatePerSecond: 1e9, InFlightMax: 1 << 16})
	if err != nil {
		b.Fatal(err)
	}
	srv.SetReady(true)
	var reqs []*fasthttp.Request
	for i := range slotdtest.BenchOffices * 9 {
		req := &fasthttp.Request{}
		req.SetRequestURI(fmt.Sprintf("http://x/v1/offices/%s/days/2026-12-0%d/slots?service=s", slotdtest.BenchOffice(i%slotdtest.BenchOffices).ID, 1+i%9))
		req.Header.Set("Authorization", "Bearer "+key)
		reqs = append(reqs, req)
	}
	addr := &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 1}
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		var ctx fasthttp.RequestCtx
		i := 0
		for pb.Next() {
			ctx.Init(reqs[i%len(reqs)], addr, nil)
			srv.serveHTTP(&ctx)
			if ctx.Response.StatusCode() != 200 {
				b.Error(ctx.Response.StatusCode(), string(ctx.Response.Body()))
				return
			}
			i++
		}
	})
}

// BenchmarkDecodeHoldBody: reading a portal's hold body, by flatjson
// (decodeBody) and by encoding/json alone (decodeBodyJSON).
func BenchmarkDecodeHoldBody(b *testing.B) {
	body := []byte(`{"office":"msk-mfc-tverskoy","service":"patent","applicant":"a-123","earliest_after":"2026-12-01T10:00:00+03:00"}`)
	for _, c := range []struct {
		name   string
		decode func([]byte, any) error
	}{{"flatjson", decodeBody}, {"encoding-json", decodeBodyJSON}} {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				var h holdBody
				if err := c.decode(body, &h); err != nil || h.Applicant == "" {
					b.Fatal(err)
				}
			}
		})
	}
}
