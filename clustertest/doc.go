// Package clustertest runs slotd clusters of real processes on loopback
// and checks what a portal sees across node failures: every booking
// acknowledged with a 2xx is on the survivors with the seat it was given,
// no seat is owned twice, the replicas' stores agree, and writes succeed
// again after a leader dies. It holds only tests.
package clustertest
