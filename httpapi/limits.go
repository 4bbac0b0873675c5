package httpapi

import (
	"math"
	"sync"
	"time"
)

// tokenBucket is one API key's rate limit: it refills at rate tokens per
// second up to burst, and each request takes one token. It reads time
// from the server's clock, so tests with a fixed clock get a bucket that
// never refills. Safe for concurrent use.
type tokenBucket struct {
	rate  float64 // tokens per second, > 0
	burst float64

	mu           sync.Mutex
	tokens       float64 // guarded by mu
	lastUnixNano int64   // guarded by mu; 0 before the first take
}

func newTokenBucket(rate float64, burst int) *tokenBucket {
	return &tokenBucket{rate: rate, burst: float64(burst), tokens: float64(burst)}
}

// take takes a token at now. When none is left it returns false and how
// long until one is.
func (b *tokenBucket) take(now time.Time) (bool, time.Duration) {
	t := now.UnixNano()
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.lastUnixNano != 0 && t > b.lastUnixNano {
		b.tokens = math.Min(b.burst, b.tokens+float64(t-b.lastUnixNano)/1e9*b.rate)
	}
	if b.lastUnixNano == 0 || t > b.lastUnixNano {
		b.lastUnixNano = t
	}
	if b.tokens >= 1 {
		b.tokens--
		return true, 0
	}
	wait := time.Duration((1 - b.tokens) / b.rate * 1e9)
	return false, wait
}

// semaphore bounds work in progress; acquire never waits (shed, never
// queue: DESIGN invariant 6). Safe for concurrent use.
type semaphore chan struct{}

func (s semaphore) tryAcquire() bool {
	select {
	case s <- struct{}{}:
		return true
	default:
		return false
	}
}

func (s semaphore) release() { <-s }

// retryAfterSeconds rounds a wait up to whole seconds, at least 1.
func retryAfterSeconds(d time.Duration) int {
	return max(1, int(math.Ceil(d.Seconds())))
}

// len returns the slots taken.
func (s semaphore) len() int { return len(s) }
