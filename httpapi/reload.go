package httpapi

import (
	"errors"
	"fmt"
	"net/http"
	"slices"

	"go.uber.org/zap"
)

// Reloading the keys.
//
// Server.ReloadKeys reads the keys anew from Config.KeysSource (cmd/slotd
// reads the keys file) and puts them in force for the next request
// authenticated. It runs on SIGHUP and on POST /admin/reload-keys.
//
//	K1. Nothing under way is disturbed. The keyring is one pointer
//	    (Server.keys) that a request loads once, in authenticate; a
//	    reload stores a new keyring and touches no connection. A request
//	    authenticated before keeps its principal to its end (a long-poll
//	    too, made with a secret the reload removed), and a keep-alive
//	    connection's next request is authenticated against the new keys.
//	K2. All or nothing. A source error, a file that LoadKeys refuses, or
//	    a change below refused, leaves the keyring in force as it was,
//	    with one log line (Warn, "keys not reloaded; the previous keys
//	    stay in force") whose error names the file (Config.KeysFile) and
//	    the problem.
//	K3. A key is its name. A key the reload keeps (by name) keeps its
//	    rate bucket, with the new limits: a reload neither refills nor
//	    empties it, so it is no way around the rate limit. Its
//	    Idempotency-Keys and its applicants' buckets are keyed by name
//	    already.
//	K4. The namespace of a key the reload keeps does not change. The
//	    bookings and watches of a namespace are stored under it (N2 in
//	    namespace.go); a key moved to another would answer 404 for its
//	    applicants' bookings made so far, count their limits from
//	    nothing in the new namespace, and a retried Idempotency-Key would
//	    answer with a booking the key can no longer read. A key for
//	    another namespace is a key of another name; the old one's
//	    bookings stay reachable by keys naming the old namespace (and by
//	    operators). A restart takes any namespace; slotd cannot tell what
//	    the keys file said before it (docs/runbook.md, key rotation).
//	K5. Reloads wait for recovery: before the server is ready they are
//	    refused, since the checks of the keys against the stored bookings
//	    (cmd/slotd, httpapi.CheckLegacyBookings) need all of them counted.

// RouteAdminReloadKeys reloads the keys: POST, on the admin listener.
const RouteAdminReloadKeys = "/admin/reload-keys"

// ErrNoKeysSource: the server has no Config.KeysSource to reload from.
var ErrNoKeysSource = errors.New("httpapi: the keys are not reloadable: no keys source")

// errReloadNotReady: a reload before the server is ready (K5).
var errReloadNotReady = errors.New("httpapi: the server is not ready; keys are reloaded once recovery has ended")

// ReloadKeys reads the keys from Config.KeysSource and puts them in force
// for the requests authenticated from now on (K1–K5). On an error the
// keys in force stay as they were, and the error says why. Safe for
// concurrent use; reloads run one at a time.
func (s *Server) ReloadKeys() error {
	s.reloadMu.Lock()
	defer s.reloadMu.Unlock()
	prev := s.keys.Load()
	next, err := s.nextKeyringLocked(prev)
	if err != nil && s.cfg.KeysFile != "" && !errors.Is(err, errReloadNotReady) && !errors.Is(err, ErrNoKeysSource) {
		err = fmt.Errorf("keys file %s: %w", s.cfg.KeysFile, err)
	}
	if err != nil {
		s.log.Warn("keys not reloaded; the previous keys stay in force", zap.Error(err))
		return err
	}
	s.keys.Store(next)
	var added, removed []string
	for name := range next.byName {
		if prev.principal(name) == nil {
			added = append(added, name)
		}
	}
	for name := range prev.byName {
		if next.principal(name) == nil {
			removed = append(removed, name)
		}
	}
	slices.Sort(added)
	slices.Sort(removed)
	s.log.Info("keys reloaded", zap.Int("keys", len(next.byName)), zap.Int("secrets", next.secrets),
		zap.Strings("added", added), zap.Strings("removed", removed))
	return nil
}

// nextKeyringLocked reads and checks the keys and builds their keyring.
// Caller holds s.reloadMu.
func (s *Server) nextKeyringLocked(prev *keyring) (*keyring, error) {
	if s.cfg.KeysSource == nil {
		return nil, ErrNoKeysSource
	}
	if !s.ready.Load() {
		return nil, errReloadNotReady
	}
	keys, err := s.cfg.KeysSource()
	if err != nil {
		return nil, err
	}
	if err := validateKeys(keys); err != nil { // a source other than LoadKeys
		return nil, err
	}
	for i := range keys {
		old := prev.principal(keys[i].Name)
		if ns := keys[i].namespace(); old != nil && ns != old.namespace {
			return nil, fmt.Errorf("keys[%d] (%s): the key's namespace would change from %q to %q: a reload does not move a key's applicants to another namespace (their bookings stay in %q); "+
				"give a key for %q another name, or restart to move this one (docs/runbook.md, key rotation)", i, keys[i].Name, old.namespace, ns, old.namespace, ns)
		}
	}
	return s.buildKeyring(keys, prev), nil
}

// keyRates returns a key's rate and bucket size: its own (Key.RatePerSecond,
// Key.RateBurst), or the server's.
func (s *Server) keyRates(k Key) (perSecond float64, burst int) {
	perSecond, burst = s.cfg.RatePerSecond, s.cfg.RateBurst
	if k.RatePerSecond > 0 {
		perSecond, burst = k.RatePerSecond, int(min(max(1, 2*k.RatePerSecond), keyBurstMax))
	}
	if k.RateBurst > 0 {
		burst = k.RateBurst
	}
	return perSecond, burst
}

// serveReloadKeys is POST /admin/reload-keys: 200 with what is in force
// after the reload, 422 when the keys were refused (K2) with the reason,
// 503 before the server is ready (K5). Plain text, as the admin
// listener's other answers.
func (s *Server) serveReloadKeys(w http.ResponseWriter, req *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	if req.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		w.WriteHeader(http.StatusMethodNotAllowed)
		_, _ = w.Write([]byte("use POST\n"))
		return
	}
	err := s.ReloadKeys()
	switch {
	case errors.Is(err, errReloadNotReady):
		w.Header().Set("Retry-After", fmt.Sprint(retryAfterNotReadySeconds))
		w.WriteHeader(http.StatusServiceUnavailable)
	case err != nil:
		w.WriteHeader(http.StatusUnprocessableEntity)
	}
	if err != nil {
		_, _ = fmt.Fprintf(w, "keys not reloaded; the previous keys stay in force: %v\n", err)
		return
	}
	ring := s.keys.Load()
	_, _ = fmt.Fprintf(w, "keys reloaded: %d keys, %d secrets\n", len(ring.byName), ring.secrets)
}
