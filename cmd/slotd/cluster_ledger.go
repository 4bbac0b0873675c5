package main

// The applicants' ledger between nodes (package replica, L1–L7): a node
// whose engine reserves or releases a token in an applicant's home group,
// or whose reconciler voids a booking, hands the entry to the group's
// leader over that node's API listener. The route answers only requests
// that carry the cluster's forward token (fromPeer): to a portal it does
// not exist.

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/valyala/fasthttp"

	"slotd/api"
	"slotd/httpapi"
	"slotd/replica"
)

// pathLedger is the internal route of ledger entries: POST, the group in
// the query (?group=N), the entry as the body; the answer is 200 with
// the entry's one-byte answer (replica.LedgerOK…).
const pathLedger = "/internal/ledger"

// ledgerEntryBytesMax bounds a ledger entry's body (its strings are
// bounded far below).
const ledgerEntryBytesMax = 8 << 10

// serveLedger answers the ledger route, forwarded by a node: it proposes
// the entry if this node leads the group.
func (f *front) serveLedger(ctx *fasthttp.RequestCtx, forwarded bool) {
	f.servePeerProposal(ctx, forwarded, "a ledger entry", ledgerEntryBytesMax, replica.ErrLedgerEntry,
		func(pctx context.Context, g uint64, body []byte) ([]byte, error) {
			answer, err := f.rep.ProposeLedger(pctx, g, body)
			return []byte{answer}, err
		})
}

// servePeerProposal answers a route of the nodes' own (the ledger's,
// a move's): only a request forwarded by a node, a POST of an entry of
// at most bytesMax with ?group=N, which propose proposes to the group
// this node leads; the answer is the entry's bytes of answer. An entry
// propose refuses as invalid is 400, any other failure 503 no_leader.
func (f *front) servePeerProposal(ctx *fasthttp.RequestCtx, forwarded bool, what string, bytesMax int, invalid error,
	propose func(ctx context.Context, group uint64, entry []byte) ([]byte, error)) {
	if !forwarded {
		httpapi.WriteProblem(ctx, api.CodeNotFound, "no such route", 0)
		return
	}
	g, err := strconv.ParseUint(string(ctx.QueryArgs().Peek("group")), 10, 8)
	body := ctx.PostBody()
	if err != nil || !ctx.IsPost() || len(body) > bytesMax {
		httpapi.WriteProblem(ctx, api.CodeValidationFailed, what+" is a POST of its bytes with ?group=N", 0)
		return
	}
	pctx, cancel := context.WithTimeout(context.Background(), forwardTimeout)
	defer cancel()
	answer, err := propose(pctx, g, append([]byte(nil), body...))
	switch {
	case errors.Is(err, invalid):
		httpapi.WriteProblem(ctx, api.CodeValidationFailed, err.Error(), 0)
		return
	case err != nil:
		httpapi.WriteProblem(ctx, api.CodeNoLeader, fmt.Sprintf("node %d: group %d: %v", f.self, g, err), retryAfterNoLeaderSeconds)
		return
	}
	ctx.SetContentType("application/octet-stream")
	ctx.SetBody(answer)
}

// ledgerRemote is the replica's LedgerRemote: the entry, to the node
// that leads group, through its API listener.
func (f *front) ledgerRemote(ctx context.Context, leader, group uint64, entry []byte) (byte, error) {
	answer, err := f.proposeAt(ctx, leader, pathLedger, group, entry)
	if err != nil {
		return 0, err
	}
	return answer[0], nil
}

// proposeAt posts entry to path, a peer proposal route
// (servePeerProposal), on the API listener of leader, which leads group,
// and returns its one-byte answer.
func (f *front) proposeAt(ctx context.Context, leader uint64, path string, group uint64, entry []byte) ([]byte, error) {
	client := f.edge(leader)
	if client == nil {
		return nil, fmt.Errorf("node %d has no API address (-edges)", leader)
	}
	deadline, ok := ctx.Deadline()
	if !ok || time.Until(deadline) > forwardTimeout {
		deadline = time.Now().Add(forwardTimeout)
	}
	req := fasthttp.AcquireRequest()
	defer fasthttp.ReleaseRequest(req)
	resp := fasthttp.AcquireResponse()
	defer fasthttp.ReleaseResponse(resp)
	req.SetRequestURI("http://" + client.Addr + path + "?group=" + strconv.FormatUint(group, 10))
	req.Header.SetMethod(fasthttp.MethodPost)
	req.Header.Set(headerForwarded, f.forwardToken)
	req.SetBody(entry)
	if err := client.DoDeadline(req, resp, deadline); err != nil {
		return nil, fmt.Errorf("node %d: %w", leader, err)
	}
	if resp.StatusCode() != fasthttp.StatusOK || len(resp.Body()) != 1 {
		return nil, fmt.Errorf("node %d answered %d: %.200s", leader, resp.StatusCode(), resp.Body())
	}
	return []byte{resp.Body()[0]}, nil
}
