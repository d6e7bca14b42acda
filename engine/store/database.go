package store

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/cockroachdb/pebble/v2"
	"github.com/rs/zerolog"

	"github.com/mirrorkit/mirrorkit/engine/journal"
)

// FormatVersion is the on-disk format of a database directory (our meta keys and key layout on top of Pebble's own format,
// which is pinned by pebbleFormat so that a newer Pebble never silently upgrades files an older member must still read).
const FormatVersion = 1

const pebbleFormat = pebble.FormatNewest

// Key layout inside a database's Pebble instance: meta keys under 0x00, global nodes under 0x01 followed by the encoded reference.
var (
	metaApplied = []byte("\x00applied")
	// metaLocalApplied is, on a read-write reporting async, the local journal position up to which this member's own writes
	// to a mirrored database are applied.
	metaLocalApplied = []byte("\x00applied.local")
	metaFormat       = []byte("\x00format")
	metaName         = []byte("\x00name")
	metaIncarnation  = []byte("\x00incarnation")
)

const dataPrefix = 0x01

// Partitions is how many independently applied partitions a replicated database has: a dejournaler applies different
// partitions (sets of globals) in parallel, and each partition records its own applied position. It is part of the on-disk
// meaning of the partition keys, so it never changes within a database format.
const Partitions = 16

func metaPartition(p int) []byte { return []byte(fmt.Sprintf("\x00applied.%02d", p)) }

// Journal is what a database writes its changes to: the member's local journal, or a mirror journal whose WaitDurable also
// waits for the active backup's acknowledgement.
type Journal interface {
	Append(recs []journal.Record) (journal.Position, error)
	WaitDurable(ctx context.Context, pos journal.Position) error
	Sync() error
	AppendedEnd() journal.Position
	DurableEnd() journal.Position
}

// ReadWaiter is implemented by a Journal whose reads must wait for more than local durability: a mirror's primary must not
// answer a read with data its backup has not acknowledged yet (a failover could lose it after the read saw it).
type ReadWaiter interface {
	WaitReadable(ctx context.Context, pos journal.Position) error
}

// WriteGate decides whether a mirrored database may be used on this member now. BeginWrite may wait (during a role change)
// and returns the function to call once the write has committed or failed. BeginRead decides about reads the same way: a
// primary handing over holds them, a backup refuses them (its copy is a standby; clients read the primary), asyncs serve them.
type WriteGate interface {
	BeginWrite(ctx context.Context, db string) (done func(), err error)
	BeginRead(ctx context.Context, db string) error
}

// Attachment is the journal and write gate of a mirror's databases on this member.
type Attachment struct {
	Journal Journal
	Gate    WriteGate
	// Local, when set, takes this member's own writes to the mirror's databases (a read-write reporting async): they are
	// journaled in the local journal, not in the mirror journal the primary feeds, and the gate is not asked.
	Local Journal
}

func dataKey(dst, key []byte) []byte {
	dst = append(dst[:0], dataPrefix)
	return append(dst, key...)
}

// Database is one mounted database.
type Database struct {
	name        string
	dir         string
	incarnation uint64
	pdb         *pebble.DB
	mirror      atomic.Pointer[string]     // the mirror it belongs to, "" for the local journal (see Mirror)
	attach      atomic.Pointer[Attachment] // nil until the mirror is attached: writes refused
	log         zerolog.Logger

	// life is held shared by every operation and exclusively by dismount, delete and close.
	life    sync.RWMutex
	closed  bool
	closing atomic.Bool // set before closing waits for the operations in flight, so long ones can give up

	// mu serialises write transactions: evaluation (before-images, CAS), journal append and batch apply happen in journal order.
	mu      sync.Mutex
	applied journal.Position             // base: every partition applied at least to here; guarded by mu
	parts   [Partitions]journal.Position // per-partition applied positions written by dejournaling; guarded by mu
	flushed journal.Position             // lowest applied position persisted by the last flush; guarded by mu
	local   journal.Position             // local writes to a mirrored database applied up to here (zero: none yet); guarded by mu
	// shadowMarker is, on a shadowed copy, the source's move of the database into a mirror once applied; guarded by mu.
	shadowMarker *ToMirror
	markerHash   *markerHash // the copy's logical hash at shadowMarker, once taken; guarded by mu
	// recordedMirror is the mirror the directory itself says it belongs to (nil: written before that was recorded).
	recordedMirror *string
}

