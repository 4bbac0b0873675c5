package client

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestGenerated regenerates the client from docs/openapi.yaml into a
// temporary directory, with the go:generate command's tool and config,
// and compares it with the checked-in client.gen.go.
func TestGenerated(t *testing.T) {
	// The same config, writing elsewhere: the tool takes the config's
	// output over its -o flag.
	dir := t.TempDir()
	out := filepath.Join(dir, "client.gen.go")
	cfg, err := os.ReadFile("oapi-codegen.yaml")
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(string(cfg), "\n")
	n := 0
	for i, l := range lines {
		if strings.HasPrefix(l, "output:") {
			lines[i] = "output: " + out
			n++
		}
	}
	if n != 1 {
		t.Fatalf("oapi-codegen.yaml has %d output lines, want 1", n)
	}
	tmpCfg := filepath.Join(dir, "oapi-codegen.yaml")
	if err := os.WriteFile(tmpCfg, []byte(strings.Join(lines, "\n")), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", "tool", "oapi-codegen", "-config", tmpCfg, "../docs/openapi.yaml")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", cmd, err, b)
	}
	want, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile("client.gen.go")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("client.gen.go is not what docs/openapi.yaml generates: run make generate")
	}
}
