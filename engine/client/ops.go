package client

import (
	"context"
	"fmt"
	"math"

	"github.com/mirrorkit/mirrorkit/engine/globals"
	"github.com/mirrorkit/mirrorkit/engine/wire"
)

// Pair is one node of a query result.
type Pair struct {
	Ref   string
	Value []byte
}

// encodeRef parses and encodes a reference; its errors name the reference and match the globals sentinels.
func encodeRef(ref string) ([]byte, error) {
	r, err := globals.Parse(ref)
	if err != nil {
		return nil, fmt.Errorf("reference %q: %w", ref, err)
	}
	key, err := globals.Encode(r)
	if err != nil {
		return nil, fmt.Errorf("reference %q: %w", ref, err)
	}
	return key, nil
}

func decodeRef(key []byte, what string) (string, error) {
	r, err := globals.Decode(key)
	if err != nil {
		return "", fmt.Errorf("%s: server returned an undecodable key: %w", what, err)
	}
	return r.String(), nil
}

// one runs a single operation on ref.
func (c *Client) one(ctx context.Context, db, ref string, op wire.Op) (wire.Result, error) {
	key, err := encodeRef(ref)
	if err != nil {
		return wire.Result{}, err
	}
	op.Key = key
	resp, err := c.Do(ctx, &wire.Request{DB: db, Ops: []wire.Op{op}})
	if err != nil {
		return wire.Result{}, err
	}
	return resp.Results[0], nil
}

// Get returns the value of ref and whether the node has one.
func (c *Client) Get(ctx context.Context, db, ref string) (value []byte, exists bool, err error) {
	res, err := c.one(ctx, db, ref, wire.Op{Kind: wire.OpGet})
	return res.Value, res.Exists, err
}

// Set sets the value of ref.
func (c *Client) Set(ctx context.Context, db, ref string, value []byte) error {
	_, err := c.one(ctx, db, ref, wire.Op{Kind: wire.OpSet, Value: value})
	return err
}

// Kill removes ref and its whole subtree.
func (c *Client) Kill(ctx context.Context, db, ref string) error {
	_, err := c.one(ctx, db, ref, wire.Op{Kind: wire.OpKill})
	return err
}

// KillNode removes only the value of ref, keeping its descendants.
func (c *Client) KillNode(ctx context.Context, db, ref string) error {
	_, err := c.one(ctx, db, ref, wire.Op{Kind: wire.OpKill, NodeOnly: true})
	return err
}

// Data returns $DATA of ref: 0 nothing, 1 a value without children, 10 children without a value, 11 both.
func (c *Client) Data(ctx context.Context, db, ref string) (uint8, error) {
	res, err := c.one(ctx, db, ref, wire.Op{Kind: wire.OpData})
	return res.Data, err
}

// Order returns the next sibling of ref at the level of its last subscript (reverse: the previous one), as $ORDER does;
// a last subscript "" starts before the first (reverse: after the last). next is the sibling's full reference.
func (c *Client) Order(ctx context.Context, db, ref string, reverse bool) (next string, found bool, err error) {
	res, err := c.one(ctx, db, ref, wire.Op{Kind: wire.OpOrder, Reverse: reverse})
	if err != nil || len(res.Key) == 0 {
		return "", false, err
	}
	next, err = decodeRef(res.Key, "order on "+ref)
	if err != nil {
		return "", false, err
	}
	return next, true, nil
}

// Query returns the nodes with a value in the subtree of ref, in collation order, resuming strictly after from ("" from
// the start). limit 0 means the server's default. more reports that the result was truncated: resume after the last pair.
func (c *Client) Query(ctx context.Context, db, ref, from string, limit int) (pairs []Pair, more bool, err error) {
	if limit < 0 || uint64(limit) > math.MaxUint32 {
		return nil, false, fmt.Errorf("query on %q: limit %d out of range: %w", ref, limit, wire.ErrBadRequest)
	}
	op := wire.Op{Kind: wire.OpQuery, Limit: uint32(limit)}
	if from != "" {
		if op.From, err = encodeRef(from); err != nil {
			return nil, false, err
		}
	}
	res, err := c.one(ctx, db, ref, op)
	if err != nil {
		return nil, false, err
	}
	pairs = make([]Pair, len(res.Pairs))
	for i, kv := range res.Pairs {
		if pairs[i].Ref, err = decodeRef(kv.Key, "query on "+ref); err != nil {
			return nil, false, err
		}
		pairs[i].Value = kv.Value
	}
	return pairs, res.More, nil
}

