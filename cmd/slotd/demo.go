package main

import _ "embed"

// demoOffices are realistic offices in two regions (Moscow and Saint
// Petersburg): migration centres and MFC branches with different hours,
// windows and grids, services of one and two steps, and a 48 h cancel
// cutoff in Saint Petersburg. Loaded by -demo.
//
//go:embed demo_offices.json
var demoOffices []byte
