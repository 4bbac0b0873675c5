//go:build !invariants

package wal

const invariantsEnabled = false
