//go:build invariants

package allocator

// invariantsEnabled turns on checks that cost time: bitmap ownership on
// release, record assertions before commit. `make test` builds with it.
const invariantsEnabled = true
