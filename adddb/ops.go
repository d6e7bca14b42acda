// Package adddb brings an existing database — one holding data written before it joined the mirror — into a mirror on
// every member, by one of three methods: a backup of the primary's copy staged in a directory or S3 and restored on each
// member, a file copy streamed member to member, or the members' automatic download. It builds the plan `migrate add-db`
// shows and executes (package plans), and offers each operation on its own for the other migrate commands.
package adddb

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/mirrorkit/mirrorkit/backup"
	"github.com/mirrorkit/mirrorkit/engine/journal"
	"github.com/mirrorkit/mirrorkit/engine/mirror"
	"github.com/mirrorkit/mirrorkit/engine/store"
	"github.com/mirrorkit/mirrorkit/internal/mirrorctl"
	"github.com/mirrorkit/mirrorkit/restore"
)

// Progress receives bytes done of a total during a long operation.
type Progress func(done, total int64)

// BackupSource picks the member to take a backup from: the one named, else — to spare the primary — the backup or an
// async whose copy is dejournaling, else the primary.
func BackupSource(ctx context.Context, f *mirrorctl.Fleet, db, from string) (*mirrorctl.Member, error) {
	if from != "" {
		return f.Member(from)
	}
	for _, m := range f.Others() {
		if st, err := m.DatabaseStatus(ctx, db); err == nil && st.Status == mirror.DBDejournaling {
			return m, nil
		}
	}
	return f.PrimaryMember()
}

// Backup takes a backup of db from the member into the target.
func Backup(ctx context.Context, src *mirrorctl.Member, db string, tgt backup.Target, opts backup.Options) (*backup.Manifest, error) {
	snap := src.Snapshot(db)
	defer snap.Close()
	m, err := backup.Run(ctx, snap, tgt, opts)
	if errors.Is(err, backup.ErrAlreadyComplete) && opts.ID != "" {
		return backup.LoadManifest(ctx, tgt, db, opts.ID)
	}
	return m, err
}

// NewBackupID makes a backup ID of the form the backup package uses (sortable time, random suffix).
func NewBackupID(now time.Time) string {
	var r [2]byte
	_, _ = rand.Read(r[:])
	return now.UTC().Format("20060102T150405Z") + "-" + hex.EncodeToString(r[:])
}

// ErrPurged is returned when the mirror journal a copy would catch up from is no longer on the primary.
var ErrPurged = errors.New("the mirror journal from the copy's position is purged")

// Restorable reports whether a copy at pos can still catch up in the mirror: the primary must hold the mirror journal
// from there.
func Restorable(ctx context.Context, f *mirrorctl.Fleet, pos journal.Position) error {
	p, err := f.PrimaryMember()
	if err != nil {
		return err
	}
	st, err := p.Local(ctx)
	if err != nil {
		return err
	}
	first, err := journal.ParsePosition(st.JournalFirst)
	if err != nil {
		return fmt.Errorf("primary %s reports journal start %q: %w", p.Name, st.JournalFirst, err)
	}
	if pos.Less(first) {
		return fmt.Errorf("%w: the copy is at %s but the primary %s's mirror journal starts at %s; take a newer backup", ErrPurged, pos, p.Name, first)
	}
	return nil
}

// Restore restores a backup onto a member (not the primary) and activates it there; the copy then catches up.
func Restore(ctx context.Context, f *mirrorctl.Fleet, to *mirrorctl.Member, tgt backup.Target, m *backup.Manifest, delta bool, opts restore.Options) (store.Info, error) {
	if to.Name == f.Primary {
		return store.Info{}, fmt.Errorf("member %s is the primary of mirror %s: its copy is the original; restore onto the other members", to.Name, f.Mirror)
	}
	if m.Mirror != "" && !strings.EqualFold(m.Mirror, f.Mirror) {
		return store.Info{}, fmt.Errorf("backup %s was taken in mirror %s, not %s", m.Name(), m.Mirror, f.Mirror)
	}
	if err := Restorable(ctx, f, m.Position); err != nil {
		return store.Info{}, fmt.Errorf("backup %s: %w", m.Name(), err)
	}
	sink := to.Incoming(m.Database, delta)
	if err := restore.Run(ctx, tgt, m, sink, opts); err != nil {
		return store.Info{}, err
	}
	return sink.Info, nil
}

// Copy has member to fetch a copy of db from member from (no staging) and waits until it is dejournaling.
func Copy(ctx context.Context, from, to *mirrorctl.Member, db string, progress Progress) error {
	if _, err := to.Download(ctx, db, from.Name); err != nil {
		return err
	}
	return WaitDejournaling(ctx, to, db, progress)
}

// WaitDejournaling waits until the member's copy of db is activated and caught up (Dejournaling), reporting download
// progress on the way. A copy stopped by an error ends the wait with that error.
func WaitDejournaling(ctx context.Context, m *mirrorctl.Member, db string, progress Progress) error {
	var last mirror.DatabaseStatus
	for {
		st, err := m.DatabaseStatus(ctx, db)
		if err == nil {
			last = st
			switch st.Status {
			case mirror.DBDejournaling:
				return nil
			case mirror.DBStopped:
				if st.Error != "" {
					return fmt.Errorf("member %s: dejournaling of %s stopped: %s", m.Name, db, st.Error)
				}
			}
			if progress != nil && st.Status == mirror.DBDownloading {
				progress(st.BytesDone, st.BytesTotal)
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("member %s: %s is %q (%s): %w", m.Name, db, last.Status, last.Error, ctx.Err())
		case <-time.After(200 * time.Millisecond):
		}
	}
}