// Incr adds delta (decimal text) to the number stored at ref (absent counts as 0) and returns the new value.
func (c *Client) Incr(ctx context.Context, db, ref, delta string) (string, error) {
	res, err := c.one(ctx, db, ref, wire.Op{Kind: wire.OpIncr, Value: []byte(delta)})
	return string(res.Value), err
}

// CAS sets ref to value if its current state is expect (expectExists false: the node has no value). ok reports whether
// it did; current and exists describe the value after the operation.
func (c *Client) CAS(ctx context.Context, db, ref string, expect []byte, expectExists bool, value []byte) (ok bool, current []byte, exists bool, err error) {
	res, err := c.one(ctx, db, ref, wire.Op{Kind: wire.OpCAS, Expect: expect, ExpectExists: expectExists, Value: value})
	return res.OK, res.Value, res.Exists, err
}

// Txn collects operations on one database and sends them as one Request, applied atomically and in order. Values are
// kept, not copied, until Commit.
type Txn struct {
	c   *Client
	db  string
	ops []wire.Op
	err error // first bad reference
}

// Txn starts a transaction on db.
func (c *Client) Txn(db string) *Txn { return &Txn{c: c, db: db} }

func (t *Txn) add(ref string, op wire.Op) *Txn {
	if t.err != nil {
		return t
	}
	key, err := encodeRef(ref)
	if err != nil {
		t.err = err
		return t
	}
	op.Key = key
	t.ops = append(t.ops, op)
	return t
}

// Set adds a Set.
func (t *Txn) Set(ref string, value []byte) *Txn {
	return t.add(ref, wire.Op{Kind: wire.OpSet, Value: value})
}

// Kill adds a Kill of ref and its subtree.
func (t *Txn) Kill(ref string) *Txn { return t.add(ref, wire.Op{Kind: wire.OpKill}) }

// KillNode adds a Kill of ref's own value only.
func (t *Txn) KillNode(ref string) *Txn {
	return t.add(ref, wire.Op{Kind: wire.OpKill, NodeOnly: true})
}

// Incr adds an increment by delta.
func (t *Txn) Incr(ref, delta string) *Txn {
	return t.add(ref, wire.Op{Kind: wire.OpIncr, Value: []byte(delta)})
}

// Get adds a read of ref, seeing the transaction's earlier operations.
func (t *Txn) Get(ref string) *Txn { return t.add(ref, wire.Op{Kind: wire.OpGet}) }

// Data adds a $DATA of ref.
func (t *Txn) Data(ref string) *Txn { return t.add(ref, wire.Op{Kind: wire.OpData}) }

// CAS adds a compare-and-set.
func (t *Txn) CAS(ref string, expect []byte, expectExists bool, value []byte) *Txn {
	return t.add(ref, wire.Op{Kind: wire.OpCAS, Expect: expect, ExpectExists: expectExists, Value: value})
}

// Commit sends the transaction and returns one result per operation. A bad reference fails it before anything is sent;
// an empty transaction sends nothing.
func (t *Txn) Commit(ctx context.Context) ([]wire.Result, error) {
	if t.err != nil {
		return nil, fmt.Errorf("transaction on %s: %w", t.db, t.err)
	}
	if len(t.ops) == 0 {
		return nil, nil
	}
	resp, err := t.c.Do(ctx, &wire.Request{DB: t.db, Ops: t.ops})
	if err != nil {
		return nil, err
	}
	return resp.Results, nil
}
