package main

import (
	"io"
	"runtime"
	"testing"
)

func TestOptionsFlagsEnvDefaults(t *testing.T) {
	env := func(m map[string]string) func(string) string { return func(k string) string { return m[k] } }
	o, err := parseOptions(nil, env(nil), io.Discard)
	if err != nil || o.addr != ":8080" || o.adminAddr != "127.0.0.1:9090" || o.data != "./data" || o.demo || o.logLevel != "info" {
		t.Fatalf("defaults: %+v %v", o, err)
	}
	o, err = parseOptions([]string{"-addr", ":1"}, env(map[string]string{"SLOTD_ADDR": ":2", "SLOTD_ADMIN_ADDR": ":3", "SLOTD_DEMO": "true"}), io.Discard)
	if err != nil || o.addr != ":1" || o.adminAddr != ":3" || !o.demo {
		t.Fatalf("flag over env: %+v %v", o, err)
	}
	if _, err := parseOptions(nil, env(map[string]string{"SLOTD_DEMO": "maybe"}), io.Discard); err == nil {
		t.Fatal("bad boolean in the environment accepted")
	}
	o, err = parseOptions(nil, env(map[string]string{"SLOTD_RATE_PER_KEY": "50000", "SLOTD_IN_FLIGHT_MAX": "128"}), io.Discard)
	if err != nil || o.ratePerKey != 50000 || o.inFlightMax != 128 || o.rateBurst != 0 {
		t.Fatalf("limits from the environment: %+v %v", o, err)
	}
	if _, err := parseOptions([]string{"-rate-per-key", "0"}, env(nil), io.Discard); err == nil {
		t.Fatal("zero rate accepted")
	}
	o, err = parseOptions(nil, env(map[string]string{"SLOTD_RATE_PER_APPLICANT": "0"}), io.Discard)
	if err != nil || o.ratePerApplicant != 0 || applicantRate(o.ratePerApplicant) >= 0 {
		t.Fatalf("-rate-per-applicant 0 must switch the limit off: %+v %v", o, err)
	}
	if _, err := parseOptions([]string{"-rate-applicant-burst", "0"}, env(nil), io.Discard); err == nil {
		t.Fatal("zero applicant burst accepted")
	}
	if _, err := parseOptions([]string{"-log-level", "loud"}, env(nil), io.Discard); err == nil {
		t.Fatal("bad log level accepted")
	}
	o, err = parseOptions(nil, env(map[string]string{"SLOTD_TEST_MOVE_PART_BYTES": "4096"}), io.Discard)
	if err != nil || o.cluster.movePartBytes != 4096 {
		t.Fatalf("a move's part size from the environment: %d %v", o.cluster.movePartBytes, err)
	}
	for _, bad := range []string{"0", "-1", "x", "2000000"} {
		if _, err := parseOptions(nil, env(map[string]string{"SLOTD_TEST_MOVE_PART_BYTES": bad}), io.Discard); err == nil {
			t.Fatalf("a move's part size of %q accepted", bad)
		}
	}
}

// TestSpareProc: slotd takes one scheduler P more than the runtime's
// default, unless GOMAXPROCS is set in the environment.
func TestSpareProc(t *testing.T) {
	def := runtime.GOMAXPROCS(0)
	defer runtime.GOMAXPROCS(def)
	spareProc(func(string) string { return "" })
	if got := runtime.GOMAXPROCS(0); got != def+1 {
		t.Fatalf("GOMAXPROCS unset: %d Ps, want %d", got, def+1)
	}
	runtime.GOMAXPROCS(def)
	spareProc(func(k string) string {
		if k == "GOMAXPROCS" {
			return "1"
		}
		return ""
	})
	if got := runtime.GOMAXPROCS(0); got != def {
		t.Fatalf("GOMAXPROCS set: %d Ps, want the runtime's %d", got, def)
	}
}
