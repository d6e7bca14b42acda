package store

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sync"

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
	metaApplied     = []byte("\x00applied")
	metaFormat      = []byte("\x00format")
	metaName        = []byte("\x00name")
	metaIncarnation = []byte("\x00incarnation")
)

const dataPrefix = 0x01

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
	jrn         *journal.Journal
	log         zerolog.Logger

	// life is held shared by every operation and exclusively by dismount, delete and close.
	life   sync.RWMutex
	closed bool

	// mu serialises write transactions: evaluation (before-images, CAS), journal append and batch apply happen in journal order.
	mu      sync.Mutex
	applied journal.Position // end of the last record applied; guarded by mu
	flushed journal.Position // applied position persisted by the last flush; guarded by mu
}

// openDatabase opens the Pebble instance in dir. With create, the directory must be new and the meta keys are written.
func openDatabase(dir, name string, incarnation uint64, create bool, jrn *journal.Journal, cache *pebble.Cache, log zerolog.Logger) (*Database, error) {
	d := &Database{name: name, dir: dir, incarnation: incarnation, jrn: jrn, log: log.With().Str("db", name).Logger()}
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
		d.applied = jrn.AppendedEnd()
		_ = b.Set(metaApplied, d.applied.Encode(), nil)
		if err := b.Commit(pebble.NoSync); err != nil {
			pdb.Close()
			return nil, fmt.Errorf("create database %s: %w", name, err)
		}
		if err := pdb.Flush(); err != nil {
			pdb.Close()
			return nil, fmt.Errorf("create database %s: %w", name, err)
		}
		d.flushed = d.applied
		return d, nil
	}
	if err := d.loadMeta(); err != nil {
		pdb.Close()
		return nil, err
	}
	d.flushed = d.applied
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
	return nil
}

func (d *Database) syncJournalBeforeFlush() {
	if err := d.jrn.Sync(); err != nil {
		// Letting the flush go on could persist changes that the journal lost; stopping the process keeps the database
		// behind its journal, and recovery replays what is durable.
		d.log.Fatal().Err(err).Msg("journal sync before database flush failed; stopping")
	}
}

// Name is the database's canonical name.
func (d *Database) Name() string { return d.name }

// Applied is the journal position just after the last record applied to this database.
func (d *Database) Applied() journal.Position {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.applied
}

// flush persists everything applied so far, unless nothing changed since the last flush, and returns the applied position
// that is now persisted (recovery never needs the journal before it).
func (d *Database) flush() (journal.Position, error) {
	d.mu.Lock()
	applied, flushed := d.applied, d.flushed
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
	return Checkpoint{Database: d.name, Dir: dest, Applied: d.applied, Format: FormatVersion}, nil
}
