package cluster

// Refusals (M7, M8): a node's transport answers the frames of a node it
// takes no messages from with one record, written back on the refused
// node's own connection (the only bytes ever written that way), so that
// the refused node learns why its messages go nowhere, as etcd's peers
// answer a removed member "the member has been permanently removed from
// the cluster". Raft alone cannot tell it: the groups' leaders send
// nothing to a node they removed, so a node removed while it was down
// never applies its removal, and a node that created groups of its own
// under an id the cluster does not know is never answered at all.
//
//	field        size
//	magic        4 bytes BE = refusalMagic
//	version      1 byte = 1
//	reason       1 byte: 1 removed, 2 not a member
//
// A release that does not know the record closes such a connection
// unanswered, as before, and never reads what comes back on a
// connection it dialed: the record changes nothing for it.

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"time"
)

// ErrNotMember stops a node that created its groups itself, as one of a
// new cluster's nodes, when a running node of the cluster answers that it
// knows no group with this node's id as a member (M8): the node was
// started without Join under an id that is not among the nodes the
// cluster was started with, and its groups' logs are a cluster of its own.
var ErrNotMember = errors.New("cluster: the cluster does not know this node's id, and this node created its groups itself as a new cluster's node: a node that joins a running cluster is added (a membership change) and started with Join on an empty data directory; this data directory holds groups of a cluster of its own and must be emptied first")

// ErrForeignStore refuses to start a node on a store whose groups never
// had its id as a member (M8): the data directory is another node's, or
// another cluster's.
var ErrForeignStore = errors.New("cluster: this data directory belongs to another node or another cluster: its groups never had this node's id as a member")

// ErrUnknownPeer is why a transport refuses a frame from a node that is
// not among its peers (handed to TransportOptions.FrameRefused): the
// sender is answered with a refusal record (M7, M8).
var ErrUnknownPeer = errors.New("cluster: a frame from a node that is not a peer")

// refusal is why a peer refuses this node's frames.
type refusal byte

const (
	// refusalRemoved: every group of the peer removed the sender (M4):
	// it is gone for good.
	refusalRemoved refusal = 1
	// refusalUnknown: no group of the peer has the sender as a member,
	// nor removed it.
	refusalUnknown refusal = 2
)

func (r refusal) String() string {
	switch r {
	case refusalRemoved:
		return "removed"
	case refusalUnknown:
		return "not a member"
	}
	return fmt.Sprintf("refusal(%d)", byte(r))
}

const (
	refusalMagic   = 0xFF524546 // 0xFF "REF": beyond any frame's length
	refusalVersion = 1
	refusalBytes   = 4 + 1 + 1
)

// appendRefusal encodes the refusal record of reason r.
func appendRefusal(dst []byte, r refusal) []byte {
	dst = binary.BigEndian.AppendUint32(dst, refusalMagic)
	return append(dst, refusalVersion, byte(r))
}

// decodeRefusal decodes a refusal record.
func decodeRefusal(b []byte) (refusal, error) {
	if len(b) != refusalBytes || binary.BigEndian.Uint32(b) != refusalMagic || b[4] != refusalVersion {
		return 0, fmt.Errorf("%w: %d bytes came back on a connection to a peer that are not a refusal", errFrame, len(b))
	}
	switch r := refusal(b[5]); r {
	case refusalRemoved, refusalUnknown:
		return r, nil
	}
	return 0, fmt.Errorf("%w: a refusal of unknown reason %d", errFrame, b[5])
}

// refuse answers from, a node that is not a peer, on its connection conn
// with the refusal record (removed, if RemovePeer removed it), and lets
// the record reach it before the connection is closed: the write side is
// shut and what the node still sends is read and dropped until it closes
// its end, or WriteTimeout passes (a close with input unread would reset
// the connection and could discard the record on its way).
func (t *Transport) refuse(conn net.Conn, from uint64) {
	if t.opts.TestNoRefusals {
		return
	}
	why := refusalUnknown
	t.mu.Lock()
	if t.removed[from] {
		why = refusalRemoved
	}
	t.mu.Unlock()
	if err := conn.SetWriteDeadline(time.Now().Add(t.opts.WriteTimeout)); err != nil {
		return
	}
	if _, err := conn.Write(appendRefusal(nil, why)); err != nil {
		return
	}
	t.stats.refusalsSent.Add(1)
	if c, ok := conn.(interface{ CloseWrite() error }); ok {
		_ = c.CloseWrite()
	}
	if err := conn.SetReadDeadline(time.Now().Add(t.opts.WriteTimeout)); err != nil {
		return
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(conn, frameBytesMax))
}

// watchRefusal reads conn, a connection this transport dialed to peer p,
// on which nothing but a refusal record ever comes back: it hands the
// refusal to the refusal handler and closes conn. It returns when conn
// ends, as it does when the writer is done with it.
func (t *Transport) watchRefusal(p *peer, conn net.Conn) {
	defer t.wg.Done()
	var b [refusalBytes]byte
	if _, err := io.ReadFull(conn, b[:]); err != nil {
		return // the connection ended; nothing was said
	}
	defer conn.Close()
	why, err := decodeRefusal(b[:])
	if err != nil {
		t.stats.frameErrors.Add(1)
		return
	}
	t.stats.refusalsReceived.Add(1)
	if h := t.refused.Load(); h != nil {
		(*h)(p.id, why)
	}
}

// setRefusedHandler installs h, told of each refusal a peer answers this
// node's frames with, from a goroutine of the transport.
func (t *Transport) setRefusedHandler(h func(by uint64, why refusal)) { t.refused.Store(&h) }

// refused is the transport's refusal handler: it notes the refusal and
// wakes the loop, which stops on it (refusedErr).
func (n *Node) refused(by uint64, why refusal) {
	switch why {
	case refusalRemoved:
		n.removedBy.CompareAndSwap(0, by)
	case refusalUnknown:
		n.unknownTo.CompareAndSwap(0, by)
	}
	select {
	case n.ctlc <- func() {}:
	default: // the loop is busy: it checks at its next turn
	}
}

// refusedErr is why the loop stops on a peer's refusal, nil if it does
// not. A node removed from every group of a peer is gone for good (M4,
// M7): the peer applied the removal, so it is committed. A node a peer
// does not know stops only if it created its groups itself and none
// went past its bootstrap (M8): a node that joined, or that a peer
// lagging behind its addition does not know yet, goes on, and the
// refusal is forgotten.
func (n *Node) refusedErr() error {
	if by := n.removedBy.Load(); by != 0 {
		return fmt.Errorf("node %d refuses this node's messages: %w", by, ErrRemoved)
	}
	by := n.unknownTo.Swap(0)
	if by == 0 || n.cfg.Join {
		return nil
	}
	for _, g := range n.groups {
		last, err := n.store.Group(g.id).LastIndex()
		if err != nil || last > 1 {
			return nil
		}
	}
	return fmt.Errorf("node %d refuses this node's messages: %w", by, ErrNotMember)
}
