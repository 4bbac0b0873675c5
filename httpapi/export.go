package httpapi

import "slotd/allocator"

// AppendBookingJSON appends v as the API's booking JSON (api.Booking),
// exactly as every booking route answers it; for exports that must read
// like the API (cmd/slotd's dump).
func AppendBookingJSON(b []byte, v *allocator.Booking) []byte { return appendBooking(b, v) }

// AppendOfficeJSON appends an office as GET /v1/offices/{id} answers it
// (api.Office): the config and released_through.
func AppendOfficeJSON(b []byte, rec *allocator.OfficeRecord) []byte {
	return appendOfficeRecord(b, &rec.Config, rec.ReleasedThrough)
}
