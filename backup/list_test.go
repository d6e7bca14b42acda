package backup_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mirrorkit/mirrorkit/backup"
	"github.com/mirrorkit/mirrorkit/backup/backuptest"
)

// populated is a target holding backups of two databases in every state List knows.
type populated struct {
	mem                                *backuptest.MemTarget
	a1, a2, a3, a4, a5, b1             string // IDs
	manifestA1, manifestA3, manifestB1 *backup.Manifest
}

func populate(t *testing.T) populated {
	t.Helper()
	fx := small.Fixture(t)
	other := backuptest.Checkpoint(t, "Billing", 20<<10, backuptest.CheckpointOptions{})
	mem := backuptest.NewMemTarget()
	at := func(h int) time.Time { return time.Date(2026, 3, 1, h, 0, 0, 0, time.UTC) }
	explicit := func(h int) string {
		id, err := backup.NewID(at(h))
		if err != nil {
			t.Fatal(err)
		}
		return id
	}
	var p populated
	p.mem = mem
	p.manifestA1 = backuptest.Run(t, fx, mem, backup.Options{Now: fixedClock(at(0))})
	p.a1 = p.manifestA1.ID
	p.a2 = interrupt(t, fx, mem, 3, backup.Options{Now: fixedClock(at(1)), ChunkSize: 4 << 10})
	p.a5 = backuptest.Run(t, fx, mem, backup.Options{Now: fixedClock(at(2)), ID: explicit(2)}).ID
	mem.Edit(t, backup.ManifestKey(fx.DB, p.a5), func(b []byte) []byte { return bytes.Replace(b, []byte(`"level": 3`), []byte(`"level": 4`), 1) })
	p.manifestA3 = backuptest.Run(t, fx, mem, backup.Options{Now: fixedClock(at(3)), ID: explicit(3), Key: backuptest.Key(5)})
	p.a3 = p.manifestA3.ID
	p.a4 = interrupt(t, fx, mem, 3, backup.Options{Now: fixedClock(at(4)), ID: explicit(4), ChunkSize: 4 << 10})
	p.manifestB1 = backuptest.Run(t, other, mem, backup.Options{Now: fixedClock(at(0))})
	p.b1 = p.manifestB1.ID
	return p
}

