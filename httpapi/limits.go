package httpapi

import (
	"hash/maphash"
	"math"
	"net"
	"net/netip"
	"sync"
	"time"
)

// tokenBucket is one API key's rate limit: it refills at rate tokens per
// second up to burst, and each request takes one token. Callers pass
// readings of the steady clock (request.steady), never the wall clock: a
// wall clock set back would freeze the bucket until it caught up (see
// clock.go). Safe for concurrent use.
type tokenBucket struct {
	rate  float64 // tokens per second, > 0
	burst float64

	mu     sync.Mutex
	bucket bucket // guarded by mu
}

func newTokenBucket(rate float64, burst int) *tokenBucket {
	return &tokenBucket{rate: rate, burst: float64(burst), bucket: bucket{tokens: float64(burst)}}
}

// take takes a token at now, a steady clock reading. When none is left it
// returns false and how long until one is.
func (b *tokenBucket) take(now time.Time) (bool, time.Duration) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.bucket.take(now.UnixNano(), b.rate, b.burst)
}

// bucket is the state of one token bucket; the caller owns it (a lock or
// a map entry under a lock) and passes the rate and burst.
type bucket struct {
	tokens       float64
	lastUnixNano int64 // steady clock; 0 before the first take: no refill then
}

// take refills b up to t, then takes a token. When none is left it returns
// false and how long until one is.
func (b *bucket) take(t int64, rate, burst float64) (bool, time.Duration) {
	if t > b.lastUnixNano {
		if b.lastUnixNano != 0 {
			b.tokens = math.Min(burst, b.tokens+float64(t-b.lastUnixNano)/1e9*rate)
		}
		b.lastUnixNano = t
	}
	if b.tokens >= 1 {
		b.tokens--
		return true, 0
	}
	return false, time.Duration((1 - b.tokens) / rate * 1e9)
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

// keyedLimiter is a token bucket per key K, for limits on more keys than
// a bucket each could be kept for forever. It serves two limits:
//
// The per-applicant rate of hold requests, a bucket per (API key,
// applicant) checked before the key's own bucket. A bot that repeats its
// request is refused by its own bucket and leaves the key's budget to the
// other applicants; without it, in a rush through one portal key, the
// repeats drain the key's bucket and the 429s fall on people's single
// requests (DESIGN "Fairness in the rush").
//
// The per-source rate of failed authentications (authSource).
//
// Safe for concurrent use.
type keyedLimiter[K comparable] struct {
	rate, burst float64
	// idle is how long a bucket takes to fill up again: an entry idle that
	// long is the same as none, so a sweep may drop it.
	idle   int64
	shards [limiterShards]limiterShard[K]
}

const (
	limiterShards = 64
	// limiterBucketsPerShardMax bounds the tracked keys (about 1M in
	// all). A shard that is full after dropping its idle entries lets new
	// keys through untracked: for applicants the key's own bucket still
	// bounds them; failed authentications cost a hash and a refusal each.
	limiterBucketsPerShardMax = 1 << 14
)

type limiterShard[K comparable] struct {
	mu sync.Mutex
	m  map[K]bucket // guarded by mu
	// sweptUnixNano is when the shard was last swept; guarded by mu. A
	// full shard is swept at most once per idle period, so a flood of
	// new keys cannot make every request walk the map.
	sweptUnixNano int64
	_             [32]byte
}

// applicantKey is an API key's name and an applicant id.
type applicantKey struct{ key, applicant string }

func newKeyedLimiter[K comparable](rate float64, burst int) *keyedLimiter[K] {
	l := &keyedLimiter[K]{rate: rate, burst: float64(burst), idle: int64(float64(burst) / rate * 1e9)}
	for i := range l.shards {
		l.shards[i].m = make(map[K]bucket)
	}
	return l
}

// take takes a token of k at now, a steady clock reading (Config.Steady,
// never the wall clock: a clock set back would freeze the bucket). When
// none is left it returns false and how long until one is.
func (l *keyedLimiter[K]) take(k K, now time.Time) (bool, time.Duration) {
	sh := &l.shards[maphash.Comparable(limiterSeed, k)%limiterShards]
	t := now.UnixNano()
	sh.mu.Lock()
	defer sh.mu.Unlock()
	b, ok := sh.m[k]
	if !ok {
		if len(sh.m) >= limiterBucketsPerShardMax && !l.sweepLocked(sh, t) {
			return true, 0
		}
		b = bucket{tokens: l.burst, lastUnixNano: t}
	}
	took, wait := b.take(t, l.rate, l.burst)
	sh.m[k] = b
	return took, wait
}

// sweepLocked drops the entries of sh that filled up again by t, unless
// it swept less than an idle period ago, and says whether there is room
// now. Caller holds sh.mu.
func (l *keyedLimiter[K]) sweepLocked(sh *limiterShard[K], t int64) bool {
	if t-sh.sweptUnixNano < l.idle {
		return false
	}
	sh.sweptUnixNano = t
	for k, b := range sh.m {
		if t-b.lastUnixNano >= l.idle {
			delete(sh.m, k)
		}
	}
	return len(sh.m) < limiterBucketsPerShardMax
}

var limiterSeed = maphash.MakeSeed()

// authSource is the source a failed authentication is counted against:
// the client's IPv4 address, or the /64 of an IPv6 one (one host usually
// has a whole /64 to pick addresses from).
func authSource(raw net.IP) netip.Addr {
	ip, _ := netip.AddrFromSlice(raw)
	ip = ip.Unmap()
	if ip.Is6() {
		p, _ := ip.Prefix(64)
		return p.Addr()
	}
	return ip
}
