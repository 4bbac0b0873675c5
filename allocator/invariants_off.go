//go:build !invariants

package allocator

const invariantsEnabled = false
