package store

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/cockroachdb/pebble/v2"

	"github.com/mirrorkit/mirrorkit/engine/globals"
	"github.com/mirrorkit/mirrorkit/engine/journal"
	"github.com/mirrorkit/mirrorkit/engine/wire"
)

// Limits of a single request.
const (
	DefaultMaxValueSize = 1 << 20
	MaxOpsPerRequest    = 10000
	DefaultQueryLimit   = 1000
	MaxQueryLimit       = 10000
	// MaxKillNodes bounds how many nodes one transaction may remove, since every removed node is journaled with its before-image.
	MaxKillNodes = 1 << 20
)

// reader is what evaluation reads from: the database, or the transaction's own indexed batch layered on it.
type reader interface {
	Get(key []byte) ([]byte, io.Closer, error)
	NewIter(o *pebble.IterOptions) (*pebble.Iterator, error)
}

// Exec runs one request's operations as one transaction and returns their results and, for a transaction that wrote, the
// journal position just after its last record. It returns only once what it wrote — and anything it read — is durable.
func (d *Database) Exec(ctx context.Context, ops []wire.Op, maxValue int) ([]wire.Result, journal.Position, error) {
	if len(ops) == 0 || len(ops) > MaxOpsPerRequest {
		return nil, journal.Position{}, fmt.Errorf("a request carries 1 to %d operations, got %d: %w", MaxOpsPerRequest, len(ops), wire.ErrBadRequest)
	}
	writes := false
	for i := range ops {
		if err := validateOp(&ops[i], maxValue); err != nil {
			return nil, journal.Position{}, err
		}
		writes = writes || ops[i].Kind.Writes()
	}
	d.life.RLock()
	defer d.life.RUnlock()
	if d.closed {
		return nil, journal.Position{}, fmt.Errorf("database %s: %w", d.name, wire.ErrDatabaseDismounted)
	}
	for {
		results, end, err := d.exec(ctx, ops, writes)
		if !errors.Is(err, errJournalChanged) {
			return results, end, err
		}
	}
}

// errJournalChanged means the database moved to another journal (added to a mirror, shadowed, joined) while a writer waited
// for it: the writer starts again with the new journal.
var errJournalChanged = errors.New("the database changed journals")

func (d *Database) exec(ctx context.Context, ops []wire.Op, writes bool) ([]wire.Result, journal.Position, error) {
	a := d.attach.Load()
	if a == nil {
		if writes {
			return nil, journal.Position{}, fmt.Errorf("database %s belongs to mirror %s, which is not active on this member: %w", d.name, d.Mirror(), wire.ErrReadOnly)
		}
		results, err := evalReads(d.pdb, ops)
		if err != nil {
			return nil, journal.Position{}, fmt.Errorf("database %s: %w", d.name, err)
		}
		return results, journal.Position{}, nil
	}
	if !writes {
		if a.Gate != nil && a.Local == nil {
			if err := a.Gate.BeginRead(ctx, d.name); err != nil {
				return nil, journal.Position{}, err
			}
		}
		results, err := evalReads(d.pdb, ops)
		if err != nil {
			return nil, journal.Position{}, fmt.Errorf("database %s: %w", d.name, err)
		}
		return results, journal.Position{}, d.waitReadable(ctx, a.Journal)
	}
	jrn, local := a.Journal, false
	if a.Local != nil {
		jrn, local = a.Local, true
	} else if a.Gate != nil {
		done, err := a.Gate.BeginWrite(ctx, d.name)
		if err != nil {
			return nil, journal.Position{}, err
		}
		defer done()
	}
	results, end, err := d.commit(ops, a, jrn, local)
	if err != nil {
		return nil, journal.Position{}, err
	}
	if end.IsZero() { // nothing changed (a failed CAS, a kill of nothing): still only answer what is durable
		return results, end, d.waitReadable(ctx, a.Journal)
	}
	if err := jrn.WaitDurable(ctx, end); err != nil {
		return nil, journal.Position{}, fmt.Errorf("database %s: commit at %s: %w", d.name, end, err)
	}
	return results, end, nil
}