func TestList(t *testing.T) {
	p := populate(t)
	entries, err := backup.List(context.Background(), p.mem, "")
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range entries {
		state := "incomplete"
		switch {
		case e.Err != nil:
			state = "damaged"
		case e.Complete:
			state = "complete"
		}
		got = append(got, e.Database+"/"+e.ID+" "+state)
	}
	want := []string{
		"BILLING/" + p.b1 + " complete",
		"ORDERS/" + p.a1 + " complete",
		"ORDERS/" + p.a2 + " incomplete",
		"ORDERS/" + p.a5 + " damaged",
		"ORDERS/" + p.a3 + " complete",
		"ORDERS/" + p.a4 + " incomplete",
	}
	if !slices.Equal(got, want) {
		t.Fatalf("List:\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	a1, a3, a5 := entries[1], entries[4], entries[3]
	m := p.manifestA1
	if a1.Position != m.Position || a1.Bytes != m.Bytes || a1.StoredBytes != m.StoredBytes || a1.Encrypted || !a1.Created.Equal(m.Created) {
		t.Fatalf("entry %+v for manifest %+v", a1, m)
	}
	if !a3.Encrypted {
		t.Fatal("encrypted backup listed as plain")
	}
	if !errors.Is(a5.Err, backup.ErrManifestTampered) || !strings.Contains(a5.Err.Error(), p.a5) {
		t.Fatalf("damaged entry error: %v", a5.Err)
	}
	if entries[2].Created.Hour() != 1 || entries[2].StoredBytes == 0 {
		t.Fatalf("incomplete entry %+v", entries[2])
	}

	only, err := backup.List(context.Background(), p.mem, "orders")
	if err != nil || len(only) != 5 || only[0].Database != "ORDERS" {
		t.Fatalf("List(orders) = %d entries, %v", len(only), err)
	}
	latest, err := backup.Latest(context.Background(), p.mem, "Orders")
	if err != nil || latest.ID != p.a3 {
		t.Fatalf("Latest = %v, %v; want %s", latest, err, p.a3)
	}
	if _, err := backup.Latest(context.Background(), p.mem, "NOPE"); !errors.Is(err, backup.ErrNoBackup) {
		t.Fatalf("Latest of a database without backups: %v", err)
	}
	if _, err := backup.LoadManifest(context.Background(), p.mem, "ORDERS", p.a2); !errors.Is(err, backup.ErrNotFound) || !strings.Contains(err.Error(), "incomplete") {
		t.Fatalf("LoadManifest of an incomplete backup: %v", err)
	}
	// A target that cannot be read fails the listing instead of showing damage.
	if _, err := backup.List(context.Background(), backuptest.FailAfterPuts(p.mem, -1), ""); !errors.Is(err, backuptest.ErrUnreachable) {
		t.Fatalf("List on an unreachable target: %v", err)
	}
}

func TestPrune(t *testing.T) {
	p := populate(t)
	ctx := context.Background()
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	before := p.mem.Keys(t, "")
	names := func(entries []backup.Entry) []string {
		var out []string
		for _, e := range entries {
			out = append(out, e.ID)
		}
		return out
	}

	for _, tc := range []struct {
		name string
		db   string
		rule backup.PruneRule
		want []string
	}{
		{"keep newest", "ORDERS", backup.PruneRule{Keep: 1}, []string{p.a1, p.a2, p.a5}},
		{"all databases", "", backup.PruneRule{Keep: 1}, []string{p.a1, p.a2, p.a5}},
		{"keep two", "orders", backup.PruneRule{Keep: 2}, []string{p.a2, p.a5}},
		{"only old ones", "ORDERS", backup.PruneRule{Keep: 1, OlderThan: 11*time.Hour + 30*time.Minute}, []string{p.a1, p.a2, p.a5}},
		{"none old enough", "ORDERS", backup.PruneRule{Keep: 1, OlderThan: 100 * time.Hour}, []string{p.a2, p.a5}},
		{"only one complete", "BILLING", backup.PruneRule{Keep: 1}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := backup.Prune(ctx, p.mem, tc.db, tc.rule, now, false)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(names(got), tc.want) {
				t.Fatalf("dry run would prune %v, want %v", names(got), tc.want)
			}
			if after := p.mem.Keys(t, ""); !slices.Equal(after, before) {
				t.Fatal("a dry run deleted objects")
			}
		})
	}
	if _, err := backup.Prune(ctx, p.mem, "ORDERS", backup.PruneRule{Keep: 0}, now, true); err == nil || !strings.Contains(err.Error(), "at least 1") {
		t.Fatalf("keep 0: %v", err)
	}

	got, err := backup.Prune(ctx, p.mem, "", backup.PruneRule{Keep: 1}, now, true)
	if err != nil {
		t.Fatal(err)
	}
	var wantLeft []string
	for _, k := range before {
		if !strings.HasPrefix(k, "ORDERS/"+p.a1+"/") && !strings.HasPrefix(k, "ORDERS/"+p.a2+"/") && !strings.HasPrefix(k, "ORDERS/"+p.a5+"/") {
			wantLeft = append(wantLeft, k)
		}
	}
	if after := p.mem.Keys(t, ""); !slices.Equal(after, wantLeft) || len(got) != 3 {
		t.Fatalf("after prune %d keys, want %d (pruned %v)", len(after), len(wantLeft), names(got))
	}
	if err := backup.VerifyChunks(ctx, p.mem, p.manifestA3, backuptest.Key(5), 2); err != nil {
		t.Fatalf("kept backup damaged by prune: %v", err)
	}
	if err := backup.VerifyChunks(ctx, p.mem, p.manifestB1, nil, 2); err != nil {
		t.Fatalf("other database's backup damaged by prune: %v", err)
	}
}

func TestPruneDeletesManifestFirst(t *testing.T) {
	fx := small.Fixture(t)
	mem := backuptest.NewMemTarget()
	old := backuptest.Run(t, fx, mem, backup.Options{Now: fixedClock(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))})
	backuptest.Run(t, fx, mem, backup.Options{Now: fixedClock(time.Date(2026, 1, 2, 0, 0, 0, 0, time.UTC))})
	// The target dies right after the first delete: the old backup must no longer look restorable.
	faulty := &dyingDeleter{Target: mem}
	if _, err := backup.Prune(context.Background(), faulty, fx.DB, backup.PruneRule{Keep: 1}, time.Now(), true); !errors.Is(err, backuptest.ErrUnreachable) {
		t.Fatalf("prune on a dying target: %v", err)
	}
	if _, err := backup.LoadManifest(context.Background(), mem, fx.DB, old.ID); !errors.Is(err, backup.ErrNotFound) {
		t.Fatalf("manifest of a half-pruned backup: %v", err)
	}
	entries, _ := backup.List(context.Background(), mem, fx.DB)
	if len(entries) != 2 || entries[0].Complete {
		t.Fatalf("half-pruned backup listed as %+v", entries[0])
	}
	if got, err := backup.Prune(context.Background(), mem, fx.DB, backup.PruneRule{Keep: 1}, time.Now(), true); err != nil || len(got) != 1 {
		t.Fatalf("second prune: %v, %v", got, err)
	}
	if keys := mem.Keys(t, backup.BackupPrefix(fx.DB, old.ID)); len(keys) != 0 {
		t.Fatalf("left after the second prune: %v", keys)
	}
}

