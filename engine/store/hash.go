package store

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"

	"github.com/cockroachdb/pebble/v2"
)

// LogicalHash is a digest of a database's content — every global node and its value, in collation order — independent of
// how the data is laid out on disk, so copies on different members can be compared.
type LogicalHash struct {
	Database string `json:"database"`
	Nodes    uint64 `json:"nodes"`
	SHA256   string `json:"sha256"`
}

// Hash computes the logical hash of a mounted database from a consistent snapshot.
func (s *Store) Hash(name string) (LogicalHash, error) {
	d, err := s.Database(name)
	if err != nil {
		return LogicalHash{}, err
	}
	d.life.RLock()
	defer d.life.RUnlock()
	if d.closed {
		return LogicalHash{}, fmt.Errorf("database %s is dismounted", d.name)
	}
	snap := d.pdb.NewSnapshot()
	defer snap.Close()
	return logicalHash(d.name, snap)
}

// logicalHash digests every global node readable through r; it is the one definition of the logical hash.
func logicalHash(name string, r reader) (LogicalHash, error) { return logicalHashUnless(name, r, nil) }

// errHashAbandoned is returned by logicalHashUnless when stop said to give up.
var errHashAbandoned = errors.New("logical hash abandoned")

// logicalHashUnless is logicalHash that gives up when stop (checked every few thousand nodes) returns true.
func logicalHashUnless(name string, r reader, stop func() bool) (LogicalHash, error) {
	it, err := r.NewIter(&pebble.IterOptions{LowerBound: []byte{dataPrefix}, UpperBound: []byte{dataPrefix + 1}})
	if err != nil {
		return LogicalHash{}, err
	}
	defer it.Close()
	h := sha256.New()
	var n uint64
	var lenBuf [binary.MaxVarintLen64]byte
	for ok := it.First(); ok; ok = it.Next() {
		v, err := it.ValueAndErr()
		if err != nil {
			return LogicalHash{}, err
		}
		h.Write(lenBuf[:binary.PutUvarint(lenBuf[:], uint64(len(it.Key())-1))])
		h.Write(it.Key()[1:])
		h.Write(lenBuf[:binary.PutUvarint(lenBuf[:], uint64(len(v)))])
		h.Write(v)
		n++
		if stop != nil && n%4096 == 0 && stop() {
			return LogicalHash{}, errHashAbandoned
		}
	}
	if err := it.Error(); err != nil {
		return LogicalHash{}, err
	}
	return LogicalHash{Database: name, Nodes: n, SHA256: hex.EncodeToString(h.Sum(nil))}, nil
}
