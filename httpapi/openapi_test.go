package httpapi

import (
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	yaml "go.yaml.in/yaml/v4"
)

// docs/openapi.yaml is a valid OpenAPI document (loadSpec validates it,
// its examples included, with kin-openapi), and it describes the server's
// API: the same routes and methods, the same error codes, an example of
// every request body and answer. spec_test.go holds the live answers of
// the tests to it.

func TestOpenAPIValid(t *testing.T) {
	loadSpec(t)
}

// TestOpenAPIKeys: no mapping key of the YAML holds a space. A one-line
// description in a flow mapping ({type: string, description: …}) that
// holds ", " splits there into a second key; keys with spaces are how
// that shows.
func TestOpenAPIKeys(t *testing.T) {
	b, err := os.ReadFile(openAPIPath)
	if err != nil {
		t.Fatal(err)
	}
	var root yaml.Node
	if err := yaml.Unmarshal(b, &root); err != nil {
		t.Fatal(err)
	}
	var walk func(n *yaml.Node)
	walk = func(n *yaml.Node) {
		if n.Kind == yaml.MappingNode {
			for i := 0; i+1 < len(n.Content); i += 2 {
				if k := n.Content[i]; strings.ContainsAny(k.Value, " \t") {
					t.Errorf("line %d: key %q: quote the value before it", k.Line, k.Value)
				}
				walk(n.Content[i+1])
			}
			return
		}
		for _, c := range n.Content {
			walk(c)
		}
	}
	walk(&root)
}

func TestOpenAPIRoutes(t *testing.T) {
	doc, _ := loadSpec(t)
	var server, spec []string
	for _, rt := range (&Server{}).routes() {
		server = append(server, rt.method+" "+rt.pattern)
	}
	for path, item := range doc.Paths.Map() {
		for method := range item.Operations() {
			spec = append(spec, method+" "+path)
		}
	}
	slices.Sort(server)
	slices.Sort(spec)
	if !slices.Equal(server, spec) {
		t.Fatalf("routes differ\nserver:  %v\nopenapi: %v", server, spec)
	}
}

func TestOpenAPICodes(t *testing.T) {
	doc, _ := loadSpec(t)
	var server, spec []string
	for code := range codes {
		server = append(server, code)
	}
	problem := doc.Components.Schemas["Problem"]
	if problem == nil || problem.Value.Properties["code"] == nil {
		t.Fatal("no Problem schema with a code property")
	}
	for _, c := range problem.Value.Properties["code"].Value.Enum {
		s, _ := c.(string)
		spec = append(spec, s)
	}
	slices.Sort(server)
	slices.Sort(spec)
	if !slices.Equal(server, spec) {
		t.Fatalf("codes differ\nserver:  %v\nopenapi: %v", server, spec)
	}
}

// TestOpenAPIExamples: every request body and every successful answer
// with a body has an example (loadSpec checks each against its schema),
// and so does every shared error answer. PNG and PDF bodies are bytes: no
// example says more than their media type.
func TestOpenAPIExamples(t *testing.T) {
	doc, _ := loadSpec(t)
	binary := []string{"image/png", "application/pdf"}
	hasExample := func(mt *openapi3.MediaType) bool { return mt.Example != nil || len(mt.Examples) > 0 }
	for path, item := range doc.Paths.Map() {
		for method, op := range item.Operations() {
			what := method + " " + path
			if rb := op.RequestBody; rb != nil {
				for ct, mt := range rb.Value.Content {
					if !hasExample(mt) {
						t.Errorf("%s: request body %s has no example", what, ct)
					}
				}
			}
			ok := false
			for status, r := range op.Responses.Map() {
				if !strings.HasPrefix(status, "2") {
					continue
				}
				ok = true
				for ct, mt := range r.Value.Content {
					if !slices.Contains(binary, ct) && !hasExample(mt) {
						t.Errorf("%s: answer %s %s has no example", what, status, ct)
					}
				}
			}
			if !ok {
				t.Errorf("%s: no successful answer", what)
			}
		}
	}
	for name, r := range doc.Components.Responses {
		for ct, mt := range r.Value.Content {
			if !hasExample(mt) {
				t.Errorf("components/responses/%s: %s has no example", name, ct)
			}
		}
	}
}
