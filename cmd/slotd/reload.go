package main

import (
	"os"
	"os/signal"
	"syscall"

	"slotd/httpapi"
)

// Reloading the keys file (httpapi/reload.go has the rules): on SIGHUP,
// and on POST /admin/reload-keys on the admin listener. SIGHUP is caught
// from the start of serve, so that it never ends the process (Go's
// default for it); reloads begin once slotd is ready.

// keysSource reads the keys file anew for a reload, and refuses keys that
// a start would refuse: ones that leave the legacy namespace's active
// bookings, as counted at start, to no portal key
// (httpapi.CheckLegacyBookings). Refusing them at the reload says so at
// once, instead of at the next start.
func keysSource(opts options, census *legacyCensus) func() ([]httpapi.Key, error) {
	return func() ([]httpapi.Key, error) {
		keys, err := readKeys(opts)
		if err != nil {
			return nil, err
		}
		if err := httpapi.CheckLegacyBookings(keys, int(census.active.Load())); err != nil {
			return nil, err
		}
		return keys, nil
	}
}

// notifyHangup catches SIGHUP from now on; stop undoes it.
func notifyHangup() (hup <-chan os.Signal, stop func()) {
	c := make(chan os.Signal, 1) // SIGHUPs while a reload runs make one more, not one each
	signal.Notify(c, syscall.SIGHUP)
	return c, func() { signal.Stop(c) }
}

// reloadOnHangup reloads the keys at each SIGHUP until stop is closed.
// ReloadKeys logs what came of it.
func reloadOnHangup(srv *httpapi.Server, hup <-chan os.Signal, stop <-chan struct{}) {
	for {
		select {
		case <-stop:
			return
		case <-hup:
			_ = srv.ReloadKeys()
		}
	}
}
