package main

import (
	"testing"

	"slotd/allocator"
)

// The demo offices must stay valid: `make run` loads them.
func TestDemoOfficesAreValid(t *testing.T) {
	cfgs, err := allocator.DecodeOfficeConfigs(demoOffices)
	if err != nil {
		t.Fatal(err)
	}
	regions := map[string]int{}
	for _, c := range cfgs {
		if err := c.Validate(); err != nil {
			t.Fatalf("demo office %s: %v", c.ID, err)
		}
		regions[c.Region]++
	}
	if len(cfgs) < 4 || len(regions) < 2 {
		t.Fatalf("demo: %d offices in %d regions", len(cfgs), len(regions))
	}
}
