package dejournal

import (
	"bytes"
	"hash/fnv"
	"slices"

	"github.com/mirrorkit/mirrorkit/engine/journal"
)

// Partition returns the partition of a record for database db and key: FNV-1a (64-bit) of the database name, a 0x00 byte
// and the global name (the key up to its first 0x00 byte), modulo Partitions. Every node of a global therefore lies in one
// partition. The function is part of the on-disk meaning of the per-partition applied positions.
func Partition(db string, key []byte) int {
	if i := bytes.IndexByte(key, 0); i >= 0 {
		key = key[:i]
	}
	h := fnv.New64a()
	_, _ = h.Write([]byte(db)) // a hash.Hash never fails to write
	_, _ = h.Write([]byte{0})
	_, _ = h.Write(key)
	return int(h.Sum64() % Partitions)
}

// isData reports whether a record changes a database; everything else is skipped by dejournaling.
func isData(rec *journal.Record) bool {
	return rec.Type == journal.RecordSet || rec.Type == journal.RecordKill
}

// pendingTxn is a transaction whose TxnEnd record has not been read yet.
type pendingTxn struct {
	start journal.Position
	recs  []journal.Record
}

// txnTracker groups records into transactions. Every transaction with a data record is tracked from its first data record
// on, so that safe reports a position no incomplete transaction starts before; keep selects the records worth holding.
type txnTracker struct {
	pending map[uint64]*pendingTxn
	keep    func(*journal.Record) bool
}

func newTxnTracker(keep func(*journal.Record) bool) *txnTracker {
	return &txnTracker{pending: map[uint64]*pendingTxn{}, keep: keep}
}

// add takes the next record and returns the transaction it completes, if any.
func (t *txnTracker) add(rec journal.Record) *pendingTxn {
	p := t.pending[rec.TxnID]
	if isData(&rec) {
		if p == nil {
			p = &pendingTxn{start: rec.Pos}
			t.pending[rec.TxnID] = p
		}
		if t.keep(&rec) {
			p.recs = append(p.recs, rec)
		}
	}
	if !rec.TxnEnd || p == nil {
		return nil
	}
	delete(t.pending, rec.TxnID)
	return p
}

// safe is the lowest of pos (the reader's position) and the start of every incomplete transaction.
func (t *txnTracker) safe(pos journal.Position) journal.Position {
	for _, p := range t.pending {
		pos = minPos(pos, p.start)
	}
	return pos
}

func (t *txnTracker) empty() bool { return len(t.pending) == 0 }

// share is the part of a transaction for one database that is not applied yet: its records in journal order and the
// partitions they touch, ascending.
type share struct {
	recs  []journal.Record
	parts []int
}

// shareOf selects the records of txn for db in partitions where applied reports the transaction (ending at end) as not
// applied yet.
func shareOf(txn []journal.Record, db string, end journal.Position, applied func(p int) journal.Position) share {
	var s share
	var touched [Partitions]bool
	for i := range txn {
		rec := &txn[i]
		if rec.DB != db {
			continue
		}
		p := Partition(db, rec.Key)
		if !posLess(applied(p), end) {
			continue
		}
		s.recs = append(s.recs, *rec)
		if !touched[p] {
			touched[p] = true
			s.parts = append(s.parts, p)
		}
	}
	slices.Sort(s.parts)
	return s
}

// databasesOf lists the databases of txn in order of first appearance.
func databasesOf(txn []journal.Record) []string {
	var dbs []string
	for i := range txn {
		if !slices.Contains(dbs, txn[i].DB) {
			dbs = append(dbs, txn[i].DB)
		}
	}
	return dbs
}