// waitReadable waits until everything appended to the journal so far is durable (and, for a journal that says so, as safe
// as an acknowledged commit), so a read never returns data that a crash or a failover could still take away.
func (d *Database) waitReadable(ctx context.Context, jrn Journal) error {
	end := jrn.AppendedEnd()
	if rw, ok := jrn.(ReadWaiter); ok {
		return rw.WaitReadable(ctx, end)
	}
	if !jrn.DurableEnd().Less(end) {
		return nil
	}
	return jrn.WaitDurable(ctx, end)
}

// commit evaluates a write transaction, journals it and applies it, under the writer lock.
func (d *Database) commit(ops []wire.Op, a *Attachment, jrn Journal, local bool) ([]wire.Result, journal.Position, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.attach.Load() != a {
		return nil, journal.Position{}, errJournalChanged
	}
	b := d.pdb.NewIndexedBatch()
	defer b.Close()
	tx := txn{b: b, db: d.name}
	results := make([]wire.Result, len(ops))
	for i := range ops {
		if err := tx.eval(&ops[i], &results[i]); err != nil {
			return nil, journal.Position{}, fmt.Errorf("database %s: %w", d.name, err)
		}
	}
	if len(tx.recs) == 0 {
		return results, journal.Position{}, nil
	}
	if local {
		// Only a write that changes something is a local write (a failed CAS, a kill of nothing leave a shadowed copy as it was).
		if err := d.startLocalWritesLocked(jrn); err != nil {
			return nil, journal.Position{}, err
		}
	}
	tx.recs[len(tx.recs)-1].TxnEnd = true
	end, err := jrn.Append(tx.recs)
	if err != nil {
		return nil, journal.Position{}, fmt.Errorf("database %s: journal: %w", d.name, err)
	}
	if err := d.applyBatch(b, end, local); err != nil {
		return nil, journal.Position{}, err
	}
	return results, end, nil
}

// applyBatch records end as the applied position (of the local journal for a mirrored database's local writes) inside b and
// applies b without a sync: the journal is the durable copy.
func (d *Database) applyBatch(b *pebble.Batch, end journal.Position, local bool) error {
	key := metaApplied
	if local {
		key = metaLocalApplied
	}
	if err := b.Set(key, end.Encode(), nil); err != nil {
		return fmt.Errorf("database %s: %w", d.name, err)
	}
	if err := b.Commit(pebble.NoSync); err != nil {
		// The journal holds a transaction this database could not apply; a restart replays it.
		d.log.Error().Err(err).Str("pos", end.String()).Msg("apply failed after journal append")
		return fmt.Errorf("database %s: apply at %s: %w (restart the member to replay the journal)", d.name, end, err)
	}
	if local {
		d.local = end
	} else {
		d.applied = end
	}
	return nil
}

func validateOp(op *wire.Op, maxValue int) error {
	ref, err := globals.Decode(op.Key)
	if err != nil {
		return fmt.Errorf("operation %s: %v: %w", op.Kind, err, wire.ErrBadRequest)
	}
	switch op.Kind {
	case wire.OpGet, wire.OpData, wire.OpQuery:
	case wire.OpOrder:
		if len(ref.Subs) == 0 {
			return fmt.Errorf("order of %s: a reference with at least one subscript is needed: %w", ref, wire.ErrBadRequest)
		}
	case wire.OpSet, wire.OpCAS, wire.OpIncr, wire.OpKill:
		for _, s := range ref.Subs {
			if !s.IsNum && s.Str == "" && op.Kind != wire.OpKill {
				return fmt.Errorf("%s %s: the empty string is not a valid subscript: %w", op.Kind, ref, wire.ErrBadRequest)
			}
		}
		if len(op.Value) > maxValue {
			return fmt.Errorf("%s %s: value of %d bytes exceeds the limit of %d bytes: %w", op.Kind, ref, len(op.Value), maxValue, wire.ErrTooLarge)
		}
		if op.Kind == wire.OpIncr {
			if _, err := globals.Canonical(string(op.Value)); err != nil {
				return fmt.Errorf("increment %s by %q: %v: %w", ref, op.Value, err, wire.ErrNotANumber)
			}
		}
	default:
		return fmt.Errorf("unknown operation %d: %w", op.Kind, wire.ErrBadRequest)
	}
	return nil
}

