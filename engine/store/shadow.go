package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/cockroachdb/pebble/v2"

	"github.com/mirrorkit/mirrorkit/engine/journal"
	"github.com/mirrorkit/mirrorkit/engine/wire"
)

// A shadowed database is a local copy that a shadow destination keeps up to date from another member's local journal. It is
// attached to the journal name ShadowJournal(shadow) in place of a mirror: its applied position is a position of the source's
// local journal (the shadow's checkpoint), and this member's own writes to it go to the local journal as they do on a
// read-write reporting async — which is how the database records that something other than the shadow wrote to it.

// shadowPrefix starts the journal name of shadowed databases; mirror names cannot contain ':'.
const shadowPrefix = "shadow:"

// ShadowJournal is the journal name the databases of a shadow are attached to.
func ShadowJournal(shadow string) string { return shadowPrefix + shadow }

// ShadowOf returns the shadow a journal name belongs to.
func ShadowOf(journalName string) (string, bool) { return strings.CutPrefix(journalName, shadowPrefix) }

// MarkerToMirror is the key of the marker a member writes into its local journal when it adds one of its local databases to a
// mirror: the database's records continue in the mirror journal, at the position the marker carries. A shadow destination
// that applies the local journal learns from it where its copy joins the mirror.
const MarkerToMirror = "to-mirror"

// ToMirror is the value of a MarkerToMirror marker, and what a shadowed copy records once it has applied one.
type ToMirror struct {
	Mirror string           `json:"mirror"`
	Pos    journal.Position `json:"pos"` // the mirror journal position right after the database's add marker
}

// metaShadowMarker is the last MarkerToMirror a shadowed copy applied, if nothing of the database followed it in the source's
// local journal.
var metaShadowMarker = []byte("\x00shadow.to-mirror")

// ErrNotShadowed is returned when a database is not (or no longer) attached to the shadow that tries to apply to it.
var ErrNotShadowed = errors.New("database is not shadowed by this shadow")

// ShadowInfo is a shadowed copy's own record of where it stands.
type ShadowInfo struct {
	Applied journal.Position `json:"applied"` // the source local journal position applied up to (the checkpoint)
	// Modified is set once this member wrote to the copy itself since shadowing began.
	Modified bool `json:"modified"`
	// ToMirror is the source's move of the database into a mirror, when the copy has applied it.
	ToMirror *ToMirror `json:"to_mirror,omitempty"`
}

// ShadowDatabase attaches a mounted local database to a shadow: from now on it is written by the shadow, which applies the
// source's local journal from start. Its current data is the baseline and is flushed first; its record of local writes starts
// empty. A database already attached to this shadow is left alone.
func (s *Store) ShadowDatabase(name, shadow string, start journal.Position, a Attachment) error {
	return s.changeJournal(name, ShadowJournal(shadow), "", &a, func(b *pebble.Batch, d *Database) journal.Position {
		_ = b.Delete(metaLocalApplied, nil)
		_ = b.Delete(metaShadowMarker, nil)
		d.local, d.shadowMarker = journal.Position{}, nil
		return start
	})
}

