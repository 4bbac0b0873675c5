//go:build unix

package httpapi

import "syscall"

// fileLimit returns how many file descriptors the process may hold
// (RLIMIT_NOFILE, the soft limit, which the Go runtime raises to the hard
// one at start), or 0 when it cannot be read.
func fileLimit() int {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return 0
	}
	return int(min(uint64(lim.Cur), 1<<30)) // RLIM_INFINITY: as good as none
}
