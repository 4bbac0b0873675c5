//go:build !invariants

package raftlog

const invariantsEnabled = false
