package main

// Backup, restore and export with the real binary: slotd serving a
// booking load on loopback, `slotd backup` run against it while the load
// goes on, the backup copied into a fresh data directory, checked with
// `slotd verify`, exported with `slotd dump`, and started as slotd.

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"

	"slotd/api"
	"slotd/internal/slotdtest"
	"slotd/internal/slotdtest/testtime"
)

// backupOffice is the demo office the load books at.
const backupOffice = "msk-mfc-tverskoy"

// httpLoad books distinct applicants over HTTP from a few goroutines
// until stopped (at most httpLoadMax bookings), every other one
// confirmed at once, and records each booking answered 201.
type httpLoad struct {
	mu    sync.Mutex
	acked map[string]string // booking id → status
	stop  chan struct{}
	wg    sync.WaitGroup
	errs  chan error
}

// httpLoadMax bounds the load's bookings.
const httpLoadMax = 1200

func startHTTPLoad(t *testing.T, srv *slotdtest.Server, key string, workers int) *httpLoad {
	l := &httpLoad{acked: map[string]string{}, stop: make(chan struct{}), errs: make(chan error, workers)}
	from := time.Now().AddDate(0, 0, 2).Format("2006-01-02")
	for w := range workers {
		l.wg.Go(func() {
			for i := 0; i < httpLoadMax/workers; i++ {
				select {
				case <-l.stop:
					return
				default:
				}
				body := fmt.Sprintf(`{"office":%q,"service":"patent","applicant":"load-%d-%d","earliest_after":"%sT00:00:00+03:00","confirm":%v}`,
					backupOffice, w, i, from, i%2 == 0)
				code, b := srv.Call(t, key, "POST", "/v1/bookings", body)
				switch {
				case code == 201:
					l.mu.Lock()
					l.acked[b["id"].(string)] = b["status"].(string)
					l.mu.Unlock()
				case code == 409 || code == 429:
					i-- // another worker took that start, or the key's bucket is empty: again
				default:
					l.errs <- fmt.Errorf("hold %d of worker %d: %d %v", i, w, code, b)
					return
				}
			}
		})
	}
	return l
}

func (l *httpLoad) snapshot() map[string]string {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make(map[string]string, len(l.acked))
	for k, v := range l.acked {
		out[k] = v
	}
	return out
}

func (l *httpLoad) end(t *testing.T) {
	t.Helper()
	close(l.stop)
	l.wg.Wait()
	select {
	case err := <-l.errs:
		t.Fatal(err)
	default:
	}
}

// slotdCmd runs the binary with args in dir and returns its exit status,
// stdout and stderr.
func slotdCmd(t *testing.T, bin, dir string, args ...string) (int, string, string) {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Dir = dir
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	code := 0
	if exit, ok := errors.AsType[*exec.ExitError](err); ok {
		code = exit.ExitCode()
	} else if err != nil {
		t.Fatalf("slotd %s: %v", strings.Join(args, " "), err)
	}
	return code, stdout.String(), stderr.String()
}

// oneLine fails the test unless out is one line holding every word.
func oneLine(t *testing.T, what, out string, words ...string) {
	t.Helper()
	if strings.Count(out, "\n") != 1 || !strings.HasSuffix(out, "\n") || strings.Contains(out, "goroutine ") {
		t.Fatalf("%s: want one line, got %q", what, out)
	}
	for _, w := range words {
		if !strings.Contains(out, w) {
			t.Fatalf("%s: %q does not say %q", what, out, w)
		}
	}
}

