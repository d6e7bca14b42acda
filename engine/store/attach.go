package store

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"slices"

	"github.com/cockroachdb/pebble/v2"

	"github.com/mirrorkit/mirrorkit/engine/journal"
	"github.com/mirrorkit/mirrorkit/engine/wire"
)

// metaMirror records, inside the database itself, the mirror it belongs to ("" for the local journal). It is written in the
// same flushed batch as the applied position whenever a database changes journals, so that the directory always says which
// journal its applied position refers to; the catalog follows it (Open repairs a catalog a crash left behind).
var metaMirror = []byte("\x00mirror")

// MarkerAdd is the key of the journal marker record a mirror primary writes when it adds an existing database (one with data
// written under the local journal) to a mirror: the database's records continue in the mirror journal right after it.
const MarkerAdd = "add"

// AttachToMirror moves an existing database from the local journal to a mirror's journal, atomically with respect to its
// writers: with writes held back, the local journal is synced, an add marker is committed to the mirror journal (and
// acknowledged by the mirror's active backup), added is called with the position right after the marker (the caller records
// it in the mirror configuration), and the database's applied position becomes that position, flushed together with the
// data, before the catalog is updated. A database already attached to the mirror is left as it is and added is called with
// its current applied position, so the whole operation can be repeated after a crash.
//
// hashed, when given, receives the logical hash of the database as it was at the add position, or why there is none: it is
// computed in the background from a snapshot taken at that moment, so neither writers nor the caller wait for it; a copy
// that joins the mirror at that position in place can be checked against it.
func (s *Store) AttachToMirror(name, mirror string, added func(pos journal.Position) error, hashed ...func(LogicalHash, error)) (Info, error) {
	canon, err := CanonicalDatabaseName(name)
	if err != nil {
		return Info{}, err
	}
	d, err := s.Database(canon)
	if err != nil {
		return Info{}, err
	}
	a := s.attachment(mirror)
	if mirror == "" || a == nil {
		return Info{}, fmt.Errorf("add database %s to mirror %q: the mirror is not active on this member", canon, mirror)
	}
	d.life.RLock()
	if d.closed {
		d.life.RUnlock()
		return Info{}, fmt.Errorf("database %s: %w", canon, wire.ErrDatabaseDismounted)
	}
	d.mu.Lock()
	switch {
	case d.Mirror() == mirror:
		pos := d.lowestAppliedLocked()
		d.mu.Unlock()
		d.life.RUnlock()
		if err := added(pos); err != nil {
			return Info{}, err
		}
		return s.Get(canon)
	case d.Mirror() != "":
		cur := d.Mirror()
		d.mu.Unlock()
		d.life.RUnlock()
		return Info{}, fmt.Errorf("database %s already belongs to mirror %s; remove it from that mirror first: %w", canon, cur, wire.ErrBadRequest)
	}
	pos, err := d.moveToMirrorLocked(s.opts.Journal, mirror, a, added)
	if err != nil || len(hashed) == 0 {
		d.mu.Unlock()
		d.life.RUnlock()
	} else {
		// The hash is taken from a snapshot of this moment, in the background: the goroutine inherits the hold on the
		// database's life (so it is not closed under the snapshot) and gives up if the database is being closed.
		snap := d.pdb.NewSnapshot()
		d.mu.Unlock()
		go func() {
			defer d.life.RUnlock()
			h, herr := logicalHashUnless(d.name, snap, d.closing.Load)
			snap.Close()
			for _, f := range hashed {
				f(h, herr)
			}
		}()
	}
	if err != nil {
		return Info{}, err
	}
	if err := s.setCatalogMirror(canon, mirror); err != nil {
		return Info{}, err
	}
	s.log.Info().Str("db", canon).Str("mirror", mirror).Str("pos", pos.String()).Msg("existing database added to the mirror")
	return s.Get(canon)
}