// openDatabase opens the Pebble instance in dir. With create, the directory must be new and the meta keys are written with
// start as the applied position.
func openDatabase(dir, name, mirror string, incarnation uint64, create bool, start journal.Position, attach *Attachment, cache *pebble.Cache, comp Compression, log zerolog.Logger) (*Database, error) {
	d := &Database{name: name, dir: dir, incarnation: incarnation, log: log.With().Str("db", name).Logger()}
	d.setMirror(mirror)
	d.attach.Store(attach)
	opts := &pebble.Options{
		Cache:              cache,
		DisableWAL:         true,
		FormatMajorVersion: pebbleFormat,
		ErrorIfNotExists:   !create,
		ErrorIfExists:      create,
		Logger:             pebbleLogger{d.log.With().Str("component", "pebble").Logger()},
		EventListener: &pebble.EventListener{
			// A flush must never persist data whose journal records are not yet durable.
			FlushBegin: func(pebble.FlushInfo) { d.syncJournalBeforeFlush() },
		},
	}
	comp.apply(opts)
	pdb, err := pebble.Open(dir, opts)
	if err != nil {
		return nil, fmt.Errorf("open database %s at %s: %w", name, dir, err)
	}
	d.pdb = pdb
	if create {
		b := pdb.NewBatch()
		_ = b.Set(metaName, []byte(name), nil)
		_ = b.Set(metaFormat, binary.BigEndian.AppendUint32(nil, FormatVersion), nil)
		_ = b.Set(metaIncarnation, binary.BigEndian.AppendUint64(nil, incarnation), nil)
		_ = b.Set(metaMirror, []byte(mirror), nil)
		d.applied = start
		_ = b.Set(metaApplied, d.applied.Encode(), nil)
		if err := b.Commit(pebble.NoSync); err != nil {
			pdb.Close()
			return nil, fmt.Errorf("create database %s: %w", name, err)
		}
		if err := pdb.Flush(); err != nil {
			pdb.Close()
			return nil, fmt.Errorf("create database %s: %w", name, err)
		}
		d.flushed = d.lowestAppliedLocked()
		return d, nil
	}
	if err := d.loadMeta(); err != nil {
		pdb.Close()
		return nil, err
	}
	d.flushed = d.lowestAppliedLocked()
	return d, nil
}

func (d *Database) loadMeta() error {
	get := func(key []byte) ([]byte, error) {
		v, closer, err := d.pdb.Get(key)
		if errors.Is(err, pebble.ErrNotFound) {
			return nil, fmt.Errorf("database %s at %s has no %q record: not a database directory or damaged", d.name, d.dir, key[1:])
		}
		if err != nil {
			return nil, fmt.Errorf("database %s: read %q: %w", d.name, key[1:], err)
		}
		defer closer.Close()
		return append([]byte(nil), v...), nil
	}
	format, err := get(metaFormat)
	if err != nil {
		return err
	}
	if len(format) != 4 || binary.BigEndian.Uint32(format) != FormatVersion {
		return fmt.Errorf("database %s at %s has format %x, this member reads format %d", d.name, d.dir, format, FormatVersion)
	}
	name, err := get(metaName)
	if err != nil {
		return err
	}
	if string(name) != d.name {
		return fmt.Errorf("database directory %s holds database %s, expected %s", d.dir, name, d.name)
	}
	inc, err := get(metaIncarnation)
	if err != nil {
		return err
	}
	if len(inc) == 8 && d.incarnation == 0 {
		d.incarnation = binary.BigEndian.Uint64(inc) // adopting a copy: it brings its identity
	}
	if len(inc) != 8 || binary.BigEndian.Uint64(inc) != d.incarnation {
		return fmt.Errorf("database directory %s belongs to another incarnation of %s (deleted and re-created?)", d.dir, d.name)
	}
	applied, err := get(metaApplied)
	if err != nil {
		return err
	}
	if d.applied, err = journal.DecodePosition(applied); err != nil {
		return fmt.Errorf("database %s: applied position: %w", d.name, err)
	}
	if v, closer, err := d.pdb.Get(metaMirror); err == nil {
		m := string(v)
		d.recordedMirror = &m
		closer.Close()
	}
	if v, closer, err := d.pdb.Get(metaLocalApplied); err == nil {
		d.local, err = journal.DecodePosition(v)
		closer.Close()
		if err != nil {
			return fmt.Errorf("database %s: local applied position: %w", d.name, err)
		}
	}
	if v, closer, err := d.pdb.Get(metaShadowMarker); err == nil {
		var m ToMirror
		err = json.Unmarshal(v, &m)
		closer.Close()
		if err != nil {
			return fmt.Errorf("database %s: shadow marker: %w", d.name, err)
		}
		d.shadowMarker = &m
	}
	for p := range Partitions {
		v, closer, err := d.pdb.Get(metaPartition(p))
		if errors.Is(err, pebble.ErrNotFound) {
			continue
		}
		if err != nil {
			return fmt.Errorf("database %s: partition %d applied position: %w", d.name, p, err)
		}
		d.parts[p], err = journal.DecodePosition(v)
		closer.Close()
		if err != nil {
			return fmt.Errorf("database %s: partition %d applied position: %w", d.name, p, err)
		}
	}
	return nil
}