// JoinMirrorAt turns a shadowed copy into a copy of a mirrored database at the mirror journal position its last applied
// MarkerToMirror names, with no copying: it is then activated like any copy (the caller tracks it for dejournaling). It
// refuses a copy written locally since shadowing began or one that has not applied a marker for this mirror at pos. The copy
// no longer changes once it has applied the marker (nothing of the database follows it in the source's local journal, and a
// local write would mark it modified), so its logical hash is the database's at pos: it is returned, and when expect (the
// primary's hash at the add position) is given, a copy that differs is refused.
func (s *Store) JoinMirrorAt(name, shadow, mirror string, pos journal.Position, expect *LogicalHash) (LogicalHash, error) {
	a := s.attachment(mirror)
	if a == nil {
		return LogicalHash{}, fmt.Errorf("database %s: mirror %s is not active on this member", name, mirror)
	}
	refuse := func(d *Database) error {
		switch m := d.shadowMarker; {
		case !d.local.IsZero():
			return fmt.Errorf("the copy of %s was written on this member since shadowing began; copy it from the primary instead: %w", d.name, wire.ErrBadRequest)
		case m == nil || m.Mirror != mirror:
			return fmt.Errorf("the copy of %s has not reached the point where the source added it to mirror %s: %w", d.name, mirror, wire.ErrBadRequest)
		case m.Pos != pos:
			return fmt.Errorf("the copy of %s joins mirror %s at %s, but the mirror added it at %s: %w", d.name, mirror, m.Pos, pos, wire.ErrBadRequest)
		}
		return nil
	}
	d, err := s.Database(name)
	if err != nil {
		return LogicalHash{}, err
	}
	if info, err := s.Get(name); err == nil && info.Mirror == mirror {
		return s.Hash(name) // joined before
	}
	d.mu.Lock()
	err = refuse(d)
	d.mu.Unlock()
	if err != nil {
		return LogicalHash{}, err
	}
	h, err := s.hashForJoin(d)
	if err != nil {
		return LogicalHash{}, err
	}
	if expect != nil && (h.SHA256 != expect.SHA256 || h.Nodes != expect.Nodes) {
		return h, fmt.Errorf("the copy of %s differs from the primary's at %s (logical hash %s, %d nodes; the primary's %s, %d nodes): copy it from the primary instead: %w",
			d.name, pos, h.SHA256, h.Nodes, expect.SHA256, expect.Nodes, wire.ErrBadRequest)
	}
	var refusal error
	err = s.changeJournal(name, mirror, ShadowJournal(shadow), a, func(b *pebble.Batch, d *Database) journal.Position {
		if refusal = refuse(d); refusal != nil {
			return journal.Position{} // changed while it was hashed
		}
		_ = b.Delete(metaShadowMarker, nil)
		_ = b.Delete(metaLocalApplied, nil)
		d.shadowMarker = nil
		return pos
	})
	if refusal != nil {
		return h, refusal
	}
	return h, err
}

// UnshadowDatabase takes a database out of its shadow: it becomes a plain local database with the data it has.
func (s *Store) UnshadowDatabase(name, shadow string) error {
	var syncErr error
	err := s.changeJournal(name, "", ShadowJournal(shadow), &Attachment{Journal: s.opts.Journal}, func(b *pebble.Batch, d *Database) journal.Position {
		// The flush below syncs the shadow's journal, not the local one, yet it persists a local journal position: that
		// position must be durable first, or a crash leaves the database ahead of the journal it is recovered from.
		end := s.opts.Journal.AppendedEnd()
		if syncErr = s.opts.Journal.WaitDurable(context.Background(), end); syncErr != nil {
			return journal.Position{}
		}
		_ = b.Delete(metaShadowMarker, nil)
		_ = b.Delete(metaLocalApplied, nil)
		d.shadowMarker, d.local = nil, journal.Position{}
		return end
	})
	if syncErr != nil {
		return fmt.Errorf("database %s: leave shadow %s: sync the local journal: %w", name, shadow, syncErr)
	}
	return err
}

