package client

// The Go client of slotd's HTTP API, generated from docs/openapi.yaml by
// oapi-codegen (client.gen.go): a type for every schema, a method for
// every operation. After editing the spec, `make generate` regenerates
// it; TestGenerated fails while the checked-in file differs from what
// the spec generates.

//go:generate go tool oapi-codegen -config oapi-codegen.yaml ../docs/openapi.yaml
