package httpapi

import (
	"bufio"
	"os"
	"slices"
	"strings"
	"testing"
)

// docs/openapi.yaml and the server describe the same API: the same routes
// and methods, the same error codes. The yaml is read with a line scanner
// that knows the file's layout: paths at two spaces of indent under
// "paths:", methods at four, and the code enum of the Problem schema as
// "- code" items under "enum:".

const openAPIPath = "../docs/openapi.yaml"

type openAPIDoc struct {
	routes []string // "METHOD /path"
	codes  []string
}

func readOpenAPI(t *testing.T) openAPIDoc {
	t.Helper()
	f, err := os.Open(openAPIPath)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var doc openAPIDoc
	var section, path string
	inProblem, inCodeEnum := false, false
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if strings.TrimSpace(line) == "" || strings.HasPrefix(strings.TrimSpace(line), "#") {
			continue
		}
		indent := len(line) - len(strings.TrimLeft(line, " "))
		text := strings.TrimSpace(line)
		if indent == 0 {
			section = strings.TrimSuffix(text, ":")
			continue
		}
		switch section {
		case "paths":
			switch {
			case indent == 2 && strings.HasPrefix(text, "/") && strings.HasSuffix(text, ":"):
				path = strings.TrimSuffix(text, ":")
			case indent == 4 && slices.Contains([]string{"get:", "put:", "post:", "delete:", "patch:"}, text):
				doc.routes = append(doc.routes, strings.ToUpper(strings.TrimSuffix(text, ":"))+" "+path)
			}
		case "components":
			switch {
			case indent == 4:
				inProblem = text == "Problem:"
				inCodeEnum = false
			case inProblem && indent == 8:
				inCodeEnum = false
			case inProblem && indent == 10 && text == "enum:":
				inCodeEnum = true
			case inCodeEnum && indent == 12 && strings.HasPrefix(text, "- "):
				doc.codes = append(doc.codes, strings.TrimPrefix(text, "- "))
			}
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return doc
}

func TestOpenAPIRoutes(t *testing.T) {
	doc := readOpenAPI(t)
	var server []string
	for _, rt := range (&Server{}).routes() {
		server = append(server, rt.method+" "+rt.pattern)
	}
	slices.Sort(server)
	slices.Sort(doc.routes)
	if !slices.Equal(server, doc.routes) {
		t.Fatalf("routes differ\nserver:  %v\nopenapi: %v", server, doc.routes)
	}
}

func TestOpenAPICodes(t *testing.T) {
	doc := readOpenAPI(t)
	var server []string
	for code := range codes {
		server = append(server, code)
	}
	slices.Sort(server)
	slices.Sort(doc.codes)
	if !slices.Equal(server, doc.codes) {
		t.Fatalf("codes differ\nserver:  %v\nopenapi: %v", server, doc.codes)
	}
}