// changeJournal moves a mounted database from journal from to journal to (names as Info.Mirror) with the applied position
// prepare returns (the zero position refuses the move; prepare may also add to the batch), flushed with its data before the
// catalog is updated. A database already on journal to is left alone.
func (s *Store) changeJournal(name, to, from string, a *Attachment, prepare func(b *pebble.Batch, d *Database) journal.Position) error {
	canon, err := CanonicalDatabaseName(name)
	if err != nil {
		return err
	}
	d, err := s.Database(canon)
	if err != nil {
		return err
	}
	d.life.RLock()
	if d.closed {
		d.life.RUnlock()
		return fmt.Errorf("database %s: %w", canon, wire.ErrDatabaseDismounted)
	}
	d.mu.Lock()
	cur := d.Mirror()
	if cur == to {
		d.mu.Unlock()
		d.life.RUnlock()
		return nil
	}
	if cur != from {
		d.mu.Unlock()
		d.life.RUnlock()
		where := "it is a local database"
		if cur != "" {
			where = "it belongs to " + describeJournal(cur)
		}
		return fmt.Errorf("database %s: %s, not %s: %w", canon, where, describeJournal(from), wire.ErrBadRequest)
	}
	b := d.pdb.NewBatch()
	pos := prepare(b, d)
	if pos.IsZero() {
		b.Close()
		d.mu.Unlock()
		d.life.RUnlock()
		return nil
	}
	err = d.rebaseLocked(b, to, pos, a)
	if err != nil {
		d.mu.Unlock()
		d.life.RUnlock()
		return fmt.Errorf("database %s: move to %s: %w", canon, describeJournal(to), err)
	}
	d.mu.Unlock()
	d.life.RUnlock()
	return s.setCatalogMirror(canon, to)
}

// rebaseLocked finishes moving the database to journal (a mirror's name, a shadow's journal name, or "" for the local
// journal): b (closed here) gets pos as the one applied position and the journal's name, is applied and flushed with the
// data, and only then does the database write through a. d.mu is held.
func (d *Database) rebaseLocked(b *pebble.Batch, journalName string, pos journal.Position, a *Attachment) error {
	defer b.Close()
	_ = b.Set(metaApplied, pos.Encode(), nil)
	_ = b.Set(metaMirror, []byte(journalName), nil)
	for p := range Partitions {
		_ = b.Delete(metaPartition(p), nil)
	}
	if err := b.Commit(pebble.NoSync); err != nil {
		return err
	}
	if err := d.pdb.Flush(); err != nil {
		return err
	}
	d.applied, d.parts, d.flushed = pos, [Partitions]journal.Position{}, pos
	d.setMirror(journalName)
	d.attach.Store(a)
	return nil
}

func describeJournal(name string) string {
	if name == "" {
		return "the local journal"
	}
	if sh, ok := ShadowOf(name); ok {
		return "shadow " + sh
	}
	return "mirror " + name
}