// copyFiles copies the regular files of src into the new directory dst:
// a restore, as the runbook does it with cp.
func copyFiles(t *testing.T, src, dst string) {
	t.Helper()
	if err := os.Mkdir(dst, 0o700); err != nil {
		t.Fatal(err)
	}
	entries, err := os.ReadDir(src)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		data, err := os.ReadFile(filepath.Join(src, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dst, e.Name()), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

// dumpLine is one line of slotd dump's JSON output.
type dumpLine struct {
	Office  *api.Office  `json:"office"`
	Booking *api.Booking `json:"booking"`
}

// readDump decodes slotd dump's JSON lines strictly: every field must be
// one of the API's types.
func readDump(t *testing.T, out string) (offices []api.Office, bookings []api.Booking) {
	t.Helper()
	sc := bufio.NewScanner(strings.NewReader(out))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		dec := json.NewDecoder(bytes.NewReader(sc.Bytes()))
		dec.DisallowUnknownFields()
		var l dumpLine
		if err := dec.Decode(&l); err != nil || (l.Office == nil) == (l.Booking == nil) {
			t.Fatalf("dump line %q: %v", sc.Text(), err)
		}
		if l.Office != nil {
			if len(bookings) > 0 {
				t.Fatalf("office %s after bookings", l.Office.ID)
			}
			offices = append(offices, *l.Office)
		} else {
			bookings = append(bookings, *l.Booking)
		}
	}
	return offices, bookings
}

// TestBackupUnderLoadRestores: a backup of the running slotd taken while
// bookings are made restores into a fresh data directory that passes
// slotd verify, holds every booking acknowledged before the backup
// began, exports them with slotd dump in the API's shapes, signs tickets
// as before, and serves them when slotd starts on it. Meanwhile slotd
// dump refuses the running store, and slotd backup refuses targets it
// must not write, each with one line naming the path.
func TestBackupUnderLoadRestores(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the server")
	}
	bin := slotdtest.Build(t)
	work := t.TempDir()
	data := filepath.Join(work, "data")
	srv := slotdtest.Start(t, bin, data)
	portal, operator := srv.Keys["demo-portal"], srv.Keys["demo-operator"]

	load := startHTTPLoad(t, srv, portal, 4)
	var loadErr error
	if err := testtime.Poll(2*time.Minute, func() error {
		select {
		case loadErr = <-load.errs:
			return nil
		default:
		}
		if n := len(load.snapshot()); n < 100 {
			return fmt.Errorf("%d bookings acknowledged, waiting for 100", n)
		}
		return nil
	}); err != nil || loadErr != nil {
		load.end(t)
		t.Fatal(err, loadErr)
	}
	before := load.snapshot()
	var ticketID, ticketBefore string
	for id, st := range before {
		if st == api.StatusConfirmed {
			ticketID = id
			break
		}
	}
	_, tk := srv.Call(t, operator, "GET", "/v1/bookings/"+ticketID+"/ticket", "")
	ticketBefore, _ = tk["qr"].(string)
	if ticketBefore == "" {
		load.end(t)
		t.Fatalf("ticket of %s: %v", ticketID, tk)
	}
	// A relative -to is taken from the command's directory, not the
	// server's.
	code, out, errOut := slotdCmd(t, bin, work, "backup", "-to", "backup", "-admin-addr", srv.AdminAddr)
	during := len(load.snapshot()) - len(before)
	backup := filepath.Join(work, "backup")
	if code != 0 {
		load.end(t)
		t.Fatalf("slotd backup: exit %d, %s%s", code, out, errOut)
	}
	oneLine(t, "slotd backup", out, "backup written to "+backup)
	t.Logf("%s(%d bookings acknowledged before it, %d while it ran)", out, len(before), during)

	// Refusals while the server runs.
	code, _, errOut = slotdCmd(t, bin, work, "backup", "-to", backup, "-admin-addr", srv.AdminAddr)
	if code != 1 {
		t.Fatalf("backup into a full directory: exit %d", code)
	}
	oneLine(t, "backup into a full directory", errOut, backup, "is not empty")
	file := filepath.Join(work, "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	code, _, errOut = slotdCmd(t, bin, work, "backup", "-to", filepath.Join(file, "b"), "-admin-addr", srv.AdminAddr)
	if code != 1 {
		t.Fatalf("backup under a file: exit %d", code)
	}
	oneLine(t, "backup under a file", errOut, filepath.Join(file, "b"), file+" is not a directory")
	code, _, errOut = slotdCmd(t, bin, work, "dump", "-data", data)
	if code != 1 {
		t.Fatalf("dump of the running store: exit %d", code)
	}
	oneLine(t, "dump of the running store", errOut, data, "in use by a running slotd")

	load.end(t)
	if !srv.Stop(t, syscall.SIGTERM) {
		t.Fatal("slotd did not stop cleanly")
	}

	restored := filepath.Join(work, "restored")
	copyFiles(t, backup, restored)
	code, out, errOut = slotdCmd(t, bin, work, "verify", "-data", restored)
	if code != 0 {
		t.Fatalf("slotd verify of the restored backup: exit %d %s", code, errOut)
	}
	oneLine(t, "slotd verify", out, restored+": ok")

	code, out, errOut = slotdCmd(t, bin, work, "dump", "-data", restored)
	if code != 0 {
		t.Fatalf("slotd dump: exit %d %s", code, errOut)
	}
	offices, bookings := readDump(t, out)
	if len(offices) == 0 {
		t.Fatal("dump has no offices")
	}
	dumped := map[string]string{}
	for i, b := range bookings {
		dumped[b.ID] = b.Status
		if i > 0 && b.History[0].At.Before(bookings[i-1].History[0].At) {
			t.Fatalf("booking %s is dumped after a later one", b.ID)
		}
	}
	for id, st := range before {
		if dumped[id] != st {
			t.Fatalf("booking %s, %s before the backup, is %q in the restored store's dump", id, st, dumped[id])
		}
	}

	// slotd starts on the restored directory and serves what it holds,
	// with the same keys and ticket secret.
	srv = slotdtest.Start(t, bin, restored)
	for id, st := range before {
		code, b := srv.Call(t, operator, "GET", "/v1/bookings/"+id, "")
		if code != 200 || b["status"] != st {
			t.Fatalf("booking %s on the restored slotd: %d %v, want %s", id, code, b, st)
		}
	}
	_, tk = srv.Call(t, operator, "GET", "/v1/bookings/"+ticketID+"/ticket", "")
	if tk["qr"] != ticketBefore {
		t.Fatalf("the restored slotd signs the ticket of %s as %v, before the backup as %s: the ticket secret did not come along", ticketID, tk["qr"], ticketBefore)
	}

	// The day list: dump's equals the API's, booking for booking.
	date := bookings[0].Start.Format("2006-01-02")
	var api []json.RawMessage
	for cursor := ""; ; {
		code, b := srv.Call(t, operator, "GET", "/v1/offices/"+backupOffice+"/days/"+date+"/bookings?limit=200&cursor="+url.QueryEscape(cursor), "")
		if code != 200 {
			t.Fatalf("agenda: %d %v", code, b)
		}
		for _, v := range b["bookings"].([]any) {
			raw, _ := json.Marshal(v)
			api = append(api, raw)
		}
		if cursor, _ = b["next_cursor"].(string); cursor == "" {
			break
		}
	}
	srv.Stop(t, syscall.SIGTERM)
	code, out, errOut = slotdCmd(t, bin, work, "dump", "-data", restored, "-office", backupOffice, "-date", date)
	if code != 0 {
		t.Fatalf("slotd dump of a day: exit %d %s", code, errOut)
	}
	dayOffices, day := readDump(t, out)
	if len(dayOffices) != 1 || dayOffices[0].ID != backupOffice || len(day) != len(api) || len(day) == 0 {
		t.Fatalf("day dump: %d offices, %d bookings; the API lists %d", len(dayOffices), len(day), len(api))
	}
	for i := range day {
		raw, _ := json.Marshal(day[i])
		var got, want any
		_ = json.Unmarshal(raw, &got)
		_ = json.Unmarshal(api[i], &want)
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("day list entry %d:\ndump %s\napi  %s", i, raw, api[i])
		}
	}
	code, _, errOut = slotdCmd(t, bin, work, "dump", "-data", restored, "-office", "nowhere")
	if code != 1 {
		t.Fatalf("dump of an office the store does not hold: exit %d", code)
	}
	oneLine(t, "dump of an office the store does not hold", errOut, restored, `holds no office "nowhere"`, backupOffice)
	code, out, _ = slotdCmd(t, bin, work, "dump", "-data", restored, "-office", backupOffice, "-date", date, "-format", "text")
	if code != 0 || strings.Count(out, "\n") != 4+len(day) || !strings.Contains(out, day[0].Number) {
		t.Fatalf("day list as text: exit %d, %d lines for %d bookings:\n%s", code, strings.Count(out, "\n"), len(day), out)
	}
}

