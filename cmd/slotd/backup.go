package main

// slotd backup: asks the running slotd, on its admin listener, for an
// online backup of its data directory (httpapi's POST /admin/backup,
// wal's DB.Backup), and the server's side of it.

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"path/filepath"
	"strings"
	"time"

	"slotd/allocator"
	"slotd/httpapi"
	"slotd/wal"
)

// dataDirFiles are the files beside the store in the data directory
// that a start needs or keeps: a backup copies them along. Without the
// ticket secret a restored slotd would make a new one, and every ticket
// printed so far would fail at the door.
var dataDirFiles = []string{secretFile, devKeysFile}

// storeBackup serves the admin listener's backup route with db's Backup.
func storeBackup(db *wal.DB) httpapi.BackupFunc {
	return func(dir string) (string, error) {
		st, err := db.Backup(dir, dataDirFiles)
		switch {
		case errors.Is(err, wal.ErrBackupTargetExists):
			return "", refusal(httpapi.ErrBackupTargetExists, err, wal.ErrBackupTargetExists)
		case errors.Is(err, wal.ErrBackupTargetUnusable):
			return "", refusal(httpapi.ErrBackupTargetUnusable, err, wal.ErrBackupTargetUnusable)
		case errors.Is(err, wal.ErrBackupRunning):
			return "", refusal(httpapi.ErrBackupRunning, err, nil)
		case errors.Is(err, wal.ErrDegraded), errors.Is(err, allocator.ErrJournalClosed):
			return "", refusal(httpapi.ErrBackupUnavailable, err, nil)
		case err != nil:
			return "", err
		}
		return fmt.Sprintf("backup written to %s: %d files, %s, through sync round %d, in %s",
			st.Dir, st.Files, sizeText(st.Bytes), st.SyncedRound, st.Duration.Round(time.Millisecond)), nil
	}
}

// backupRefusal is a refusal of the backup route: kind decides the
// answer's status, detail is its line.
type backupRefusal struct {
	kind   error
	detail string
}

func (r *backupRefusal) Error() string { return r.detail }
func (r *backupRefusal) Unwrap() error { return r.kind }

// refusal makes err, one of wal's refusals, a refusal of kind, its words
// without wal's sentinel in front (the line names the path first).
func refusal(kind, err, sentinel error) error {
	detail := err.Error()
	if sentinel != nil {
		detail = strings.TrimPrefix(detail, sentinel.Error()+": ")
	}
	return &backupRefusal{kind: kind, detail: detail}
}

// sizeText renders bytes for people.
func sizeText(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d bytes", n)
}

// backupAnswerBytesMax bounds what the CLI reads of the server's answer.
const backupAnswerBytesMax = 64 << 10

// runBackup is `slotd backup -to DIR [-admin-addr ADDR] [-timeout D]`.
func runBackup(args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("slotd backup", flag.ContinueOnError)
	fs.SetOutput(stderr)
	to := fs.String("to", "", "`directory` to write the backup to: new, or empty; its parent must exist (a relative path is taken from the current directory)")
	adminAddr := fs.String("admin-addr", envOr(getenv, "SLOTD_ADMIN_ADDR", "127.0.0.1:9090"), "the running slotd's admin listener `address` (default: SLOTD_ADMIN_ADDR, else 127.0.0.1:9090)")
	timeout := fs.Duration("timeout", time.Hour, "how long to wait for the backup to finish")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: slotd backup -to DIR [-admin-addr ADDR]\n"+
			"Asks the running slotd for a consistent copy of its data directory (store, sync mark, ticket secret).\n"+
			"The directory is written by the server, on its machine; restore by starting slotd with -data on a copy of it.\n"+
			"On a cluster node: every group store, each holding every booking acknowledged before the backup began,\n"+
			"and a manifest; seed a fresh cluster's nodes from it with slotd cluster restore.")
		fs.PrintDefaults()
	}
	if code, ok := parseSub(fs, args, stderr); !ok {
		return code
	}
	if *to == "" {
		fmt.Fprintln(stderr, "slotd backup: -to DIR is required")
		return 2
	}
	if *timeout <= 0 {
		fmt.Fprintf(stderr, "slotd backup: -timeout %s must be positive\n", *timeout)
		return 2
	}
	dir, err := filepath.Abs(*to)
	if err != nil {
		fmt.Fprintf(stderr, "slotd backup: -to %s: %v\n", *to, err)
		return 2
	}
	u := url.URL{Scheme: "http", Host: *adminAddr, Path: "/admin/backup", RawQuery: url.Values{"to": {dir}}.Encode()}
	client := &http.Client{Timeout: *timeout}
	resp, err := client.Post(u.String(), "", nil)
	if err != nil {
		fmt.Fprintf(stderr, "slotd backup: cannot reach slotd's admin listener at %s: %v: is slotd running with that -admin-addr?\n", *adminAddr, rootCause(err))
		return 1
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, backupAnswerBytesMax))
	line, _, _ := strings.Cut(strings.TrimSpace(string(body)), "\n")
	switch {
	case resp.StatusCode == http.StatusOK:
		fmt.Fprintln(stdout, line)
		return 0
	case resp.StatusCode == http.StatusNotFound:
		fmt.Fprintf(stderr, "slotd backup: %s has no backup route: is it a slotd admin listener of this version?\n", *adminAddr)
		return 1
	case resp.StatusCode == http.StatusBadRequest:
		fmt.Fprintln(stderr, "slotd "+line)
		return 2
	}
	fmt.Fprintln(stderr, "slotd "+line)
	return 1
}

// rootCause strips url.Error's method and URL, which repeat what the
// line says.
func rootCause(err error) error {
	if ue, ok := errors.AsType[*url.Error](err); ok {
		return ue.Err
	}
	return err
}

// envOr returns the environment variable name, or def when it is empty.
func envOr(getenv func(string) string, name, def string) string {
	if v := getenv(name); v != "" {
		return v
	}
	return def
}

// parseSub parses a subcommand's flags; when it should not go on, ok is
// false and code is its exit status (0 after -h, 2 for bad usage, whose
// line flag printed with the usage).
func parseSub(fs *flag.FlagSet, args []string, stderr io.Writer) (code int, ok bool) {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0, false
		}
		return 2, false
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "%s: unexpected argument %q\n", fs.Name(), fs.Arg(0))
		return 2, false
	}
	return 0, true
}
