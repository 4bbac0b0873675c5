package httpapi

import (
	"flag"
	"fmt"
	"os"
	"slices"
	"testing"
)

// TestMain runs the tests, and then, when every test of the package ran,
// fails the run if an operation of docs/openapi.yaml never answered one
// of them with success: the live check (spec_test.go) has then held no
// answer of it to the spec.
func TestMain(m *testing.M) {
	flag.Parse()
	code := m.Run()
	filtered := flag.Lookup("test.run").Value.String() != "" || flag.Lookup("test.skip").Value.String() != ""
	if code != 0 || filtered || testing.Short() {
		os.Exit(code)
	}
	if missing := specUnserved(); len(missing) > 0 {
		fmt.Fprintf(os.Stderr, "FAIL: operations of %s that no test saw answer with success: %v\n", openAPIPath, missing)
		os.Exit(1)
	}
	os.Exit(code)
}

// specUnserved lists the spec's operations absent from specServed.
func specUnserved() []string {
	if spec.doc == nil {
		return nil
	}
	var missing []string
	for _, item := range spec.doc.Paths.Map() {
		for _, op := range item.Operations() {
			if _, ok := specServed.Load(op.OperationID); !ok {
				missing = append(missing, op.OperationID)
			}
		}
	}
	slices.Sort(missing)
	return missing
}