func (d *Database) syncJournalBeforeFlush() {
	a := d.attach.Load()
	if a == nil {
		return // nothing was written through a journal this member does not have open
	}
	if err := a.Journal.Sync(); err != nil {
		// Letting the flush go on could persist changes that the journal lost; stopping the process keeps the database
		// behind its journal, and recovery replays what is durable.
		d.log.Fatal().Err(err).Msg("journal sync before database flush failed; stopping")
	}
}

// Name is the database's canonical name.
func (d *Database) Name() string { return d.name }

// Mirror is the name of the mirror the database belongs to, "" for a database on the local journal.
func (d *Database) Mirror() string {
	if m := d.mirror.Load(); m != nil {
		return *m
	}
	return ""
}

// setMirror records the journal the database belongs to; it changes under the writer lock, and is read without it.
func (d *Database) setMirror(m string) { d.mirror.Store(&m) }

// Applied is the lowest journal position this database still needs: every record before it has been applied.
func (d *Database) Applied() journal.Position {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.lowestAppliedLocked()
}

func (d *Database) lowestAppliedLocked() journal.Position {
	low := journal.Position{}
	for p := range Partitions {
		eff := d.applied
		if eff.Less(d.parts[p]) {
			eff = d.parts[p]
		}
		if p == 0 || eff.Less(low) {
			low = eff
		}
	}
	return low
}

// flush persists everything applied so far, unless nothing changed since the last flush, and returns the applied position
// that is now persisted (recovery never needs the journal before it).
func (d *Database) flush() (journal.Position, error) {
	d.mu.Lock()
	applied, flushed := d.lowestAppliedLocked(), d.flushed
	d.mu.Unlock()
	if applied == flushed {
		return applied, nil
	}
	if err := d.pdb.Flush(); err != nil {
		return journal.Position{}, fmt.Errorf("flush database %s: %w", d.name, err)
	}
	d.mu.Lock()
	d.flushed = applied
	d.mu.Unlock()
	return applied, nil
}

// flushAndClose persists everything applied so far (the journal is synced first by the flush hook) and closes Pebble.
func (d *Database) flushAndClose() error {
	d.closing.Store(true)
	d.life.Lock()
	defer d.life.Unlock()
	if d.closed {
		return nil
	}
	d.closed = true
	ferr := d.pdb.Flush()
	cerr := d.pdb.Close()
	if ferr != nil {
		return fmt.Errorf("flush database %s: %w", d.name, ferr)
	}
	if cerr != nil {
		return fmt.Errorf("close database %s: %w", d.name, cerr)
	}
	return nil
}

// Checkpoint is a consistent copy of a database directory and the journal position it reflects.
type Checkpoint struct {
	Database string           `json:"database"`
	Dir      string           `json:"dir"`
	Applied  journal.Position `json:"applied"`
	Format   int              `json:"format"`
}

// checkpoint writes a Pebble checkpoint of the database into dest (which must not exist) while writers are held back, so the
// data and the applied position describe the same moment.
func (d *Database) checkpoint(dest string) (Checkpoint, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := d.pdb.Flush(); err != nil {
		return Checkpoint{}, fmt.Errorf("checkpoint %s: flush: %w", d.name, err)
	}
	if err := d.pdb.Checkpoint(dest); err != nil {
		return Checkpoint{}, fmt.Errorf("checkpoint %s into %s: %w", d.name, dest, err)
	}
	return Checkpoint{Database: d.name, Dir: dest, Applied: d.lowestAppliedLocked(), Format: FormatVersion}, nil
}
