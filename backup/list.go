package backup

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/mirrorkit/mirrorkit/engine/journal"
	"github.com/mirrorkit/mirrorkit/engine/store"
)

// ErrNoBackup: the target holds no complete backup of the database.
var ErrNoBackup = errors.New("no complete backup")

// Entry is one backup as List shows it.
type Entry struct {
	ID          string           `json:"id"`
	Database    string           `json:"database"`
	Created     time.Time        `json:"created"`
	Position    journal.Position `json:"position"`
	Bytes       int64            `json:"bytes"`
	StoredBytes int64            `json:"stored_bytes"`
	Encrypted   bool             `json:"encrypted"`
	// Complete is set for a backup with a valid manifest. An incomplete one is running, was interrupted, or is left over
	// from an interrupted prune; its StoredBytes is what its objects take.
	Complete bool `json:"complete"`
	// Err is why the manifest of a backup could not be used (damaged or edited): such a backup cannot be restored.
	Err error `json:"-"`
}

// Name is DB/ID.
func (e Entry) Name() string { return e.Database + "/" + e.ID }

// LoadManifest reads and checks the manifest of backup db/id.
func LoadManifest(ctx context.Context, tgt Target, db, id string) (*Manifest, error) {
	canon, err := store.CanonicalDatabaseName(db)
	if err != nil {
		return nil, err
	}
	if err := checkID(id); err != nil {
		return nil, err
	}
	key := manifestKey(canon, id)
	data, err := getAll(ctx, tgt, key)
	if errors.Is(err, ErrNotFound) {
		return nil, fmt.Errorf("backup %s/%s has no manifest in the target: it does not exist or is incomplete (see list): %w", canon, id, err)
	}
	if err != nil {
		return nil, fmt.Errorf("backup %s/%s: %w", canon, id, err)
	}
	m, err := DecodeManifest(data)
	if err != nil {
		return nil, err
	}
	if m.Database != canon || m.ID != id {
		return nil, fmt.Errorf("manifest %s describes backup %s (moved or edited); do not restore it: %w", key, m.Name(), ErrManifestInvalid)
	}
	return m, nil
}

// Latest returns the manifest of the newest complete backup of db.
func Latest(ctx context.Context, tgt Target, db string) (*Manifest, error) {
	canon, err := store.CanonicalDatabaseName(db)
	if err != nil {
		return nil, err
	}
	entries, err := List(ctx, tgt, canon)
	if err != nil {
		return nil, err
	}
	for _, e := range slices.Backward(entries) {
		if e.Complete {
			return LoadManifest(ctx, tgt, e.Database, e.ID)
		}
	}
	return nil, fmt.Errorf("database %s: %w in the target", canon, ErrNoBackup)
}

// List describes every backup of db ("" for all databases), sorted by database then creation time. A damaged manifest
// gives an entry with Err set; a target that cannot be read fails the listing.
func List(ctx context.Context, tgt Target, db string) ([]Entry, error) {
	prefix := ""
	if db != "" {
		canon, err := store.CanonicalDatabaseName(db)
		if err != nil {
			return nil, err
		}
		prefix = canon + "/"
	}
	objs, err := tgt.List(ctx, prefix)
	if err != nil {
		return nil, fmt.Errorf("list backups: list %q: %w", prefix, err)
	}
	type group struct {
		db, id             string
		manifest, progress bool
		storedBytes        int64
	}
	var groups []*group
	byName := map[string]*group{}
	for _, o := range objs {
		parts := strings.SplitN(o.Key, "/", 3)
		if len(parts) != 3 || checkID(parts[1]) != nil {
			continue
		}
		if canon, err := store.CanonicalDatabaseName(parts[0]); err != nil || canon != parts[0] {
			continue
		}
		g := byName[parts[0]+"/"+parts[1]]
		if g == nil {
			g = &group{db: parts[0], id: parts[1]}
			byName[parts[0]+"/"+parts[1]] = g
			groups = append(groups, g)
		}
		g.storedBytes += o.Size
		g.manifest = g.manifest || parts[2] == "manifest.json"
		g.progress = g.progress || parts[2] == "progress.json"
	}
	entries := make([]Entry, 0, len(groups))
	for _, g := range groups {
		e := Entry{ID: g.id, Database: g.db, StoredBytes: g.storedBytes}
		e.Created, _ = idTime(g.id)
		switch {
		case g.manifest:
			m, err := LoadManifest(ctx, tgt, g.db, g.id)
			if errors.Is(err, ErrManifestTampered) || errors.Is(err, ErrManifestInvalid) {
				e.Err = err
				break
			}
			if err != nil {
				return nil, fmt.Errorf("list backups: %w", err)
			}
			e = Entry{ID: m.ID, Database: m.Database, Created: m.Created, Position: m.Position, Bytes: m.Bytes,
				StoredBytes: m.StoredBytes, Encrypted: m.Encrypted(), Complete: true}
		case g.progress:
			p, err := loadProgress(ctx, tgt, g.db, g.id)
			if err != nil && !errors.Is(err, errProgressDamaged) {
				return nil, fmt.Errorf("list backups: %w", err)
			}
			if p != nil {
				e.Created, e.Encrypted = p.Started, p.Encryption != nil
			}
		}
		entries = append(entries, e)
	}
	slices.SortFunc(entries, func(a, b Entry) int {
		return cmp.Or(cmp.Compare(a.Database, b.Database), a.Created.Compare(b.Created), cmp.Compare(a.ID, b.ID))
	})
	return entries, nil
}

