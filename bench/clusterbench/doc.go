// Package clusterbench measures a slotd cluster on one machine beside a
// single slotd, in the same run (make bench-cluster): the rush of the
// peer comparison (package peers, its load generator and its check of
// what was stored) over HTTP, and the time a group takes to accept
// writes again after its leader dies.
//
// # The rush
//
// Every run starts its processes from the slotd binary on fresh data
// directories, with one keys file and one ticket secret, no key or
// applicant rate limit, and -log-level warn (no access log, as the peers'
// edge writes none), creates the rush's office through the API and
// releases its dates, and runs peers' generator against them in a child
// process. The rows:
//
//	slotd           one process alone
//	cluster/spread  three processes as a cluster of one Raft group; worker
//	                i connects to node i mod 3, so two thirds of the requests
//	                reach a follower and are forwarded to the leader
//	cluster/leader  the same cluster, every worker at the leader's address
//
// Afterwards the run reads every booking of the rushed dates back through
// the operators' agenda of the node that runs the office's engine and
// hands them to peers.Verify (every acknowledged, uncancelled booking
// owns its seat, no seat has two owners, nothing unacknowledged owns
// one), and for the cluster waits until the three replicas stand at one
// applied index with one digest. The rows take turns within each round
// (Config.Rounds), and a row is its median round, as in package peers.
// A row is a Row, package peers' ProcessBackend: the same code starts,
// rushes and checks the cluster when make bench-peers runs it beside
// PostgreSQL and Redis (bench/cmd/peers -cluster), so that the cluster's
// ratio to PostgreSQL comes from one run.
//
// # Failover
//
// A fresh cluster is rushed on the first date, so that the store a new
// leader rebuilds its engine from is not empty. Then, Config.Kills times:
// wait until the replicas agree and a node runs the group's engine, kill
// that node with SIGKILL, and at once start Config.FailoverWriters
// writers booking on the other dates through random running nodes,
// retrying every failure after a few milliseconds; the time from the kill
// to the first acknowledged write is one sample. The killed node is
// started again on its data before the next kill. At the end every
// acknowledged booking, the rush's and the writers', is verified as
// above.
//
// The package owns no globals: everything a run needs is in Config.
package clusterbench
