//go:build !unix

package httpapi

// fileLimit returns 0: there is no RLIMIT_NOFILE to read, and the
// connection caps stay as configured.
func fileLimit() int { return 0 }
