package httpapi

import (
	"hash/maphash"
	"math"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"
)

// tokenBucket is one token bucket, an API key's or (in keyedLimiter) an
// applicant's or a source's: it refills at its rate up to its burst, and
// each request takes one token. It is a rate.Limiter, asked at a given
// instant: callers pass readings of the steady clock (request.steady),
// never the wall clock, since a wall clock set back would freeze the
// bucket until it caught up (see clock.go). rate.Limiter only subtracts
// the instants it is given, so a steady reading serves as well as the
// wall time it was made for. A take costs some 40 ns more than bucket
// arithmetic of our own (BenchmarkKeyBucket), under 2% of a read's
// server-side time (BenchmarkHandlerSlots): too little to keep our own
// for. Safe for concurrent use.
type tokenBucket struct{ *rate.Limiter }

func newTokenBucket(tokensPerSecond float64, burst int) tokenBucket {
	return tokenBucket{rate.NewLimiter(rate.Limit(tokensPerSecond), burst)}
}

// setLimits changes the bucket's rate and size at now, a steady clock
// reading; the tokens it holds stay (up to the new size).
func (b tokenBucket) setLimits(now time.Time, tokensPerSecond float64, burst int) {
	b.SetLimitAt(now, rate.Limit(tokensPerSecond))
	b.SetBurstAt(now, burst)
}

// take takes a token at now, a steady clock reading. When none is left it
// returns false and how long until one is (for Retry-After).
func (b tokenBucket) take(now time.Time) (bool, time.Duration) {
	if b.AllowN(now, 1) {
		return true, 0
	}
	// rate.Limiter tells the wait only in a reservation, and a reservation
	// holds the token it waits for: the refused would push back everyone
	// after them. The wait is the missing fraction of a token at the rate.
	missing := 1 - b.TokensAt(now)
	return false, time.Duration(max(0, missing) / float64(b.Limit()) * float64(time.Second))
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
	tokensPerSecond float64
	burst           int
	// idle is how long an empty bucket takes to fill up again; a full
	// shard is swept at most once per idle period.
	idle   int64
	shards [limiterShards]limiterShard[K]
}

const (
	limiterShards = 64
	// limiterBucketsPerShardMax bounds the tracked keys (about 1M in
	// all; an applicant's entry, map slot and rate.Limiter, takes some
	// 150 bytes, so a full table about 150 MB). A shard that is full
	// after dropping its full buckets lets new keys through untracked:
	// for applicants the key's own bucket still bounds them; failed
	// authentications cost a hash and a refusal each.
	limiterBucketsPerShardMax = 1 << 14
)

type limiterShard[K comparable] struct {
	mu sync.Mutex
	m  map[K]tokenBucket // guarded by mu
	// sweptUnixNano is when the shard was last swept, valid once swept is
	// true; guarded by mu. A full shard is swept at most once per idle
	// period, so a flood of new keys cannot make every request walk the
	// map; the first sweep is never held back, whatever the clock reads.
	sweptUnixNano int64
	swept         bool
	_             [31]byte
}

// applicantKey is an API key's name and an applicant id.
type applicantKey struct{ key, applicant string }

func newKeyedLimiter[K comparable](tokensPerSecond float64, burst int) *keyedLimiter[K] {
	l := &keyedLimiter[K]{tokensPerSecond: tokensPerSecond, burst: burst, idle: int64(float64(burst) / tokensPerSecond * 1e9)}
	for i := range l.shards {
		l.shards[i].m = make(map[K]tokenBucket)
	}
	return l
}

// take takes a token of k at now, a steady clock reading (Config.Steady,
// never the wall clock: a clock set back would freeze the bucket). When
// none is left it returns false and how long until one is.
func (l *keyedLimiter[K]) take(k K, now time.Time) (bool, time.Duration) {
	sh := &l.shards[maphash.Comparable(limiterSeed, k)%limiterShards]
	sh.mu.Lock()
	defer sh.mu.Unlock()
	b, ok := sh.m[k]
	if !ok {
		if len(sh.m) >= limiterBucketsPerShardMax && !l.sweepLocked(sh, now) {
			return true, 0
		}
		b = newTokenBucket(l.tokensPerSecond, l.burst)
		sh.m[k] = b
	}
	return b.take(now)
}

// sweepLocked drops the entries of sh that filled up again by now (a
// full bucket answers as a new one would, so dropping it changes no
// answer), unless it swept less than an idle period ago, and says whether
// there is room now. rate.Limiter keeps no table of its own: bounding the
// keys is this sweep's work. Caller holds sh.mu.
func (l *keyedLimiter[K]) sweepLocked(sh *limiterShard[K], now time.Time) bool {
	t := now.UnixNano()
	if sh.swept && t-sh.sweptUnixNano < l.idle {
		return false
	}
	sh.sweptUnixNano, sh.swept = t, true
	for k, b := range sh.m {
		if b.TokensAt(now) >= float64(l.burst) {
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

// SharedLimits are rate limits several Servers count together
// (Config.Limits). Safe for concurrent use.
type SharedLimits struct {
	once       sync.Once
	applicants *keyedLimiter[applicantKey]
	authFails  *keyedLimiter[netip.Addr]
	// latest is the keyring a Server of these limits built last: a key's
	// bucket is taken from it when the building Server has none of its
	// own, so every Server holds the same bucket for one key name.
	latest atomic.Pointer[keyring]
}

// NewSharedLimits returns limits for Servers to share.
func NewSharedLimits() *SharedLimits { return &SharedLimits{} }

// keyrings finds a key's principal in the first keyring that has it.
type keyrings []*keyring

func (ks keyrings) principal(name string) *principal {
	for _, k := range ks {
		if p := k.principal(name); p != nil {
			return p
		}
	}
	return nil
}

// buildKeyring makes the keyring of keys: a key keeps the bucket prev, the
// Server's keyring in force, gave it, or else the bucket the other
// Servers sharing its limits hold.
func (s *Server) buildKeyring(keys []Key, prev *keyring) *keyring {
	sh := s.cfg.Limits
	if sh == nil {
		return newKeyring(keys, prev, s.keyRates, s.steady())
	}
	kr := newKeyring(keys, keyrings{prev, sh.latest.Load()}, s.keyRates, s.steady())
	sh.latest.Store(kr)
	return kr
}
