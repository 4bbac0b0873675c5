package httpapi

import (
	"fmt"
	"slices"
	"strings"

	"slotd/allocator"
)

// Portal namespaces.
//
// Applicant ids are the portals' own: "a-123" of one portal and "a-123"
// of another are two people. Every key belongs to a namespace
// (Key.Namespace, by default the key's name); keys of one portal name the
// same one. (A rotation needs no second key: one key holds the old and
// the new secret, keys.go.) A portal key
// holds, confirms, cancels, reschedules, reads, lists, prints and watches
// for the applicants of its namespace only, and its event feed shows
// only their events and the events without an applicant. A booking or
// watch of another namespace answers 404 exactly as one that does not
// exist. Operator and admin keys act on the bookings of every namespace
// at their offices (an office serves whoever comes with a valid ticket),
// and an admin key's feed shows every namespace at its offices.
//
// The engine knows nothing of namespaces: the edge gives it one opaque
// applicant id per (namespace, applicant),
//
//	namespace ‖ 0x00 ‖ applicant     (the namespace "": applicant alone)
//
// and strips the namespace again where it renders one.
//
//	N1. Every applicant rule of the engine — the active limit, the
//	    duplicate check, the cancel penalty, "my bookings", watches per
//	    applicant — counts per engine id, so per namespace: the same id in
//	    two namespaces is two people, and counting them together would
//	    be wrong for them and leak across portals (portal-b's bookings
//	    would make portal-a's applicant answer limit_reached,
//	    duplicate_booking or applicant_blocked, telling portal-a that the
//	    id has bookings elsewhere). Portals that identify people by one
//	    shared id and want their limits shared give their keys one
//	    namespace, and then share the bookings too.
//	N2. The namespace is durable with the booking and the watch: it is
//	    part of the applicant id the journal stores, so the record format
//	    is unchanged and a restart restores it.
//	N3. 0x00 occurs neither in a namespace (keyNamePattern) nor in an
//	    applicant (engineApplicant refuses it), so the first 0x00 splits
//	    an id and no two (namespace, applicant) pairs compose to one id.
//	N4. Bookings and watches stored before namespaces hold the applicant
//	    alone: they are in the legacy namespace "", which keys that name
//	    "namespace": "" reach (docs/runbook.md, upgrading). An applicant
//	    id with a 0x00 stored then, which nothing refused, would read as
//	    namespaced.
//
// Walk-ins. A key with the operator scope and without the portal scope
// books, confirms, cancels and reschedules for walk-in and phone
// applicants at its offices only (403 elsewhere), under every rule a
// portal's applicant has. Its applicants live in the key's own namespace
// (Key.Namespace, by default the key's name), like a portal's, so N1–N4
// hold unchanged: an office's walk-in "a-1" and a portal's "a-1" are two
// people, and the history's actor is the operator key. A person who
// booked by phone finds the booking again by the ticket's number, which
// any operator of the office looks up (GET /v1/bookings?number=) in any
// namespace. An office that wants its phone bookings to show in a
// portal's "my bookings" gives its operator key that portal's namespace
// and books with the portal's applicant id: then limits and duplicates
// are shared with the portal too, as N1 says for shared namespaces. A
// separate "office namespace" was not added: it would be a second kind
// of namespace with the same rules.
//
// Composing at the edge instead of adding a namespace to the engine's
// records: the engine's rules need only equality of applicant ids, so an
// opaque id keeps them, their tests and their memory per booking as they
// are; and records stored before namespaces read as the legacy namespace
// with no new record version and no upgrade pass over the store.

// namespaceSeparator ends the namespace in an engine applicant id (N3).
const namespaceSeparator = "\x00"

// engineApplicantOf composes the engine's applicant id.
func engineApplicantOf(namespace, applicant string) string {
	if namespace == "" {
		return applicant // N4
	}
	return namespace + namespaceSeparator + applicant
}

// SplitApplicant splits an engine applicant id into its namespace and the
// applicant id the portal gave (N3, N4).
func SplitApplicant(id string) (namespace, applicant string) {
	ns, a, ok := strings.Cut(id, namespaceSeparator)
	if !ok {
		return "", id
	}
	return ns, a
}

// engineApplicant returns the engine's id of a non-empty applicant of the
// key's namespace. It answers 400 and returns false when the applicant
// holds the separator (N3).
func (r *request) engineApplicant(applicant string) (string, bool) {
	if strings.Contains(applicant, namespaceSeparator) {
		r.invalid("applicant must not contain the NUL character")
		return "", false
	}
	return engineApplicantOf(r.key.namespace, applicant), true
}

// sees reports whether the key's event feed shows e: an event of one of
// the key's offices, and for a key without the admin scope one without an
// applicant or with an applicant of the key's namespace.
func (p *principal) sees(e *allocator.Event) bool {
	if !p.office(e.Office) {
		return false
	}
	if p.admin {
		return true
	}
	var id string
	switch {
	case e.Booking != nil:
		id = e.Booking.Applicant
	case e.Watch != nil:
		id = e.Watch.Applicant
	default:
		return true // slots.released and other office events
	}
	ns, _ := SplitApplicant(id)
	return ns == p.namespace
}

// CheckLegacyBookings refuses a keys file that would lock portals out of
// active bookings stored before namespaces (N4): when there are any and
// the file has portal keys, one of them must name the namespace "".
func CheckLegacyBookings(keys []Key, active int) error {
	if active == 0 {
		return nil
	}
	portals := false
	for i := range keys {
		if !slices.Contains(keys[i].Scopes, ScopePortal) {
			continue
		}
		if keys[i].namespace() == "" {
			return nil
		}
		portals = true
	}
	if !portals {
		return nil
	}
	return fmt.Errorf("keys: %d active bookings and watches were stored before portal namespaces and no portal key reaches them: "+
		"give the keys of the portal that made them \"namespace\": \"\" (docs/runbook.md, upgrading to portal namespaces)", active)
}
