package client

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mirrorkit/mirrorkit/engine/globals"
	"github.com/mirrorkit/mirrorkit/engine/wire"
)

// Databases the test server treats specially.
const (
	dbSlow    = "slow"    // requests wait until the test releases them
	dbMissing = "NOPE"    // does not exist
	dbReplica = "replica" // answers not-primary with a redirect
)

// testServer is a small in-memory data port: real TCP, the real handshake and framing, one goroutine per request
// (as a member runs them), and a map of encoded keys.
type testServer struct {
	ln           net.Listener
	requests     atomic.Int64  // requests received
	executed     atomic.Int64  // requests executed (not refused)
	accepted     atomic.Int64  // connections that completed the handshake
	disconnected chan struct{} // one token per handshaken connection that ended
	slow         chan struct{} // receives one token per request on dbSlow
	release      chan struct{} // closed to answer the requests on dbSlow

	// role is held shared while a request is checked and executed; a test holds it exclusively to hold new requests
	// while it changes refusal, as a primary handing over its role does.
	role    sync.RWMutex
	refusal *wire.Error // when set, requests (except on dbSlow) are refused with it

	mu    sync.Mutex
	data  map[string][]byte
	conns map[*wire.Conn]struct{}
	wg    sync.WaitGroup
}

func startServer(tb testing.TB) *testServer {
	tb.Helper()
	ln, err := wire.Listen("127.0.0.1:0", nil)
	if err != nil {
		tb.Fatalf("listen: %v", err)
	}
	ts := &testServer{
		ln:           ln,
		disconnected: make(chan struct{}, 1024),
		slow:         make(chan struct{}, 1024),
		release:      make(chan struct{}),
		data:         map[string][]byte{},
		conns:        map[*wire.Conn]struct{}{},
	}
	ts.wg.Go(ts.accept)
	tb.Cleanup(ts.close)
	return ts
}

func (ts *testServer) addr() string { return ts.ln.Addr().String() }

func (ts *testServer) close() {
	ts.ln.Close()
	ts.dropConns()
	ts.releaseSlow()
	ts.wg.Wait()
}

// releaseSlow answers the held requests and every later one on dbSlow.
func (ts *testServer) releaseSlow() {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	select {
	case <-ts.release:
	default:
		close(ts.release)
	}
}

// takeConns returns the connections served so far and forgets them.
func (ts *testServer) takeConns() map[*wire.Conn]struct{} {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	conns := ts.conns
	ts.conns = map[*wire.Conn]struct{}{}
	return conns
}

// dropConns closes every connection, as a crashing member would.
func (ts *testServer) dropConns() {
	for c := range ts.takeConns() {
		c.Close()
	}
}

// goAway tells every client, as a member shutting down does once it answered everything it executed, that the requests it
// did not answer were not executed, and ends the sending side.
func (ts *testServer) goAway() {
	for c := range ts.takeConns() {
		e := &wire.Error{Code: wire.CodeShuttingDown, Message: "member t1 is shutting down: the requests it did not answer were not executed"}
		_ = c.WriteFrame(wire.Frame{Kind: wire.KindError, Payload: wire.EncodeError(nil, e)})
		_ = c.CloseWrite()
	}
}

func (ts *testServer) accept() {
	for {
		nc, err := ts.ln.Accept()
		if err != nil {
			return
		}
		ts.wg.Go(func() { ts.serve(wire.NewConn(nc, 0)) })
	}
}

func (ts *testServer) serve(c *wire.Conn) {
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	_, err := wire.ServerHandshake(ctx, c, func(wire.Hello) (wire.Welcome, error) {
		return wire.Welcome{Software: "test", Member: "t1", AdminAddr: "127.0.0.1:1"}, nil
	})
	cancel()
	if err != nil {
		return
	}
	ts.accepted.Add(1)
	defer func() { ts.disconnected <- struct{}{} }()
	ts.mu.Lock()
	ts.conns[c] = struct{}{}
	ts.mu.Unlock()
	var inflight sync.WaitGroup
	defer inflight.Wait()
	for {
		f, err := c.ReadFrame()
		if err != nil {
			return
		}
		if f.Kind != wire.KindRequest {
			continue
		}
		ts.requests.Add(1)
		inflight.Go(func() {
			resp := ts.handle(f.Payload)
			if c.WriteFrame(wire.Frame{Kind: wire.KindResponse, ReqID: f.ReqID, Payload: wire.EncodeResponse(nil, resp)}) != nil {
				c.Close()
			}
		})
	}
}

func (ts *testServer) handle(payload []byte) *wire.Response {
	req, err := wire.DecodeRequest(payload)
	if err != nil {
		return &wire.Response{Err: &wire.Error{Code: wire.CodeBadRequest, Message: err.Error()}}
	}
	switch req.DB {
	case dbMissing:
		return &wire.Response{Err: &wire.Error{Code: wire.CodeNoSuchDatabase, Message: fmt.Sprintf("no such database %q", req.DB)}}
	case dbReplica:
		return &wire.Response{Err: &wire.Error{Code: wire.CodeNotPrimary, Message: "member t1 is not primary", Redirect: "127.0.0.1:2"}}
	case dbSlow:
		ts.slow <- struct{}{}
		<-ts.release
	}
	ts.role.RLock()
	defer ts.role.RUnlock()
	// Requests on dbSlow stand for ones admitted before the refusal began: they are executed.
	if ts.refusal != nil && req.DB != dbSlow {
		return &wire.Response{Err: ts.refusal}
	}
	ts.executed.Add(1)
	ts.mu.Lock()
	defer ts.mu.Unlock()
	t := memTxn{data: ts.data}
	results := make([]wire.Result, len(req.Ops))
	for i := range req.Ops {
		if results[i], err = t.apply(&req.Ops[i]); err != nil {
			t.rollback()
			return &wire.Response{Err: &wire.Error{Code: wire.CodeNotANumber, Message: err.Error()}}
		}
	}
	resp := &wire.Response{Results: results}
	if slices.ContainsFunc(req.Ops, func(op wire.Op) bool { return op.Kind.Writes() }) {
		resp.Pos = "1:000001:0"
	}
	return resp
}

