package store

import (
	"fmt"
	"slices"

	"github.com/cockroachdb/pebble/v2"

	"github.com/mirrorkit/mirrorkit/engine/journal"
	"github.com/mirrorkit/mirrorkit/engine/wire"
)

// ApplyReplicated applies one transaction's records received from a mirror primary (all for this database, in journal order)
// and records end as the applied position of each listed partition, in one batch. It bypasses the write gate: on a backup or
// async, dejournaling is the only writer of a mirrored database.
func (d *Database) ApplyReplicated(recs []journal.Record, end journal.Position, partitions []int) error {
	d.life.RLock()
	defer d.life.RUnlock()
	if d.closed {
		return fmt.Errorf("database %s is dismounted", d.name)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	b := d.pdb.NewBatch()
	defer b.Close()
	for _, rec := range recs {
		var err error
		switch rec.Type {
		case journal.RecordSet:
			err = b.Set(dataKey(nil, rec.Key), rec.Value, nil)
		case journal.RecordKill:
			err = b.Delete(dataKey(nil, rec.Key), nil)
		default:
			continue
		}
		if err != nil {
			return fmt.Errorf("database %s: apply %s: %w", d.name, rec.Pos, err)
		}
	}
	for _, p := range partitions {
		if p < 0 || p >= Partitions {
			return fmt.Errorf("database %s: partition %d out of range", d.name, p)
		}
		if err := b.Set(metaPartition(p), end.Encode(), nil); err != nil {
			return err
		}
	}
	if err := b.Commit(pebble.NoSync); err != nil {
		return fmt.Errorf("database %s: apply at %s: %w", d.name, end, err)
	}
	for _, p := range partitions {
		d.parts[p] = end
	}
	return nil
}

// AdvanceApplied records that every partition is applied at least up to pos.
func (d *Database) AdvanceApplied(pos journal.Position) error {
	d.life.RLock()
	defer d.life.RUnlock()
	if d.closed {
		return fmt.Errorf("database %s is dismounted", d.name)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if !d.applied.Less(pos) {
		return nil
	}
	if err := d.pdb.Set(metaApplied, pos.Encode(), pebble.NoSync); err != nil {
		return fmt.Errorf("database %s: advance applied to %s: %w", d.name, pos, err)
	}
	d.applied = pos
	return nil
}

// AppliedPositions returns the base applied position and each partition's; a partition's effective position is the larger.
func (d *Database) AppliedPositions() (journal.Position, [Partitions]journal.Position) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.applied, d.parts
}

// Detach takes a database out of its mirror: it becomes a database on the local journal, writable on this member, starting
// at the local journal's end (its mirror journal positions no longer mean anything to it).
func (s *Store) Detach(name string) error {
	canon, err := CanonicalDatabaseName(name)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	i, ok := s.cat.find(canon)
	if !ok {
		return fmt.Errorf("no database %s: %w", canon, wire.ErrNoSuchDatabase)
	}
	if s.cat.Databases[i].Mirror == "" {
		return nil
	}
	if d, ok := s.dbs[canon]; ok {
		d.mu.Lock()
		err := d.rebaseLocked(d.pdb.NewBatch(), "", s.opts.Journal.AppendedEnd(), &Attachment{Journal: s.opts.Journal})
		d.mu.Unlock()
		if err != nil {
			return fmt.Errorf("detach database %s: %w", canon, err)
		}
	}
	next := s.cat
	next.Databases = slices.Clone(s.cat.Databases)
	next.Databases[i].Mirror = ""
	if err := next.save(s.catalogPath()); err != nil {
		return err
	}
	s.cat = next
	s.log.Info().Str("db", canon).Msg("database taken out of its mirror; it is now a local database")
	return nil
}

// localFloor is where this database's records in the local journal start mattering for replay: its applied position for a
// local database; for a mirrored database, its local-writes position (a mirrored database never written locally has none,
// and then nothing in the local journal is its own).
func (d *Database) localFloor() journal.Position {
	if d.Mirror() == "" {
		return d.applied
	}
	if d.local.IsZero() {
		return journal.Position{Epoch: ^uint64(0), Segment: ^uint64(0), Offset: ^uint64(0)}
	}
	return d.local
}

func (d *Database) localApplied() journal.Position {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.local
}

// startLocalWritesLocked records, durably and once, where this mirrored database's own records in the local journal begin,
// before its first local write is appended: recovery replays the local journal for it from there. For a shadowed copy this
// is also what marks it modified. d.mu is held.
func (d *Database) startLocalWritesLocked(local Journal) error {
	if !d.local.IsZero() {
		return nil
	}
	start := local.AppendedEnd()
	if err := d.pdb.Set(metaLocalApplied, start.Encode(), pebble.NoSync); err != nil {
		return fmt.Errorf("database %s: start local writes: %w", d.name, err)
	}
	if err := d.pdb.Flush(); err != nil {
		return fmt.Errorf("database %s: start local writes: %w", d.name, err)
	}
	d.local = start
	return nil
}

// RollBack undoes recs — this database's records of a divergent journal tail, oldest first, each carrying its
// before-image — newest first, and moves every applied position beyond to back to it, in one batch that is flushed before
// RollBack returns, so the journal tail can be cut afterwards. Records never applied are undone too: a key's records are
// applied in order, so restoring each before-image from the newest down leaves the value from before the first one.
func (d *Database) RollBack(recs []journal.Record, to journal.Position) error {
	d.life.RLock()
	defer d.life.RUnlock()
	if d.closed {
		return fmt.Errorf("database %s is dismounted", d.name)
	}
	d.mu.Lock()
	b := d.pdb.NewBatch()
	defer b.Close()
	for i := len(recs) - 1; i >= 0; i-- {
		rec := recs[i]
		if rec.Type != journal.RecordSet && rec.Type != journal.RecordKill {
			continue
		}
		var err error
		if rec.HasBefore {
			err = b.Set(dataKey(nil, rec.Key), rec.Before, nil)
		} else {
			err = b.Delete(dataKey(nil, rec.Key), nil)
		}
		if err != nil {
			d.mu.Unlock()
			return fmt.Errorf("database %s: roll back %s: %w", d.name, rec.Pos, err)
		}
	}
	applied, parts := d.applied, d.parts
	if to.Less(applied) {
		applied = to
		if err := b.Set(metaApplied, to.Encode(), nil); err != nil {
			d.mu.Unlock()
			return err
		}
	}
	for p := range parts {
		if to.Less(parts[p]) {
			parts[p] = to
			if err := b.Set(metaPartition(p), to.Encode(), nil); err != nil {
				d.mu.Unlock()
				return err
			}
		}
	}
	if err := b.Commit(pebble.NoSync); err != nil {
		d.mu.Unlock()
		return fmt.Errorf("database %s: roll back to %s: %w", d.name, to, err)
	}
	d.applied, d.parts = applied, parts
	d.mu.Unlock()
	if err := d.pdb.Flush(); err != nil {
		return fmt.Errorf("database %s: flush after rolling back to %s: %w", d.name, to, err)
	}
	return nil
}
