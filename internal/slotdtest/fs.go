package slotdtest

import (
	"strings"
	"sync/atomic"
	"syscall"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/cockroachdb/pebble/v2/vfs/errorfs"
)

// The file systems of the tests of the packages on Pebble (wal, raftlog,
// cmd/slotd): one in memory that can be crashed, and a full disk.

// MemFS returns a crash-testable in-memory file system with dir created.
func MemFS(t testing.TB, dir string) *vfs.MemFS {
	t.Helper()
	fs := vfs.NewCrashableMem()
	if err := fs.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return fs
}

// NoSpace fails every write to a file in dir with ENOSPC once on is set,
// as a full disk does: files can still be created, empty, and dir synced.
func NoSpace(dir string, on *atomic.Bool) errorfs.Injector {
	return errorfs.InjectorFunc(func(op errorfs.Op) error {
		if !on.Load() || !strings.HasPrefix(op.Path, dir+"/") {
			return nil
		}
		switch op.Kind {
		case errorfs.OpFileWrite, errorfs.OpFileWriteAt, errorfs.OpFilePreallocate, errorfs.OpFileFlush,
			errorfs.OpFileSync, errorfs.OpFileSyncData, errorfs.OpFileSyncTo:
			return syscall.ENOSPC
		}
		return nil
	})
}
