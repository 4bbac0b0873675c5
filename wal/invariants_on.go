//go:build invariants

package wal

// invariantsEnabled turns on checks that cost time: every encoded value is
// decoded again and compared before it is written, and the event watermark
// checks its ranges. `make test` builds with it.
const invariantsEnabled = true
