package wal

import (
	"errors"
	"fmt"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
)

// Defaults for zero Options fields.
const (
	DefaultEventRetention = 7 * 24 * time.Hour
	DefaultIdempotencyTTL = 24 * time.Hour
	DefaultSweepBatchMax  = 1024
	DefaultCacheBytes     = 64 << 20
	DefaultMemTableBytes  = 64 << 20

	// sweepBatchMaxLimit bounds Options.SweepBatchMax: one sweep batch must
	// stay small next to the commits it shares the pipeline with.
	sweepBatchMaxLimit = 1 << 16
)

// Options configure Open. The zero value is usable: every zero field takes
// the default its comment names.
type Options struct {
	// FS is the file system Pebble writes through. Nil means vfs.Default
	// (the operating system's). Tests pass vfs.NewCrashableMem() or an
	// errorfs wrapper to inject faults.
	FS vfs.FS
	// Logger receives Pebble's messages. Nil means silent.
	Logger Logger
	// EventRetention is how long events are kept before Sweep deletes them,
	// measured from the event's own time. Zero means DefaultEventRetention
	// (7 days).
	EventRetention time.Duration
	// IdempotencyTTL is how long idempotency records are kept before Sweep
	// deletes them, measured from the record's time. Zero means
	// DefaultIdempotencyTTL (24 h).
	IdempotencyTTL time.Duration
	// SweepBatchMax is the most records of each kind (idempotency records,
	// events) one Sweep call deletes, but for the events that share the
	// booking of one it deletes (wal invariant W7). Zero means
	// DefaultSweepBatchMax.
	SweepBatchMax int
	// CacheBytes is the size of Pebble's block cache in bytes. Zero means
	// DefaultCacheBytes (64 MiB).
	CacheBytes int64
	// MemTableBytes is the size of one Pebble memtable in bytes. Zero means
	// DefaultMemTableBytes (64 MiB).
	MemTableBytes uint64

	// upgradeBatchBookings bounds the bookings of one batch of an upgrade's
	// moves (tests make it small, for many batches). Zero means
	// upgradeBatchBookingsMax.
	upgradeBatchBookings int
}

// Logger is where Pebble's messages go. A *zap.SugaredLogger satisfies it;
// the package does not import zap. Implementations must be safe for
// concurrent use.
type Logger interface {
	Infof(format string, args ...any)
	Errorf(format string, args ...any)
}

// validate returns the first problem with o, in words a user can act on.
func (o *Options) validate() error {
	switch {
	case o.EventRetention < 0:
		return fmt.Errorf("wal: EventRetention %s is negative; use 0 for the default of %s", o.EventRetention, DefaultEventRetention)
	case o.IdempotencyTTL < 0:
		return fmt.Errorf("wal: IdempotencyTTL %s is negative; use 0 for the default of %s", o.IdempotencyTTL, DefaultIdempotencyTTL)
	case o.SweepBatchMax < 0 || o.SweepBatchMax > sweepBatchMaxLimit:
		return fmt.Errorf("wal: SweepBatchMax %d must be in 0..%d (0 means %d)", o.SweepBatchMax, sweepBatchMaxLimit, DefaultSweepBatchMax)
	case o.CacheBytes < 0:
		return fmt.Errorf("wal: CacheBytes %d is negative; use 0 for the default of %d", o.CacheBytes, DefaultCacheBytes)
	case o.MemTableBytes != 0 && (o.MemTableBytes < 1<<20 || o.MemTableBytes >= 4<<30):
		return errors.New("wal: MemTableBytes must be between 1 MiB and 4 GiB (0 means 64 MiB)")
	}
	return nil
}

// withDefaults returns o with every zero field set to its default.
func (o Options) withDefaults() Options {
	if o.FS == nil {
		o.FS = vfs.Default
	}
	if o.EventRetention == 0 {
		o.EventRetention = DefaultEventRetention
	}
	if o.IdempotencyTTL == 0 {
		o.IdempotencyTTL = DefaultIdempotencyTTL
	}
	if o.SweepBatchMax == 0 {
		o.SweepBatchMax = DefaultSweepBatchMax
	}
	if o.CacheBytes == 0 {
		o.CacheBytes = DefaultCacheBytes
	}
	if o.MemTableBytes == 0 {
		o.MemTableBytes = DefaultMemTableBytes
	}
	return o
}

// pebbleLogger adapts Logger to Pebble's, which also has Fatalf. Pebble
// expects Fatalf not to return (its default exits the process): after a
// failed WAL write or sync it calls Fatalf from inside Batch.Commit and
// would report success if Fatalf returned. So Fatalf logs and panics with a
// pebbleFatal, which pebbleCall turns back into an error; anywhere else
// (Pebble's background work) the panic ends the process, as Pebble
// intends. Safe for concurrent use if the wrapped Logger is.
type pebbleLogger struct{ l Logger }

func (p pebbleLogger) Infof(format string, args ...any) {
	if p.l != nil {
		p.l.Infof("pebble: "+format, args...)
	}
}

func (p pebbleLogger) Errorf(format string, args ...any) {
	if p.l != nil {
		p.l.Errorf("pebble: "+format, args...)
	}
}

func (p pebbleLogger) Fatalf(format string, args ...any) {
	p.Errorf(format, args...)
	f := pebbleFatal{msg: fmt.Sprintf(format, args...)}
	for _, a := range args {
		if err, ok := a.(error); ok {
			f.err = err
			break
		}
	}
	panic(f)
}

// pebbleFatal is the panic value of pebbleLogger.Fatalf. It unwraps to the
// first error among Fatalf's arguments, so that callers can tell a full
// disk (syscall.ENOSPC) from other failures.
type pebbleFatal struct {
	msg string
	err error
}

func (f pebbleFatal) Error() string { return "wal: pebble fatal: " + f.msg }

func (f pebbleFatal) Unwrap() error { return f.err }

var _ pebble.Logger = pebbleLogger{}
