package main

// Moving an office between groups (package replica, O1–O4): the admin
// route POST /cluster/offices/{id}/move?to=G runs the move from this
// node, each step proposed by its group's leader (here, or over the
// leader's API listener with the forward token); `slotd cluster
// move-office` calls it. Bookings at the office answer 503 office_moving
// for the moments between the freeze and the import.

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/valyala/fasthttp"

	"slotd/api"
	"slotd/replica"
	"slotd/wal"
)

// pathMove is the internal route of one move step: POST, the group in
// the query (?group=N), the step's entry as the body; the answer is 200
// with the step's one-byte answer (replica.MoveOK…).
const pathMove = "/internal/move"

// moveStepBytesMax bounds a step's body: an office id and a group.
const moveStepBytesMax = 4 << 10

// moveTimeout bounds a whole move, retries of its steps included.
const moveTimeout = time.Minute

// codeMoveRefused is the admin code of a move that cannot be done as
// asked (409): the office moves elsewhere, is too large, or is already
// in the destination.
const codeMoveRefused = "move_refused"

func init() {
	adminCodes[codeMoveRefused] = api.CodeInfo{Status: http.StatusConflict, Title: "The office cannot move as asked"}
}

// moveAnswer is the admin route's answer.
type moveAnswer struct {
	Type   string `json:"type,omitempty"`
	Title  string `json:"title,omitempty"`
	Status int    `json:"status,omitempty"`
	Code   string `json:"code,omitempty"`
	Detail string `json:"detail,omitempty"`
	Office string `json:"office"`
	From   uint64 `json:"from,omitempty"`
	To     uint64 `json:"to"`
	// Result is "moved" on success.
	Result string `json:"result,omitempty"`
	Took   string `json:"took,omitempty"`
}

func writeMoveAnswer(w http.ResponseWriter, status int, a moveAnswer) {
	writeAdminAnswer(w, status, a.Code, &a.Type, &a.Title, &a.Status, &a)
}

// adminMoveOffice serves POST /cluster/offices/{id}/move?to=G.
func (f *front) adminMoveOffice(w http.ResponseWriter, r *http.Request) {
	rest := strings.TrimPrefix(r.URL.Path, "/cluster/offices/")
	office, ok := strings.CutSuffix(rest, "/move")
	if !ok || office == "" || strings.Contains(office, "/") || r.Method != http.MethodPost {
		writeMoveAnswer(w, http.StatusMethodNotAllowed, moveAnswer{Code: api.CodeMethodNotAllowed, Detail: "POST /cluster/offices/{id}/move?to=G"})
		return
	}
	a := moveAnswer{Office: office}
	to, err := strconv.ParseUint(r.URL.Query().Get("to"), 10, 8)
	if err != nil || f.stores[to] == nil {
		a.Code, a.Detail = api.CodeValidationFailed, fmt.Sprintf("to is a group of this cluster, 1 to %d", len(f.groups))
		writeMoveAnswer(w, http.StatusBadRequest, a)
		return
	}
	a.To = to
	from, err := f.moveSource(office, to)
	if err != nil {
		a.Code, a.Detail = codeMoveRefused, err.Error()
		writeMoveAnswer(w, http.StatusConflict, a)
		return
	}
	a.From = from
	ctx, cancel := context.WithTimeout(r.Context(), moveTimeout)
	defer cancel()
	start := time.Now()
	if err := replica.MoveOffice(ctx, f.log, f.moveCall, office, from, to); err != nil {
		a.Code, a.Detail = codeMoveRefused, err.Error()
		status := http.StatusConflict
		if ctx.Err() != nil {
			a.Code, status = api.CodeNoLeader, http.StatusServiceUnavailable
			a.Detail += "; run the move again: it continues where it stopped"
		}
		writeMoveAnswer(w, status, a)
		return
	}
	a.Result, a.Took = "moved", time.Since(start).Round(time.Millisecond).String()
	writeMoveAnswer(w, http.StatusOK, a)
}

