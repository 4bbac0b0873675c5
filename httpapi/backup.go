package httpapi

// POST /admin/backup?to=DIR on the admin listener: an online backup of
// the running store, for operators (cmd/slotd's `slotd backup` asks for
// it). The admin listener answers in plain text, one line, as /readyz
// does: the line is what `slotd backup` prints.

import (
	"errors"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"go.uber.org/zap"
)

// BackupFunc copies the running store, and whatever else its data
// directory needs to start, into dir (absolute and clean), and returns a
// one-line report of what it wrote. A refusal wraps one of the
// ErrBackup* errors below, with a message that names the path and the
// problem; any other error is a failure of the copy. Must be safe for
// concurrent use.
type BackupFunc func(dir string) (report string, err error)

// Refusals a BackupFunc wraps; each answers its own status.
var (
	// ErrBackupTargetExists (409): the target is a file, or a directory
	// that is not empty.
	ErrBackupTargetExists = errors.New("backup target exists")
	// ErrBackupTargetUnusable (422): the target cannot be written (its
	// parent is missing or not a directory, or creating it is refused).
	ErrBackupTargetUnusable = errors.New("backup target cannot be written")
	// ErrBackupRunning (409): another backup is running.
	ErrBackupRunning = errors.New("a backup is already running")
	// ErrBackupUnavailable (503): the store cannot be copied now (it
	// failed and refuses writes, or it is closing).
	ErrBackupUnavailable = errors.New("the store cannot be backed up now")
)

const (
	// backupPathBytesMax bounds ?to=: PATH_MAX on Linux.
	backupPathBytesMax = 4096
	// backupWriteTimeout replaces the admin listener's write timeout for
	// a backup's answer: a copy to another file system copies every
	// table, and the answer comes only after it.
	backupWriteTimeout = time.Hour
)

// backup serves POST /admin/backup?to=DIR.
func (s *Server) backup(w http.ResponseWriter, req *http.Request) {
	BackupHandler(s.cfg.Backup, s.log)(w, req)
}

// BackupHandler serves POST /admin/backup?to=DIR with fn: the route of a
// Server's admin listener, and of an admin listener that no Server owns
// (a cluster node's, whose backup spans its groups' stores).
func BackupHandler(fn BackupFunc, log *zap.Logger) http.HandlerFunc {
	return func(w http.ResponseWriter, req *http.Request) { serveBackup(fn, log, w, req) }
}

func serveBackup(fn BackupFunc, log *zap.Logger, w http.ResponseWriter, req *http.Request) {
	answer := func(status int, line string) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		if status == http.StatusServiceUnavailable {
			w.Header().Set("Retry-After", "10")
		}
		w.WriteHeader(status)
		_, _ = w.Write([]byte(strings.ReplaceAll(line, "\n", " ") + "\n"))
	}
	if req.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		answer(http.StatusMethodNotAllowed, "backup: use POST /admin/backup?to=DIR")
		return
	}
	dir, problem := backupTarget(req)
	if problem != "" {
		answer(http.StatusBadRequest, "backup: "+problem)
		return
	}
	_ = http.NewResponseController(w).SetWriteDeadline(time.Now().Add(backupWriteTimeout))
	report, err := fn(dir)
	if err != nil {
		status := http.StatusInternalServerError
		switch {
		case errors.Is(err, ErrBackupTargetExists), errors.Is(err, ErrBackupRunning):
			status = http.StatusConflict
		case errors.Is(err, ErrBackupTargetUnusable):
			status = http.StatusUnprocessableEntity
		case errors.Is(err, ErrBackupUnavailable):
			status = http.StatusServiceUnavailable
		}
		log.Warn("backup refused or failed", zap.String("to", dir), zap.Int("status", status), zap.Error(err))
		answer(status, "backup: "+err.Error())
		return
	}
	log.Info("backup written", zap.String("to", dir), zap.String("report", report))
	answer(http.StatusOK, report)
}

// backupTarget reads ?to=, the only parameter, given once: an absolute
// path, returned clean. problem says what is wrong with the request.
func backupTarget(req *http.Request) (dir, problem string) {
	q := req.URL.Query()
	for k := range q {
		if k != "to" {
			return "", "unknown parameter " + strconv.Quote(k) + ": the only one is ?to=DIR"
		}
	}
	vs := q["to"]
	switch {
	case len(vs) == 0 || vs[0] == "":
		return "", "?to=DIR is required: the directory to write the backup to, an absolute path on the server"
	case len(vs) > 1:
		return "", "?to= is given more than once"
	}
	to := vs[0]
	switch {
	case len(to) > backupPathBytesMax:
		return "", "?to= is longer than 4096 bytes"
	case !utf8.ValidString(to) || strings.ContainsRune(to, 0):
		return "", "?to= is not a path: it holds a NUL byte or is not UTF-8 text"
	case !filepath.IsAbs(to):
		return "", "?to=" + strconv.Quote(to) + " is not an absolute path; the server's working directory is not yours"
	}
	return filepath.Clean(to), ""
}