// TestSubcommandBadInput: a data directory that is not a store, a
// malformed flag and a server that is not there each answer one line on
// stderr naming the file or flag and the problem, with exit status 2
// for usage and 1 for failure.
func TestSubcommandBadInput(t *testing.T) {
	root := t.TempDir()
	file := filepath.Join(root, "file")
	if err := os.WriteFile(file, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	empty := filepath.Join(root, "empty")
	garbage := filepath.Join(root, "garbage")
	for _, d := range []string{empty, garbage} {
		if err := os.Mkdir(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	// A manifest marker pointing at a manifest of noise.
	if err := os.WriteFile(filepath.Join(garbage, "marker.manifest.000001.MANIFEST-000001"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(garbage, "MANIFEST-000001"), bytes.Repeat([]byte("noise "), 100), 0o600); err != nil {
		t.Fatal(err)
	}
	// A Pebble store that is not slotd's.
	foreign := filepath.Join(root, "foreign")
	pdb, err := pebble.Open(foreign, &pebble.Options{Logger: quietPebble{}})
	if err != nil {
		t.Fatal(err)
	}
	if err := pdb.Set([]byte("k"), []byte("v"), pebble.Sync); err != nil {
		t.Fatal(err)
	}
	if err := pdb.Close(); err != nil {
		t.Fatal(err)
	}
	env := func(string) string { return "" }
	f := func(wantCode int, args []string, words ...string) {
		t.Helper()
		var stdout, stderr bytes.Buffer
		if code := run(args, env, &stdout, &stderr); code != wantCode {
			t.Fatalf("slotd %s: exit %d, want %d; stderr %q", strings.Join(args, " "), code, wantCode, stderr.String())
		}
		if stdout.Len() != 0 {
			t.Fatalf("slotd %s wrote to stdout: %q", strings.Join(args, " "), stdout.String())
		}
		line, _, _ := strings.Cut(stderr.String(), "\n") // flag's usage follows its one line
		oneLine(t, "slotd "+strings.Join(args, " "), line+"\n", words...)
	}
	for _, sub := range []string{"dump", "verify"} {
		f(1, []string{sub, "-data", filepath.Join(root, "missing")}, filepath.Join(root, "missing"), "does not exist")
		f(1, []string{sub, "-data", file}, file, "is a file")
		f(1, []string{sub, "-data", empty}, empty, "holds no Pebble store")
		f(1, []string{sub, "-data", garbage}, garbage)
		f(1, []string{sub, "-data", foreign}, foreign, "not a slotd data directory")
		f(2, []string{sub, "-data", empty, "extra"}, `unexpected argument "extra"`)
	}
	if entries, _ := os.ReadDir(empty); len(entries) != 0 {
		t.Fatalf("reading an empty directory left %s in it", entries[0].Name())
	}
	f(2, []string{"dump", "-data", empty, "-office", "x", "-date", "2026-13-01"}, `-date "2026-13-01"`)
	f(2, []string{"dump", "-data", empty, "-date", "2026-12-01"}, "-date needs -office")
	f(2, []string{"dump", "-data", empty, "-format", "xml"}, `-format "xml"`)
	f(2, []string{"dump", "-nope"}, "-nope")
	f(2, []string{"backup"}, "-to DIR is required")
	f(2, []string{"backup", "-to", "/b", "-timeout", "0s"}, "-timeout 0s")
	f(1, []string{"backup", "-to", "/b", "-admin-addr", "127.0.0.1:1"}, "cannot reach", "127.0.0.1:1")
}

// quietPebble keeps Pebble's messages out of the test's output.
type quietPebble struct{}

func (quietPebble) Infof(string, ...any)  {}
func (quietPebble) Errorf(string, ...any) {}
func (quietPebble) Fatalf(format string, args ...any) {
	panic(fmt.Sprintf(format, args...))
}
