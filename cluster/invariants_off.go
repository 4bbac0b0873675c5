//go:build !invariants

package cluster

const invariantsEnabled = false