// memTxn applies ops to a map, remembering how to undo them.
type memTxn struct {
	data map[string][]byte
	undo []func()
}

func (t *memTxn) rollback() {
	for _, u := range slices.Backward(t.undo) {
		u()
	}
}

func (t *memTxn) put(key string, value []byte, exists bool) {
	old, had := t.data[key]
	t.undo = append(t.undo, func() {
		if had {
			t.data[key] = old
		} else {
			delete(t.data, key)
		}
	})
	if exists {
		t.data[key] = bytes.Clone(value)
	} else {
		delete(t.data, key)
	}
}

func (t *memTxn) sortedKeys(prefix []byte) []string {
	var keys []string
	for k := range t.data {
		if strings.HasPrefix(k, string(prefix)) {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	return keys
}

func (t *memTxn) apply(op *wire.Op) (wire.Result, error) {
	key := string(op.Key)
	cur, exists := t.data[key]
	switch op.Kind {
	case wire.OpGet:
		return wire.Result{Exists: exists, Value: cur}, nil
	case wire.OpSet:
		t.put(key, op.Value, true)
	case wire.OpKill:
		if op.NodeOnly {
			t.put(key, nil, false)
			break
		}
		for _, k := range t.sortedKeys(op.Key) {
			t.put(k, nil, false)
		}
	case wire.OpData:
		var d uint8
		if exists {
			d = 1
		}
		if len(t.sortedKeys(op.Key)) > int(d) {
			d += 10
		}
		return wire.Result{Data: d}, nil
	case wire.OpIncr:
		sum, err := globals.Add(string(cur), string(op.Value))
		if err != nil {
			return wire.Result{}, err
		}
		t.put(key, []byte(sum), true)
		return wire.Result{Value: []byte(sum)}, nil
	case wire.OpCAS:
		if exists != op.ExpectExists || exists && !bytes.Equal(cur, op.Expect) {
			return wire.Result{Exists: exists, Value: cur}, nil
		}
		t.put(key, op.Value, true)
		return wire.Result{OK: true, Exists: true, Value: op.Value}, nil
	case wire.OpQuery:
		var res wire.Result
		for _, k := range t.sortedKeys(op.Key) {
			if k <= string(op.From) {
				continue
			}
			if len(res.Pairs) == int(op.Limit) && op.Limit > 0 {
				res.More = true
				break
			}
			res.Pairs = append(res.Pairs, wire.KV{Key: []byte(k), Value: t.data[k]})
		}
		return res, nil
	case wire.OpOrder:
		return t.order(op)
	}
	return wire.Result{}, nil
}

// order finds the sibling by decoding every key: slow and obviously right, which is what a test server needs.
func (t *memTxn) order(op *wire.Op) (wire.Result, error) {
	start, err := globals.Decode(op.Key)
	if err != nil || len(start.Subs) == 0 {
		return wire.Result{}, fmt.Errorf("order needs a subscript: %v", err)
	}
	level := len(start.Subs) - 1
	from := start.Subs[level]
	open := !from.IsNum && from.Str == ""
	var best *globals.Ref
	for k := range t.data {
		r, err := globals.Decode([]byte(k))
		if err != nil || r.Name != start.Name || len(r.Subs) <= level {
			continue
		}
		parentMatches := true
		for i := range level {
			parentMatches = parentMatches && r.Subs[i].Compare(start.Subs[i]) == 0
		}
		cand := globals.Ref{Name: r.Name, Subs: r.Subs[:level+1]}
		c := cand.Subs[level].Compare(from)
		if !parentMatches || !open && (op.Reverse && c >= 0 || !op.Reverse && c <= 0) {
			continue
		}
		if best == nil || op.Reverse && cand.Compare(*best) > 0 || !op.Reverse && cand.Compare(*best) < 0 {
			best = &cand
		}
	}
	if best == nil {
		return wire.Result{}, nil
	}
	key, err := globals.Encode(*best)
	return wire.Result{Key: key}, err
}

// refuse makes the server refuse every later request with e (nil: serve them).
func (ts *testServer) refuse(e *wire.Error) {
	ts.role.Lock()
	defer ts.role.Unlock()
	ts.refusal = e
}

// value reads ref from the server's data.
func (ts *testServer) value(tb testing.TB, ref string) ([]byte, bool) {
	tb.Helper()
	key, err := encodeRef(ref)
	if err != nil {
		tb.Fatal(err)
	}
	ts.mu.Lock()
	defer ts.mu.Unlock()
	v, ok := ts.data[string(key)]
	return v, ok
}

// waitDisconnected waits until n handshaken connections have ended.
func (ts *testServer) waitDisconnected(tb testing.TB, n int) {
	tb.Helper()
	for range n {
		select {
		case <-ts.disconnected:
		case <-time.After(10 * time.Second):
			tb.Fatal("connections to the test server were never closed")
		}
	}
}

// waitSlow waits until n requests on dbSlow have reached the server.
func (ts *testServer) waitSlow(tb testing.TB, n int) {
	tb.Helper()
	for range n {
		select {
		case <-ts.slow:
		case <-time.After(10 * time.Second):
			tb.Fatal("requests on the slow database never reached the server")
		}
	}
}