// dyingDeleter deletes once, then fails.
type dyingDeleter struct {
	backup.Target
	deletes int
}

func (t *dyingDeleter) Delete(ctx context.Context, keys ...string) error {
	t.deletes++
	if t.deletes > 1 {
		return backuptest.ErrUnreachable
	}
	return t.Target.Delete(ctx, keys...)
}

func TestVerify(t *testing.T) {
	fx := small.Fixture(t)
	ctx := context.Background()
	for _, tc := range []struct {
		name           string
		damage         func(mem *backuptest.MemTarget, key string)
		level1, level2 error
	}{
		{"intact", func(*backuptest.MemTarget, string) {}, nil, nil},
		{"same-size corruption", func(mem *backuptest.MemTarget, key string) {
			mem.Edit(t, key, func(b []byte) []byte { b[len(b)/2] ^= 0xff; return b })
		}, nil, backup.ErrCorruptChunk},
		{"truncated", func(mem *backuptest.MemTarget, key string) {
			mem.Edit(t, key, func(b []byte) []byte { return b[:len(b)-1] })
		}, backup.ErrCorruptChunk, backup.ErrCorruptChunk},
		{"missing", func(mem *backuptest.MemTarget, key string) { mem.Delete(ctx, key) }, backup.ErrMissingChunk, backup.ErrMissingChunk},
	} {
		for _, key := range [][]byte{nil, backuptest.Key(9)} {
			t.Run(fmt.Sprintf("%s encrypted=%v", tc.name, key != nil), func(t *testing.T) {
				mem := backuptest.NewMemTarget()
				m := backuptest.Run(t, fx, mem, backup.Options{ChunkSize: 8 << 10, Key: key})
				refs := backup.DistinctChunks(m)
				ref := refs[len(refs)/2]
				chunk := m.ChunkKey(ref.Chunk.SHA256)
				tc.damage(mem, chunk)
				err1 := backup.VerifyObjects(ctx, mem, m)
				err2 := backup.VerifyChunks(ctx, mem, m, key, 3)
				if !errors.Is(err1, tc.level1) || (tc.level1 == nil) != (err1 == nil) {
					t.Fatalf("level 1: %v, want %v", err1, tc.level1)
				}
				if !errors.Is(err2, tc.level2) || (tc.level2 == nil) != (err2 == nil) {
					t.Fatalf("level 2: %v, want %v", err2, tc.level2)
				}
				for _, err := range []error{err1, err2} {
					if err != nil && (!strings.Contains(err.Error(), chunk) || !strings.Contains(err.Error(), ref.File.Name)) {
						t.Fatalf("error does not name chunk %s and file %s: %v", chunk, ref.File.Name, err)
					}
				}
			})
		}
	}
	mem := backuptest.NewMemTarget()
	m := backuptest.Run(t, fx, mem, backup.Options{Key: backuptest.Key(9)})
	if err := backup.VerifyChunks(ctx, mem, m, nil, 1); !errors.Is(err, backup.ErrKeyRequired) {
		t.Fatalf("verify of an encrypted backup without key: %v", err)
	}
}
