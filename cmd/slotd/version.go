package main

import (
	"fmt"
	"io"
	"runtime"
	"runtime/debug"

	"slotd/httpapi"
)

// version and commit name the build. The Makefile sets them:
//
//	go build -ldflags "-X main.version=v1.2.3 -X main.commit=0123abc…" ./cmd/slotd
//
// Left empty (a plain go build), they come from what the go command
// stamped into the binary: the module version and the VCS revision.
var version, commit string

// Shown when neither the linker nor the build stamp names the build.
const (
	versionUnknown = "devel"
	commitUnknown  = "unknown"
)

// buildInfo names the running binary (slotd -version, slotd_build_info).
func buildInfo() httpapi.BuildInfo {
	bi, _ := debug.ReadBuildInfo()
	return buildInfoOf(version, commit, bi)
}

// buildInfoOf prefers the linker's version and commit, then the build
// stamp's (bi may be nil): the main module's version unless it is
// "(devel)", and vcs.revision, marked "-dirty" when vcs.modified says
// the work tree had changes.
func buildInfoOf(version, commit string, bi *debug.BuildInfo) httpapi.BuildInfo {
	b := httpapi.BuildInfo{Version: version, Commit: commit, GoVersion: runtime.Version()}
	if bi != nil {
		if b.Version == "" && bi.Main.Version != "(devel)" {
			b.Version = bi.Main.Version
		}
		var revision, modified string
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				revision = s.Value
			case "vcs.modified":
				modified = s.Value
			}
		}
		if b.Commit == "" && revision != "" {
			b.Commit = revision
			if modified == "true" {
				b.Commit += "-dirty"
			}
		}
	}
	if b.Version == "" {
		b.Version = versionUnknown
	}
	if b.Commit == "" {
		b.Commit = commitUnknown
	}
	return b
}

// printVersion writes what -version prints: one line.
func printVersion(w io.Writer) {
	b := buildInfo()
	fmt.Fprintf(w, "slotd %s commit %s %s %s/%s\n", b.Version, b.Commit, b.GoVersion, runtime.GOOS, runtime.GOARCH)
}
