//go:build invariants

package cluster

// invariantsEnabled turns on checks that cost time: every group's applied
// indexes are checked to follow each other, and every proposal found in a
// Ready is checked against what it proposed. `make test` builds with it.
const invariantsEnabled = true