// PruneRule says which complete backups to keep: always the newest Keep (at least 1); of the others, those created within
// OlderThan of now (0: none).
type PruneRule struct {
	Keep      int
	OlderThan time.Duration
}

// Prune deletes, per database, the complete backups the rule does not keep, and the incomplete or damaged backups older
// than the newest complete one (a database without a complete backup loses nothing). It returns what it deletes, or with
// confirm false what it would delete, and deletes each backup's manifest first so it stops being restorable before its
// chunks go.
func Prune(ctx context.Context, tgt Target, db string, rule PruneRule, now time.Time, confirm bool) ([]Entry, error) {
	if rule.Keep < 1 {
		return nil, fmt.Errorf("prune: keep %d: must be at least 1, the newest complete backup is never pruned", rule.Keep)
	}
	if rule.OlderThan < 0 {
		return nil, fmt.Errorf("prune: older-than %s is negative", rule.OlderThan)
	}
	entries, err := List(ctx, tgt, db)
	if err != nil {
		return nil, err
	}
	var victims []Entry
	for start := 0; start < len(entries); {
		end := start
		for end < len(entries) && entries[end].Database == entries[start].Database {
			end++
		}
		victims = append(victims, pruneDatabase(entries[start:end], rule, now)...)
		start = end
	}
	if !confirm {
		return victims, nil
	}
	for _, v := range victims {
		if err := deleteBackup(ctx, tgt, v.Database, v.ID); err != nil {
			return nil, err
		}
	}
	return victims, nil
}

// pruneDatabase picks the victims among one database's entries, sorted oldest first.
func pruneDatabase(entries []Entry, rule PruneRule, now time.Time) []Entry {
	var complete []int
	for i, e := range entries {
		if e.Complete {
			complete = append(complete, i)
		}
	}
	if len(complete) == 0 {
		return nil
	}
	newest := entries[complete[len(complete)-1]]
	victim := make([]bool, len(entries))
	for n, i := range slices.Backward(complete) {
		rank := len(complete) - 1 - n // 0 for the newest
		old := rule.OlderThan == 0 || entries[i].Created.Before(now.Add(-rule.OlderThan))
		victim[i] = rank >= rule.Keep && old
	}
	var out []Entry
	for i, e := range entries {
		if victim[i] || (!e.Complete && e.Created.Before(newest.Created)) {
			out = append(out, e)
		}
	}
	return out
}

// deleteBackup removes one backup: the manifest first, then the chunks, the progress record last so an interrupted
// delete is still listed and pruned again.
func deleteBackup(ctx context.Context, tgt Target, db, id string) error {
	keys, err := listKeys(ctx, tgt, backupPrefix(db, id))
	if err != nil {
		return fmt.Errorf("prune %s/%s: %w", db, id, err)
	}
	var rest []string
	for _, k := range keys {
		if k != manifestKey(db, id) && k != progressKey(db, id) {
			rest = append(rest, k)
		}
	}
	for _, batch := range [][]string{{manifestKey(db, id)}, rest, {progressKey(db, id)}} {
		if len(batch) == 0 {
			continue
		}
		if err := tgt.Delete(ctx, batch...); err != nil {
			return fmt.Errorf("prune %s/%s: delete %s…: %w", db, id, batch[0], err)
		}
	}
	return nil
}
