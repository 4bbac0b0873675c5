//go:build invariants

package raftlog

// invariantsEnabled turns on checks that cost time: every entry is decoded
// again and compared before it is written, Open reads every stored entry
// of every group, and Append checks terms and the hard state's commit.
// `make test` builds with it.
const invariantsEnabled = true