// ApplyShadow applies one transaction's records of the source's local journal (all for this database, in journal order) to
// a copy attached to shadow, and records end as its applied position, in one batch. A MarkerToMirror record is remembered as
// the point where the copy can join that mirror; any later record of the database forgets it (the source's move did not
// complete). ErrNotShadowed means the copy is no longer this shadow's.
func (d *Database) ApplyShadow(shadow string, recs []journal.Record, end journal.Position) error {
	d.life.RLock()
	defer d.life.RUnlock()
	if d.closed {
		return fmt.Errorf("database %s: %w", d.name, wire.ErrDatabaseDismounted)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.Mirror() != ShadowJournal(shadow) {
		return fmt.Errorf("database %s: %w %s", d.name, ErrNotShadowed, shadow)
	}
	if !d.applied.Less(end) {
		return nil // applied before a restart
	}
	b := d.pdb.NewBatch()
	defer b.Close()
	marker := d.shadowMarker
	for _, rec := range recs {
		var err error
		switch rec.Type {
		case journal.RecordSet:
			err, marker = b.Set(dataKey(nil, rec.Key), rec.Value, nil), nil
		case journal.RecordKill:
			err, marker = b.Delete(dataKey(nil, rec.Key), nil), nil
		case journal.RecordMarker:
			if string(rec.Key) != MarkerToMirror {
				continue
			}
			var m ToMirror
			if jerr := json.Unmarshal(rec.Value, &m); jerr != nil {
				return fmt.Errorf("database %s: marker at %s: %w", d.name, rec.Pos, jerr)
			}
			marker = &m
		}
		if err != nil {
			return fmt.Errorf("database %s: apply %s: %w", d.name, rec.Pos, err)
		}
	}
	if marker != d.shadowMarker {
		if marker == nil {
			_ = b.Delete(metaShadowMarker, nil)
		} else {
			v, _ := json.Marshal(marker)
			_ = b.Set(metaShadowMarker, v, nil)
		}
	}
	_ = b.Set(metaApplied, end.Encode(), nil)
	if err := b.Commit(pebble.NoSync); err != nil {
		return fmt.Errorf("database %s: apply at %s: %w", d.name, end, err)
	}
	fresh := marker != nil && marker != d.shadowMarker
	d.applied, d.shadowMarker = end, marker
	if fresh {
		// The copy no longer changes unless something writes to it: hash it now, in the background, so that joining the
		// mirror in place does not have to.
		go d.hashAtMarker(marker)
	}
	return nil
}

// markerHash is a shadowed copy's logical hash taken once it had applied marker.
type markerHash struct {
	marker *ToMirror
	hash   LogicalHash
}

// hashAtMarker computes the copy's logical hash while it still stands at marker and nothing else wrote to it, and keeps it
// for JoinMirrorAt; a copy that changed meanwhile (a later record, a local write) keeps nothing.
func (d *Database) hashAtMarker(marker *ToMirror) {
	d.life.RLock()
	defer d.life.RUnlock()
	if d.closed {
		return
	}
	same := func() bool { return d.shadowMarker == marker && d.local.IsZero() }
	d.mu.Lock()
	if !same() {
		d.mu.Unlock()
		return
	}
	snap := d.pdb.NewSnapshot()
	d.mu.Unlock()
	// A database being closed does not wait for a hash it can take again later.
	h, err := logicalHashUnless(d.name, snap, d.closing.Load)
	snap.Close()
	if err != nil {
		if !errors.Is(err, errHashAbandoned) {
			d.log.Warn().Err(err).Msg("logical hash at the to-mirror marker")
		}
		return
	}
	d.mu.Lock()
	if same() {
		d.markerHash = &markerHash{marker: marker, hash: h}
	}
	d.mu.Unlock()
}

// hashForJoin is the copy's logical hash as it stands at its marker: the one taken in the background when it is still
// valid, else computed now.
func (s *Store) hashForJoin(d *Database) (LogicalHash, error) {
	d.mu.Lock()
	mh := d.markerHash
	valid := mh != nil && mh.marker == d.shadowMarker && d.local.IsZero()
	d.mu.Unlock()
	if valid {
		return mh.hash, nil
	}
	return s.Hash(d.name)
}

// AdvanceShadow records that a shadowed copy has applied the source's journal up to pos (nothing of it lay in between).
func (d *Database) AdvanceShadow(shadow string, pos journal.Position) error {
	d.life.RLock()
	defer d.life.RUnlock()
	if d.closed {
		return nil
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.Mirror() != ShadowJournal(shadow) || !d.applied.Less(pos) {
		return nil
	}
	if err := d.pdb.Set(metaApplied, pos.Encode(), pebble.NoSync); err != nil {
		return fmt.Errorf("database %s: advance shadow checkpoint: %w", d.name, err)
	}
	d.applied = pos
	return nil
}

// ShadowInfo returns a shadowed copy's checkpoint, whether it was written locally, and the mirror move it applied.
func (d *Database) ShadowInfo() ShadowInfo {
	d.mu.Lock()
	defer d.mu.Unlock()
	info := ShadowInfo{Applied: d.applied, Modified: !d.local.IsZero()}
	if d.shadowMarker != nil {
		m := *d.shadowMarker
		info.ToMirror = &m
	}
	return info
}

// ShadowedDatabases lists the mounted databases attached to a shadow.
func (s *Store) ShadowedDatabases(shadow string) []*Database {
	s.mu.RLock()
	defer s.mu.RUnlock()
	var out []*Database
	for _, d := range s.dbs {
		if d.Mirror() == ShadowJournal(shadow) {
			out = append(out, d)
		}
	}
	slices.SortFunc(out, func(a, b *Database) int { return strings.Compare(a.name, b.name) })
	return out
}
