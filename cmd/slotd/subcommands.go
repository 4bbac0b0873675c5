package main

import "io"

// subcommands are the operator's tools beside the server: `slotd NAME
// [flags]`. Without one of these names first, slotd serves.
var subcommands = map[string]func(args []string, getenv func(string) string, stdout, stderr io.Writer) int{
	"backup":  runBackup,  // backup.go
	"cluster": runCluster, // cluster_status.go
	"dump":    runDump,    // dump.go
	"verify":  runVerify,  // dump.go
}
