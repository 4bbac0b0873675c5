package httpapi

import (
	"encoding/json"
	"time"

	"slotd/allocator"
	"slotd/api"
)

// Watches: POST /v1/watches and DELETE /v1/watches/{id} (portal). A watch
// asks for the next freed or newly released seat matching it; the engine
// serves watches oldest first (allocator/watch.go).

type watchBody struct {
	Applicant string `json:"applicant"`
	Service   string `json:"service"`
	Office    string `json:"office"`
	Region    string `json:"region"`
	From      string `json:"from"`
	To        string `json:"to"`
	AutoHold  bool   `json:"auto_hold"`
}

// watchJSON is the answer shape of a watch.
type watchJSON struct {
	ID        string `json:"id"`
	Applicant string `json:"applicant"`
	Service   string `json:"service"`
	Office    string `json:"office,omitempty"`
	Region    string `json:"region,omitempty"`
	From      string `json:"from"`
	To        string `json:"to"`
	AutoHold  bool   `json:"auto_hold"`
	CreatedAt string `json:"created_at"`
}

func renderWatch(w *allocator.WatchRecord) []byte {
	_, applicant := SplitApplicant(w.Applicant)
	b, err := json.Marshal(watchJSON{
		ID: w.ID.String(), Applicant: applicant, Service: w.Service, Office: w.Office, Region: w.Region,
		From: w.From.String(), To: w.To.String(), AutoHold: w.AutoHold,
		CreatedAt: time.Unix(0, w.CreatedUnixNano).UTC().Format(time.RFC3339),
	})
	if err != nil {
		panic("BUG: httpapi: watch JSON: " + err.Error())
	}
	return b
}

// createWatch: POST /v1/watches → 201 watch.
func (s *Server) createWatch(r *request) {
	var body watchBody
	if !r.decode(&body) {
		return
	}
	applicant, ok := r.applicant(body.Applicant, true)
	if !ok {
		return
	}
	if applicant, ok = r.engineApplicant(applicant); !ok {
		return
	}
	if body.Service == "" || len(body.Service) > idBytesMax || len(body.Office) > idBytesMax || len(body.Region) > idBytesMax {
		r.invalid("service is required; service, office and region are at most %d bytes", idBytesMax)
		return
	}
	from, ok := r.requiredDate("from", body.From)
	if !ok {
		return
	}
	to, ok := r.requiredDate("to", body.To)
	if !ok {
		return
	}
	req := allocator.WatchRequest{Applicant: applicant, Service: body.Service, Office: body.Office, Region: body.Region,
		From: from, To: to, AutoHold: body.AutoHold}
	r.aboutOffice(body.Office)
	if s.cfg.WatchID != nil {
		req.ID, _ = s.cfg.WatchID(r.ctx)
	}
	render := func(c *allocator.Change) (int, []byte) { return 201, renderWatch(c.Watches[0]) }
	w, err := s.engine.Watch(r.now, req, r.meta("", render))
	r.answer(err, func() (int, []byte) { return 201, renderWatch(&w) })
}

// deleteWatch: DELETE /v1/watches/{id}?applicant= → 204.
func (s *Server) deleteWatch(r *request) {
	id, err := allocator.ParseID(r.param(0))
	if err != nil {
		r.fail(problem{code: api.CodeNotFound, detail: "no watch has this id (ids are 22 URL-safe characters)"})
		return
	}
	if !newQuery(r, "applicant").ok() {
		return
	}
	applicant, ok := r.applicant("", true)
	if !ok {
		return
	}
	if applicant, ok = r.engineApplicant(applicant); !ok {
		return
	}
	if err := s.engine.Unwatch(r.now, id, applicant, r.meta("", nil)); err != nil {
		r.failErr(err)
		return
	}
	r.reply(204, nil)
}
