package store

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/rs/zerolog"

	"github.com/mirrorkit/mirrorkit/engine/journal"
	"github.com/mirrorkit/mirrorkit/engine/wire"
)

// Options configure a Store.
type Options struct {
	// Dir is the member's data directory; databases live in Dir/db/<NAME>, the catalog in Dir/catalog.json.
	Dir string
	// Journal is the member's local journal: databases that belong to no mirror write to it and are recovered from it.
	Journal *journal.Journal
	// Mirrors attaches the journal and write gate of each mirror whose databases this member holds. Mirrored databases are
	// not replayed by the store: the mirror brings them up to date (dejournaling) before it lets them be written.
	Mirrors      map[string]Attachment
	Logger       zerolog.Logger
	MaxValueSize int   // default DefaultMaxValueSize
	CacheSize    int64 // shared block cache, default 64 MiB
	// Compression of the databases' table files (default CompressionFast).
	Compression Compression
	Now         func() time.Time
}

// Store is a member's set of databases.
type Store struct {
	opts  Options
	log   zerolog.Logger
	cache *pebble.Cache

	mu      sync.RWMutex // guards cat and dbs
	cat     catalog
	dbs     map[string]*Database
	closing bool
}

// Compression is how this store's databases compress the table files they write.
func (s *Store) Compression() Compression {
	if s.opts.Compression == "" {
		return CompressionFast
	}
	return s.opts.Compression
}

// Info describes a database for listings and status.
type Info struct {
	Name    string           `json:"name"`
	Dir     string           `json:"dir"`
	Mounted bool             `json:"mounted"`
	Mirror  string           `json:"mirror,omitempty"`
	Created time.Time        `json:"created"`
	Applied journal.Position `json:"applied"`
	Bytes   uint64           `json:"bytes"`
}