func evalReads(r reader, ops []wire.Op) ([]wire.Result, error) {
	results := make([]wire.Result, len(ops))
	for i := range ops {
		if err := evalRead(r, &ops[i], &results[i]); err != nil {
			return nil, err
		}
	}
	return results, nil
}

func evalRead(r reader, op *wire.Op, res *wire.Result) error {
	var err error
	switch op.Kind {
	case wire.OpGet:
		res.Value, res.Exists, err = get(r, op.Key)
	case wire.OpData:
		res.Data, err = data(r, op.Key)
	case wire.OpOrder:
		res.Key, err = order(r, op.Key, op.Reverse)
	case wire.OpQuery:
		res.Pairs, res.More, err = query(r, op.Key, op.From, op.Limit)
	default:
		err = fmt.Errorf("operation %s is not a read: %w", op.Kind, wire.ErrBadRequest)
	}
	return err
}

func get(r reader, key []byte) ([]byte, bool, error) {
	v, closer, err := r.Get(dataKey(nil, key))
	if errors.Is(err, pebble.ErrNotFound) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, err
	}
	defer closer.Close()
	return append([]byte{}, v...), true, nil
}

func subtreeIter(r reader, key []byte) (*pebble.Iterator, []byte, error) {
	lower := dataKey(nil, key)
	it, err := r.NewIter(&pebble.IterOptions{LowerBound: lower, UpperBound: globals.PrefixEnd(lower)})
	return it, lower, err
}

// data answers $DATA: 1 when the node has a value, +10 when it has descendants.
func data(r reader, key []byte) (uint8, error) {
	it, lower, err := subtreeIter(r, key)
	if err != nil {
		return 0, err
	}
	defer it.Close()
	var d uint8
	for ok := it.First(); ok; ok = it.Next() {
		if bytes.Equal(it.Key(), lower) {
			d += 1
			continue
		}
		d += 10
		break
	}
	return d, it.Error()
}

// order finds the next (or previous) sibling of the reference's last subscript, skipping the current sibling's subtree.
// An empty-string last subscript starts before the first (or after the last) sibling.
func order(r reader, key []byte, reverse bool) ([]byte, error) {
	ref, err := globals.Decode(key)
	if err != nil {
		return nil, err
	}
	level := len(ref.Subs) - 1
	last := ref.Subs[level]
	parentKey, err := globals.Encode(globals.Ref{Name: ref.Name, Subs: ref.Subs[:level]})
	if err != nil {
		return nil, err
	}
	parent := dataKey(nil, parentKey)
	// Children of parent lie strictly between parent and PrefixEnd(parent).
	it, err := r.NewIter(&pebble.IterOptions{LowerBound: append(parent[:len(parent):len(parent)], 0), UpperBound: globals.PrefixEnd(parent)})
	if err != nil {
		return nil, err
	}
	defer it.Close()
	start := last.IsNum || last.Str != ""
	var ok bool
	switch {
	case !reverse && !start:
		ok = it.First()
	case !reverse:
		ok = it.SeekGE(globals.PrefixEnd(dataKey(nil, key)))
	case !start:
		ok = it.Last()
	default:
		ok = it.SeekLT(dataKey(nil, key))
	}
	if !ok {
		return nil, it.Error()
	}
	n, _, err := globals.SplitLevel(it.Key()[1:], level)
	if err != nil {
		return nil, fmt.Errorf("stored key %x: %w", it.Key(), err)
	}
	return append([]byte{}, it.Key()[1:1+n]...), nil
}

