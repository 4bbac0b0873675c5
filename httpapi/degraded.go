package httpapi

import (
	"errors"
	"fmt"

	"go.uber.org/zap"

	"slotd/allocator"
)

// The degraded state. One state stands for every storage failure: a
// failed journal commit (the engine's own), a failure of the journal's
// own upkeep (a SelfDegradingJournal), and a failure of a store the edge
// reads or writes itself — the idempotency records and the event feed,
// which live on the journal's disk. The edge reports the last kind to the
// engine (Engine.Degrade), so that the engine's Degraded is the one
// answer: state changes answer 503 degraded, slotd_engine_degraded is 1,
// /readyz answers 503 "degraded: <cause>", and the log has one error line
// (logDegraded) the first time the edge sees it. It lasts until restart:
// the disk state is unknown.

// msgDegraded is the log line of the degraded state; the runbook names it.
const msgDegraded = "degraded: storage failed; writes are refused and /readyz answers 503 until restart"

// storeFailed degrades the engine after a failed call to a store: what
// names the call, err its error. A store closed by Shutdown has not
// failed.
func (s *Server) storeFailed(what string, err error) {
	if errors.Is(err, allocator.ErrJournalClosed) {
		return
	}
	s.engine.Degrade(fmt.Errorf("%s: %w", what, err))
	s.logDegraded()
}

// logDegraded logs msgDegraded with its cause once, when the edge first
// finds the engine degraded (on a failed call, a scrape or a readiness
// probe, whichever comes first).
func (s *Server) logDegraded() {
	cause := s.engine.DegradedCause()
	if cause == nil || !s.degradedLogged.CompareAndSwap(false, true) {
		return
	}
	s.log.Error(msgDegraded, zap.Error(cause))
}
