package main

// Offices name IANA time zones (time.LoadLocation). The container image
// is built FROM scratch, with no zoneinfo database, so the binary carries
// its own (about 450 KB); a host's database, where there is one, is
// still read first.
import _ "time/tzdata"