func query(r reader, key, from []byte, limit uint32) ([]wire.KV, bool, error) {
	if limit == 0 {
		limit = DefaultQueryLimit
	}
	if limit > MaxQueryLimit {
		limit = MaxQueryLimit
	}
	it, lower, err := subtreeIter(r, key)
	if err != nil {
		return nil, false, err
	}
	defer it.Close()
	var ok bool
	if len(from) > 0 {
		ok = it.SeekGE(append(dataKey(nil, from), 0)) // strictly after from
	} else {
		ok = it.SeekGE(lower)
	}
	var pairs []wire.KV
	for ; ok; ok = it.Next() {
		if uint32(len(pairs)) == limit {
			return pairs, true, it.Error()
		}
		v, err := it.ValueAndErr()
		if err != nil {
			return nil, false, err
		}
		pairs = append(pairs, wire.KV{Key: append([]byte{}, it.Key()[1:]...), Value: append([]byte{}, v...)})
	}
	return pairs, false, it.Error()
}

// txn evaluates write operations against an indexed batch (so later operations see earlier ones) and collects the journal
// records, each with the before-image of the node it changes.
type txn struct {
	b    *pebble.Batch
	db   string
	recs []journal.Record
	keys int
}

func (t *txn) eval(op *wire.Op, res *wire.Result) error {
	switch op.Kind {
	case wire.OpGet, wire.OpData, wire.OpOrder, wire.OpQuery:
		return evalRead(t.b, op, res)
	case wire.OpSet:
		return t.set(op.Key, op.Value)
	case wire.OpKill:
		return t.kill(op.Key, op.NodeOnly)
	case wire.OpIncr:
		cur, _, err := get(t.b, op.Key)
		if err != nil {
			return err
		}
		sum, err := globals.Add(string(cur), string(op.Value))
		if err != nil {
			return fmt.Errorf("increment %s: current value %q is not a number: %w", refText(op.Key), cur, wire.ErrNotANumber)
		}
		res.Value, res.Exists = []byte(sum), true
		return t.set(op.Key, res.Value)
	case wire.OpCAS:
		cur, exists, err := get(t.b, op.Key)
		if err != nil {
			return err
		}
		if exists != op.ExpectExists || (exists && !bytes.Equal(cur, op.Expect)) {
			res.Value, res.Exists = cur, exists
			return nil
		}
		res.OK, res.Value, res.Exists = true, op.Value, true
		return t.set(op.Key, op.Value)
	}
	return fmt.Errorf("unknown operation %d: %w", op.Kind, wire.ErrBadRequest)
}

func (t *txn) set(key, value []byte) error {
	before, had, err := get(t.b, key)
	if err != nil {
		return err
	}
	if err := t.b.Set(dataKey(nil, key), value, nil); err != nil {
		return err
	}
	t.recs = append(t.recs, journal.Record{Type: journal.RecordSet, DB: t.db, Key: key, Value: value, HasValue: true, Before: before, HasBefore: had})
	return nil
}

func (t *txn) kill(key []byte, nodeOnly bool) error {
	if nodeOnly {
		before, had, err := get(t.b, key)
		if err != nil || !had {
			return err
		}
		t.recs = append(t.recs, journal.Record{Type: journal.RecordKill, DB: t.db, Key: key, Before: before, HasBefore: true})
		return t.b.Delete(dataKey(nil, key), nil)
	}
	it, _, err := subtreeIter(t.b, key)
	if err != nil {
		return err
	}
	var victims []journal.Record
	for ok := it.First(); ok; ok = it.Next() {
		if t.keys+len(victims) >= MaxKillNodes {
			it.Close()
			return fmt.Errorf("kill %s removes more than %d nodes in one transaction; kill its subtrees separately: %w", refText(key), MaxKillNodes, wire.ErrTooLarge)
		}
		v, err := it.ValueAndErr()
		if err != nil {
			it.Close()
			return err
		}
		victims = append(victims, journal.Record{Type: journal.RecordKill, DB: t.db, Key: append([]byte{}, it.Key()[1:]...), Before: append([]byte{}, v...), HasBefore: true})
	}
	if err := it.Close(); err != nil {
		return err
	}
	for _, r := range victims {
		if err := t.b.Delete(dataKey(nil, r.Key), nil); err != nil {
			return err
		}
	}
	t.keys += len(victims)
	t.recs = append(t.recs, victims...)
	return nil
}

func refText(key []byte) string {
	ref, err := globals.Decode(key)
	if err != nil {
		return fmt.Sprintf("%x", key)
	}
	return ref.String()
}