// Open loads the catalog, opens every mounted database and replays the journal into them from their applied positions.
func Open(opts Options) (*Store, error) {
	if opts.MaxValueSize <= 0 {
		opts.MaxValueSize = DefaultMaxValueSize
	}
	if opts.CacheSize <= 0 {
		opts.CacheSize = 64 << 20
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if err := os.MkdirAll(filepath.Join(opts.Dir, "db"), 0o755); err != nil {
		return nil, fmt.Errorf("data dir: %w", err)
	}
	cat, err := loadCatalog(filepath.Join(opts.Dir, "catalog.json"))
	if err != nil {
		return nil, err
	}
	s := &Store{opts: opts, log: opts.Logger.With().Str("component", "store").Logger(), cache: pebble.NewCache(opts.CacheSize), cat: cat, dbs: map[string]*Database{}}
	for _, e := range cat.Databases {
		if !e.Mounted {
			continue
		}
		d, err := openDatabase(filepath.Join(opts.Dir, e.Dir), e.Name, e.Mirror, e.Incarnation, false, journal.Position{}, s.attachment(e.Mirror), s.cache, s.opts.Compression, s.log)
		if err != nil {
			s.Close()
			return nil, err
		}
		s.dbs[e.Name] = d
	}
	if err := s.followRecordedMirrors(); err != nil {
		s.Close()
		return nil, err
	}
	if err := s.replay(); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

// followRecordedMirrors repairs catalog entries that a crash left behind while a database changed journals: the directory
// records the mirror its applied position refers to, and it wins.
func (s *Store) followRecordedMirrors() error {
	next := s.cat
	changed := false
	for i, e := range s.cat.Databases {
		d, ok := s.dbs[e.Name]
		if !ok || d.recordedMirror == nil || *d.recordedMirror == e.Mirror {
			continue
		}
		if !changed {
			next.Databases = slices.Clone(s.cat.Databases)
			changed = true
		}
		next.Databases[i].Mirror = *d.recordedMirror
		d.setMirror(*d.recordedMirror)
		d.attach.Store(s.attachment(*d.recordedMirror))
		s.log.Warn().Str("db", e.Name).Str("mirror", *d.recordedMirror).Msg("catalog repaired: the database had changed journals when the member stopped")
	}
	if !changed {
		return nil
	}
	if err := next.save(s.catalogPath()); err != nil {
		return err
	}
	s.cat = next
	return nil
}

// attachment returns what a database of the named mirror writes through ("" is the local journal); nil for a mirror that is
// not attached.
func (s *Store) attachment(mirror string) *Attachment {
	if mirror == "" {
		return &Attachment{Journal: s.opts.Journal}
	}
	if a, ok := s.opts.Mirrors[mirror]; ok {
		return &a
	}
	return nil
}

// AttachMirror sets (or replaces) the journal and write gate of a mirror's databases.
func (s *Store) AttachMirror(mirror string, a Attachment) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.opts.Mirrors == nil {
		s.opts.Mirrors = map[string]Attachment{}
	}
	s.opts.Mirrors[mirror] = a
	for _, d := range s.dbs {
		if d.Mirror() == mirror {
			d.attach.Store(&a)
		}
	}
}

// replay applies every complete transaction in the durable local journal that a mounted database on it has not applied yet.
func (s *Store) replay() error {
	jrn := s.opts.Journal
	end := jrn.DurableEnd()
	from := end
	for _, d := range s.dbs {
		if d.Mirror() != "" {
			// Local writes on a read-write reporting async are on the local journal too.
			if !d.local.IsZero() && d.local.Less(from) {
				from = d.local
			}
			continue
		}
		if end.Less(d.applied) {
			return fmt.Errorf("database %s has applied the journal up to %s but the journal ends at %s: the journal is missing data this database holds; restore the database from a backup or a mirror member", d.name, d.applied, end)
		}
		if d.applied.Less(from) {
			from = d.applied
		}
	}
	if !from.Less(end) {
		return nil
	}
	r, err := jrn.NewReader(from)
	if errors.Is(err, journal.ErrPurged) {
		return fmt.Errorf("replay from %s: %w; restore the databases that need it from a backup", from, err)
	}
	if err != nil {
		return fmt.Errorf("replay from %s: %w", from, err)
	}
	defer r.Close()
	started := time.Now()
	ctx := context.Background()
	pending := map[uint64][]journal.Record{}
	applied := 0
	for r.Position().Less(end) {
		rec, err := r.Next(ctx)
		if err != nil {
			return fmt.Errorf("replay at %s: %w", r.Position(), err)
		}
		if rec.Type != journal.RecordSet && rec.Type != journal.RecordKill {
			continue
		}
		pending[rec.TxnID] = append(pending[rec.TxnID], rec)
		if !rec.TxnEnd {
			continue
		}
		txn := pending[rec.TxnID]
		delete(pending, rec.TxnID)
		recEnd := r.Position()
		if err := s.applyReplayed(txn, recEnd); err != nil {
			return err
		}
		applied++
	}
	s.log.Info().Str("from", from.String()).Str("to", end.String()).Int("transactions", applied).
		Dur("took", time.Since(started)).Msg("journal replayed")
	return nil
}

// applyReplayed applies one replayed transaction to each database it touches that has not applied it yet.
func (s *Store) applyReplayed(txn []journal.Record, end journal.Position) error {
	byDB := map[string]*pebble.Batch{}
	defer func() {
		for _, b := range byDB {
			b.Close()
		}
	}()
	for _, rec := range txn {
		d, ok := s.dbs[rec.DB]
		if !ok || rec.Pos.Less(d.localFloor()) {
			continue
		}
		b := byDB[rec.DB]
		if b == nil {
			b = d.pdb.NewBatch()
			byDB[rec.DB] = b
		}
		var err error
		if rec.Type == journal.RecordSet {
			err = b.Set(dataKey(nil, rec.Key), rec.Value, nil)
		} else {
			err = b.Delete(dataKey(nil, rec.Key), nil)
		}
		if err != nil {
			return fmt.Errorf("replay %s into %s: %w", rec.Pos, rec.DB, err)
		}
	}
	for name, b := range byDB {
		if err := s.dbs[name].applyBatch(b, end, s.dbs[name].Mirror() != ""); err != nil {
			return err
		}
	}
	return nil
}

func (s *Store) catalogPath() string { return filepath.Join(s.opts.Dir, "catalog.json") }

// CreateOptions place a new database in a mirror.
type CreateOptions struct {
	// Mirror is the mirror the database belongs to ("" for the local journal); it must be attached.
	Mirror string
	// Marker makes the creation a journaled event: a create marker record is committed to the database's journal and the
	// database starts right after it (the mirror primary does this; other members find the marker in their copy).
	Marker bool
	// Start is where a database created without a marker starts applying its journal (zero: the journal's current end).
	Start journal.Position
}

// MarkerCreate is the key of the journal marker record that a mirror primary writes when it creates a mirrored database;
// the record's DB is the database, its value the incarnation.
const MarkerCreate = "create"

// Create makes a new, empty, mounted database on the local journal.
func (s *Store) Create(name string) (Info, error) {
	return s.CreateWith(name, CreateOptions{})
}

// CreateWith makes a new, empty, mounted database.
func (s *Store) CreateWith(name string, opts CreateOptions) (Info, error) {
	name, err := CanonicalDatabaseName(name)
	if err != nil {
		return Info{}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing {
		return Info{}, wire.ErrShuttingDown
	}
	if _, ok := s.cat.find(name); ok {
		return Info{}, fmt.Errorf("database %s already exists: %w", name, wire.ErrExists)
	}
	rel := filepath.Join("db", name)
	dir := filepath.Join(s.opts.Dir, rel)
	// A directory the catalog does not list is what a crash during create or delete leaves behind.
	if err := os.RemoveAll(dir); err != nil {
		return Info{}, fmt.Errorf("create database %s: clear %s: %w", name, dir, err)
	}
	var seed [8]byte
	if _, err := rand.Read(seed[:]); err != nil {
		return Info{}, err
	}
	e := catalogEntry{Name: name, Dir: rel, Mirror: opts.Mirror, Mounted: true, Created: s.opts.Now().UTC(), Incarnation: binary.BigEndian.Uint64(seed[:])}
	a := s.attachment(opts.Mirror)
	if a == nil {
		return Info{}, fmt.Errorf("create database %s: mirror %s is not active on this member", name, opts.Mirror)
	}
	start := opts.Start
	if opts.Marker {
		// The marker is committed (and, on a mirror, acknowledged by the active backup) before the database exists.
		end, err := a.Journal.Append([]journal.Record{{Type: journal.RecordMarker, TxnEnd: true, DB: name, Key: []byte(MarkerCreate),
			Value: binary.BigEndian.AppendUint64(nil, e.Incarnation), HasValue: true}})
		if err != nil {
			return Info{}, fmt.Errorf("create database %s: journal marker: %w", name, err)
		}
		if err := a.Journal.WaitDurable(context.Background(), end); err != nil {
			return Info{}, fmt.Errorf("create database %s: journal marker: %w", name, err)
		}
		start = end
	} else if start.IsZero() {
		start = a.Journal.AppendedEnd()
	}
	d, err := openDatabase(dir, name, opts.Mirror, e.Incarnation, true, start, a, s.cache, s.opts.Compression, s.log)
	if err != nil {
		return Info{}, err
	}
	next := s.cat
	next.Databases = append(slices.Clone(s.cat.Databases), e)
	if err := next.save(s.catalogPath()); err != nil {
		d.flushAndClose()
		return Info{}, fmt.Errorf("create database %s: %w", name, err)
	}
	s.cat = next
	s.dbs[name] = d
	s.log.Info().Str("db", name).Msg("database created")
	return s.infoLocked(e), nil
}

// Database returns a mounted database.
func (s *Store) Database(name string) (*Database, error) {
	canon, err := CanonicalDatabaseName(name)
	if err != nil {
		return nil, err
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	if d, ok := s.dbs[canon]; ok {
		return d, nil
	}
	if _, ok := s.cat.find(canon); ok {
		return nil, fmt.Errorf("database %s is dismounted: %w", canon, wire.ErrDatabaseDismounted)
	}
	return nil, fmt.Errorf("no database %s: %w", canon, wire.ErrNoSuchDatabase)
}

// Exec runs one transaction on the named database.
func (s *Store) Exec(ctx context.Context, db string, ops []wire.Op) ([]wire.Result, journal.Position, error) {
	d, err := s.Database(db)
	if err != nil {
		return nil, journal.Position{}, err
	}
	return d.Exec(ctx, ops, s.opts.MaxValueSize)
}

// List describes every database in the catalog, in name order.
func (s *Store) List() []Info {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make([]Info, 0, len(s.cat.Databases))
	for _, e := range s.cat.Databases {
		out = append(out, s.infoLocked(e))
	}
	slices.SortFunc(out, func(a, b Info) int {
		if a.Name < b.Name {
			return -1
		}
		if a.Name > b.Name {
			return 1
		}
		return 0
	})
	return out
}

// Get describes one database.
func (s *Store) Get(name string) (Info, error) {
	canon, err := CanonicalDatabaseName(name)
	if err != nil {
		return Info{}, err
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	i, ok := s.cat.find(canon)
	if !ok {
		return Info{}, fmt.Errorf("no database %s: %w", canon, wire.ErrNoSuchDatabase)
	}
	return s.infoLocked(s.cat.Databases[i]), nil
}

func (s *Store) infoLocked(e catalogEntry) Info {
	info := Info{Name: e.Name, Dir: filepath.Join(s.opts.Dir, e.Dir), Mounted: e.Mounted, Mirror: e.Mirror, Created: e.Created}
	if d, ok := s.dbs[e.Name]; ok {
		info.Applied = d.Applied()
		info.Bytes = d.pdb.Metrics().DiskSpaceUsage()
	}
	return info
}

// Mount opens a dismounted database. Mounting a mounted database is a no-op.
func (s *Store) Mount(name string) (Info, error) {
	return s.setMounted(name, true)
}

// Dismount flushes and closes a database; it keeps its directory and catalog entry, and refuses operations until mounted.
func (s *Store) Dismount(name string) (Info, error) {
	return s.setMounted(name, false)
}

func (s *Store) setMounted(name string, mount bool) (Info, error) {
	canon, err := CanonicalDatabaseName(name)
	if err != nil {
		return Info{}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	i, ok := s.cat.find(canon)
	if !ok {
		return Info{}, fmt.Errorf("no database %s: %w", canon, wire.ErrNoSuchDatabase)
	}
	e := s.cat.Databases[i]
	if e.Mounted == mount {
		return s.infoLocked(e), nil
	}
	if mount {
		d, err := openDatabase(filepath.Join(s.opts.Dir, e.Dir), e.Name, e.Mirror, e.Incarnation, false, journal.Position{}, s.attachment(e.Mirror), s.cache, s.opts.Compression, s.log)
		if err != nil {
			return Info{}, err
		}
		s.dbs[canon] = d
	} else {
		if err := s.dbs[canon].flushAndClose(); err != nil {
			return Info{}, err
		}
		delete(s.dbs, canon)
	}
	next := s.cat
	next.Databases = slices.Clone(s.cat.Databases)
	next.Databases[i].Mounted = mount
	if err := next.save(s.catalogPath()); err != nil {
		return Info{}, err
	}
	s.cat = next
	s.log.Info().Str("db", canon).Bool("mounted", mount).Msg("database mount state changed")
	return s.infoLocked(next.Databases[i]), nil
}

// Delete removes a database and its directory. The catalog is updated first, so a crash in between leaves only an unlisted
// directory, which the next create of that name clears.
func (s *Store) Delete(name string) error {
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
	e := s.cat.Databases[i]
	if d, ok := s.dbs[canon]; ok {
		if err := d.flushAndClose(); err != nil {
			return err
		}
		delete(s.dbs, canon)
	}
	next := s.cat
	next.Databases = slices.Delete(slices.Clone(s.cat.Databases), i, i+1)
	if err := next.save(s.catalogPath()); err != nil {
		return err
	}
	s.cat = next
	if err := os.RemoveAll(filepath.Join(s.opts.Dir, e.Dir)); err != nil {
		return fmt.Errorf("delete database %s: %w", canon, err)
	}
	s.log.Info().Str("db", canon).Msg("database deleted")
	return nil
}

// Forget removes a dismounted database from the catalog and leaves its directory in place, for a restore that replaces
// it (and may reuse its files); a crash afterwards leaves an unregistered directory, shown as a copy to activate.
func (s *Store) Forget(name string) error {
	canon, err := CanonicalDatabaseName(name)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	i, ok := s.cat.find(canon)
	if !ok {
		return nil
	}
	if s.cat.Databases[i].Mounted {
		return fmt.Errorf("database %s is mounted: dismount it first: %w", canon, wire.ErrExists)
	}
	next := s.cat
	next.Databases = slices.Delete(slices.Clone(s.cat.Databases), i, i+1)
	if err := next.save(s.catalogPath()); err != nil {
		return err
	}
	s.cat = next
	return nil
}

// Checkpoint writes a consistent copy of a mounted database into dest (which must not exist yet).
func (s *Store) Checkpoint(name, dest string) (Checkpoint, error) {
	d, err := s.Database(name)
	if err != nil {
		return Checkpoint{}, err
	}
	d.life.RLock()
	defer d.life.RUnlock()
	if d.closed {
		return Checkpoint{}, fmt.Errorf("database %s: %w", d.name, wire.ErrDatabaseDismounted)
	}
	return d.checkpoint(dest)
}

// PurgeFloor flushes every mounted database of the mirror ("" for the local journal) and returns the oldest position of that
// journal any of them still needs for recovery, or end when none needs anything older. The journal must not purge at or after it.
func (s *Store) PurgeFloor(mirror string, end journal.Position) (journal.Position, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	floor := end
	for _, d := range s.dbs {
		if mirror == "" && d.Mirror() != "" {
			// A read-write reporting async's local writes to a mirrored database need the local journal too.
			if l := d.localApplied(); !l.IsZero() && l.Less(floor) {
				floor = l
			}
			continue
		}
		if d.Mirror() != mirror {
			continue
		}
		applied, err := d.flush()
		if err != nil {
			return journal.Position{}, err
		}
		if applied.Less(floor) {
			floor = applied
		}
	}
	return floor, nil
}

// Close flushes and closes every database. Operations in flight finish first.
func (s *Store) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closing = true
	var errs []error
	for name, d := range s.dbs {
		if err := d.flushAndClose(); err != nil {
			errs = append(errs, err)
		}
		delete(s.dbs, name)
	}
	if s.cache != nil {
		s.cache.Unref()
		s.cache = nil
	}
	return errors.Join(errs...)
}

// Adopt registers a database directory that was copied into Dir/db/<NAME> from another member (a mirrored database's copy,
// its files taken while dismounted there): the copy keeps its identity and applied positions, and check may refuse it given
// the lowest journal position it still needs. The database is mounted; catching it up is the mirror's business.
func (s *Store) Adopt(name, mirror string, check func(applied journal.Position) error) (Info, error) {
	name, err := CanonicalDatabaseName(name)
	if err != nil {
		return Info{}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.cat.find(name); ok {
		return Info{}, fmt.Errorf("database %s already exists on this member: %w", name, wire.ErrExists)
	}
	rel := filepath.Join("db", name)
	dir := filepath.Join(s.opts.Dir, rel)
	if desc, err := pebble.Peek(dir, vfs.Default); err != nil || !desc.Exists {
		return Info{}, fmt.Errorf("no database copy in %s: copy the directory of a dismounted copy of %s there first: %w", dir, name, wire.ErrNoSuchDatabase)
	}
	a := s.attachment(mirror)
	if a == nil {
		return Info{}, fmt.Errorf("adopt database %s: mirror %s is not active on this member", name, mirror)
	}
	d, err := openDatabase(dir, name, mirror, 0, false, journal.Position{}, a, s.cache, s.opts.Compression, s.log)
	if err != nil {
		return Info{}, err
	}
	if err := check(d.Applied()); err != nil {
		d.flushAndClose()
		return Info{}, err
	}
	e := catalogEntry{Name: name, Dir: rel, Mirror: mirror, Mounted: true, Created: s.opts.Now().UTC(), Incarnation: d.incarnation}
	next := s.cat
	next.Databases = append(slices.Clone(s.cat.Databases), e)
	if err := next.save(s.catalogPath()); err != nil {
		d.flushAndClose()
		return Info{}, err
	}
	s.cat = next
	s.dbs[name] = d
	s.log.Info().Str("db", name).Str("mirror", mirror).Str("applied", d.Applied().String()).Msg("database copy adopted")
	return s.infoLocked(e), nil
}

// Unregistered lists the database directories under Dir/db that the catalog does not know: copies placed there to be
// activated (or leftovers of an interrupted create or delete).
func (s *Store) Unregistered() []string {
	entries, err := os.ReadDir(filepath.Join(s.opts.Dir, "db"))
	if err != nil {
		return nil
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	var out []string
	for _, e := range entries {
		if _, known := s.cat.find(e.Name()); e.IsDir() && !known && validName(e.Name()) {
			out = append(out, e.Name())
		}
	}
	return out
}

// validName reports whether a directory name could be a database's (work directories such as NAME.restore are not).
func validName(name string) bool {
	canon, err := CanonicalDatabaseName(name)
	return err == nil && canon == name
}
