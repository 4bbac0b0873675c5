package httpapi

import (
	"fmt"
	"testing"
	"time"
)

// BenchmarkKeyBucket is an API key's token bucket, taken by every request
// of the key from every core: the allowed path (each goroutine's steady
// reading moves on a microsecond a request, at a rate that always has a
// token) and the refused path (an empty bucket, the clock standing still).
func BenchmarkKeyBucket(b *testing.B) {
	b.Run("allowed", func(b *testing.B) {
		bk := newTokenBucket(1e9, 1<<30)
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			now := time.Unix(1_000_000, 0)
			for pb.Next() {
				now = now.Add(time.Microsecond)
				if ok, _ := bk.take(now); !ok {
					b.Error("refused")
					return
				}
			}
		})
	})
	b.Run("refused", func(b *testing.B) {
		bk := newTokenBucket(1, 1)
		now := time.Unix(1_000_000, 0)
		bk.take(now)
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if ok, wait := bk.take(now); ok || wait <= 0 {
					b.Error("allowed")
					return
				}
			}
		})
	})
}

// BenchmarkKeyedLimiter is the per-applicant hold bucket of applicants the
// table already tracks, taken from every core; every take is allowed.
func BenchmarkKeyedLimiter(b *testing.B) {
	const applicants = 1 << 12
	keys := make([]applicantKey, applicants)
	for i := range keys {
		keys[i] = applicantKey{"portal", fmt.Sprintf("applicant-%d", i)}
	}
	l := newKeyedLimiter[applicantKey](1e6, 1<<20)
	start := time.Unix(1_000_000, 0)
	for _, k := range keys {
		l.take(k, start)
	}
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		now := start
		i := 0
		for pb.Next() {
			now = now.Add(time.Microsecond)
			if ok, _ := l.take(keys[i%applicants], now); !ok {
				b.Error("refused")
				return
			}
			i++
		}
	})
}