// moveSource is the group office moves from: the one that holds it
// frozen for to (a move to finish), or the one that holds it.
func (f *front) moveSource(office string, to uint64) (uint64, error) {
	for _, g := range f.groups {
		st, dest, err := f.stores[g].OfficeMove(office)
		if err != nil {
			return 0, err
		}
		if st == wal.MoveMoving {
			if dest != to {
				return 0, fmt.Errorf("office %q is moving from group %d to group %d: finish that move first", office, g, dest)
			}
			return g, nil
		}
	}
	for _, g := range f.groups {
		if has, err := f.stores[g].HasOffice(office); err != nil {
			return 0, err
		} else if has {
			if g == to {
				return 0, fmt.Errorf("office %q is in group %d already", office, to)
			}
			return g, nil
		}
	}
	return 0, fmt.Errorf("no group holds office %q", office)
}

// moveCall is the replica's MoveCall: the step to the group's leader.
func (f *front) moveCall(ctx context.Context, group uint64, entry []byte) ([]byte, error) {
	leader := f.node.Leader(group)
	switch leader {
	case 0:
		return nil, fmt.Errorf("group %d has no leader", group)
	case f.self:
		return f.rep.ProposeMove(ctx, group, entry)
	}
	return f.proposeAt(ctx, leader, pathMove, group, entry)
}

// serveMove answers the move route, forwarded by a node: it proposes the
// step if this node leads the group.
func (f *front) serveMove(ctx *fasthttp.RequestCtx, forwarded bool) {
	f.servePeerProposal(ctx, forwarded, "a move step", moveStepBytesMax, replica.ErrMove, f.rep.ProposeMove)
}

// runClusterMoveOffice is `slotd cluster move-office -office ID -to G`.
func runClusterMoveOffice(args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("slotd cluster move-office", flag.ContinueOnError)
	fs.SetOutput(stderr)
	admin := fs.String("admin-addr", envOr(getenv, "SLOTD_ADMIN_ADDR", "127.0.0.1:9090"), "admin listener `addresses` of running nodes, comma-separated: the first that answers is asked")
	office := fs.String("office", "", "the `id` of the office to move")
	to := fs.Uint64("to", 0, "the `group` to move it to")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: slotd cluster move-office -office ID -to G [-admin-addr ADDR,...]\n"+
			"Moves an office, its bookings and watches to another replica group, online; run it again to finish a move that stopped.")
		fs.PrintDefaults()
	}
	if code, ok := parseSub(fs, args, stderr); !ok {
		return code
	}
	if *office == "" || *to == 0 {
		fmt.Fprintln(stderr, "slotd cluster move-office: -office and -to are required")
		return 2
	}
	client := &http.Client{Timeout: moveTimeout + 10*time.Second}
	var errs []string
	for a := range strings.SplitSeq(*admin, ",") {
		if a = strings.TrimSpace(a); a == "" {
			continue
		}
		path := "/cluster/offices/" + *office + "/move?to=" + strconv.FormatUint(*to, 10)
		resp, err := client.Post("http://"+a+path, "application/json", nil)
		if err != nil {
			errs = append(errs, fmt.Sprintf("%s: %v", a, rootCause(err)))
			continue
		}
		var ans moveAnswer
		err = json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&ans)
		resp.Body.Close()
		switch {
		case resp.StatusCode == http.StatusNotFound:
			errs = append(errs, a+": no /cluster/offices/…/move: not a cluster node's admin listener, or of an older release")
			continue
		case err != nil:
			errs = append(errs, fmt.Sprintf("%s answered %s", a, resp.Status))
			continue
		case resp.StatusCode == http.StatusOK:
			fmt.Fprintf(stdout, "office %s moved from group %d to group %d in %s\n", ans.Office, ans.From, ans.To, ans.Took)
			return 0
		}
		fmt.Fprintf(stderr, "slotd cluster move-office: %s: %s\n", ans.Code, ans.Detail)
		return 1
	}
	fmt.Fprintf(stderr, "slotd cluster: no admin listener answered: %s\n", strings.Join(errs, "; "))
	return 1
}