// moveToMirrorLocked does AttachToMirror's work on the database itself; d.mu is held.
func (d *Database) moveToMirrorLocked(local Journal, mirror string, a *Attachment, added func(journal.Position) error) (journal.Position, error) {
	// Every local record this database applied must be durable before its data stops being recoverable from the local journal.
	if err := local.Sync(); err != nil {
		return journal.Position{}, fmt.Errorf("add database %s to mirror %s: sync the local journal: %w", d.name, mirror, err)
	}
	end, err := a.Journal.Append([]journal.Record{{Type: journal.RecordMarker, TxnEnd: true, DB: d.name, Key: []byte(MarkerAdd),
		Value: binary.BigEndian.AppendUint64(nil, d.incarnation), HasValue: true}})
	if err != nil {
		return journal.Position{}, fmt.Errorf("add database %s to mirror %s: journal marker: %w", d.name, mirror, err)
	}
	if err := a.Journal.WaitDurable(context.Background(), end); err != nil {
		return journal.Position{}, fmt.Errorf("add database %s to mirror %s: journal marker: %w", d.name, mirror, err)
	}
	// The local journal says where the database went, after its last local record: a shadow destination that applies this
	// journal stops there, and its copy can join the mirror at end without being copied.
	v, _ := json.Marshal(ToMirror{Mirror: mirror, Pos: end})
	lend, err := local.Append([]journal.Record{{Type: journal.RecordMarker, TxnEnd: true, DB: d.name, Key: []byte(MarkerToMirror), Value: v, HasValue: true}})
	if err == nil {
		err = local.WaitDurable(context.Background(), lend)
	}
	if err != nil {
		return journal.Position{}, fmt.Errorf("add database %s to mirror %s: local journal marker: %w", d.name, mirror, err)
	}
	if err := added(end); err != nil {
		return journal.Position{}, err
	}
	if err := d.rebaseLocked(d.pdb.NewBatch(), mirror, end, a); err != nil {
		return journal.Position{}, fmt.Errorf("add database %s to mirror %s: %w", d.name, mirror, err)
	}
	return end, nil
}

// setCatalogMirror records the mirror a database belongs to in the catalog.
func (s *Store) setCatalogMirror(name, mirror string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	i, ok := s.cat.find(name)
	if !ok {
		return fmt.Errorf("no database %s: %w", name, wire.ErrNoSuchDatabase)
	}
	if s.cat.Databases[i].Mirror == mirror {
		return nil
	}
	next := s.cat
	next.Databases = slices.Clone(s.cat.Databases)
	next.Databases[i].Mirror = mirror
	if err := next.save(s.catalogPath()); err != nil {
		return fmt.Errorf("database %s: record mirror %q in the catalog: %w", name, mirror, err)
	}
	s.cat = next
	return nil
}

// AdvanceIdle moves the applied position of every mounted database of the journal ("" the local journal, else a mirror's)
// up to end when it is behind it, so that databases nobody writes do not hold back purging that journal. The caller
// vouches that this member wrote the journal up to end itself (the local journal, or a mirror journal on a primary that has
// caught up): every record before end is then applied to its database already — a commit appends and applies under the
// database's writer lock, which this takes. Replicas must not call it: their journal holds records not yet dejournaled.
func (s *Store) AdvanceIdle(mirror string, end journal.Position) error {
	s.mu.RLock()
	var dbs []*Database
	for _, d := range s.dbs {
		if d.Mirror() == mirror {
			dbs = append(dbs, d)
		}
	}
	s.mu.RUnlock()
	for _, d := range dbs {
		if err := d.advanceIdle(end); err != nil {
			return err
		}
	}
	return nil
}

func (d *Database) advanceIdle(end journal.Position) error {
	d.life.RLock()
	defer d.life.RUnlock()
	if d.closed {
		return nil
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if !d.lowestAppliedLocked().Less(end) {
		return nil
	}
	// Unsynced: the next flush persists it together with whatever data it covers.
	if err := d.pdb.Set(metaApplied, end.Encode(), pebble.NoSync); err != nil {
		return fmt.Errorf("database %s: advance applied position: %w", d.name, err)
	}
	d.applied = end
	for p := range Partitions {
		if d.parts[p].Less(end) {
			d.parts[p] = journal.Position{}
		}
	}
	return nil
}
