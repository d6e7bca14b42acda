package store

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/mirrorkit/mirrorkit/engine/journal"
	"github.com/mirrorkit/mirrorkit/engine/wire"
)

// An existing local database moves to a mirror journal: its data stays, its applied position becomes the one right after
// the add marker, later writes go to the mirror journal, and after a crash that left the catalog behind, the directory's
// own record wins.
func TestAttachToMirror(t *testing.T) {
	dir := t.TempDir()
	local, mj, log := openJournals(t, dir)
	s, err := Open(Options{Dir: dir, Journal: local, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Create("OLD"); err != nil {
		t.Fatal(err)
	}
	set(t, s, "OLD", "^A(1)", "before")
	var recorded journal.Position
	record := func(pos journal.Position) error { recorded = pos; return nil }
	if _, err := s.AttachToMirror("OLD", "MIR", record); err == nil || !strings.Contains(err.Error(), "not active") {
		t.Fatalf("attach to a mirror that is not attached: %v", err)
	}
	s.AttachMirror("MIR", Attachment{Journal: mj})
	info, err := s.AttachToMirror("OLD", "MIR", record)
	if err != nil {
		t.Fatal(err)
	}
	if info.Mirror != "MIR" || recorded != mj.DurableEnd() || info.Applied != recorded {
		t.Fatalf("after attach: %+v, recorded %s, mirror journal ends at %s", info, recorded, mj.DurableEnd())
	}
	var marker journal.Record
	if err := journal.Dump(vfs.Default, filepath.Join(dir, "mirror"), journal.Position{}, func(r journal.Record) error {
		marker = r
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if marker.Type != journal.RecordMarker || marker.DB != "OLD" || string(marker.Key) != MarkerAdd {
		t.Fatalf("mirror journal's last record: %+v", marker)
	}
	// Repeating it changes nothing and reports the same position.
	again := journal.Position{}
	if _, err := s.AttachToMirror("OLD", "MIR", func(p journal.Position) error { again = p; return nil }); err != nil || again != recorded {
		t.Fatalf("second attach: %v at %s, want %s", err, again, recorded)
	}
	if _, err := s.AttachToMirror("OLD", "OTHER", record); err == nil {
		t.Fatal("attach to a second mirror succeeded")
	}
	set(t, s, "OLD", "^A(2)", "after")
	if !recorded.Less(mj.DurableEnd()) {
		t.Fatalf("a write after the attach did not go to the mirror journal (ends at %s)", mj.DurableEnd())
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	// A crash between flushing the database and saving the catalog: the catalog still says local.
	catPath := filepath.Join(dir, "catalog.json")
	data, err := os.ReadFile(catPath)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(catPath, []byte(strings.Replace(string(data), `"mirror": "MIR",`, "", 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	s, err = Open(Options{Dir: dir, Journal: local, Logger: log, Mirrors: map[string]Attachment{"MIR": {Journal: mj}}})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	info, err = s.Get("OLD")
	if err != nil || info.Mirror != "MIR" {
		t.Fatalf("after reopening: %+v %v", info, err)
	}
	for ref, want := range map[string]string{"^A(1)": "before", "^A(2)": "after"} {
		if v, ok := getv(t, s, "OLD", ref); !ok || v != want {
			t.Fatalf("%s = %q %v, want %q", ref, v, ok, want)
		}
	}
	if err := s.Detach("OLD"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.AttachToMirror("NOPE", "MIR", record); err == nil || !strings.Contains(err.Error(), wire.ErrNoSuchDatabase.Error()) {
		t.Fatalf("attach of a missing database: %v", err)
	}
}

// A database nobody writes does not hold back purging: AdvanceIdle moves it to the journal's end, and after a reopen it
// still has its data and needs nothing of the journal before that end.
func TestAdvanceIdle(t *testing.T) {
	dir := t.TempDir()
	local, _, log := openJournals(t, dir)
	s, err := Open(Options{Dir: dir, Journal: local, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	for _, db := range []string{"IDLE", "BUSY"} {
		if _, err := s.Create(db); err != nil {
			t.Fatal(err)
		}
	}
	set(t, s, "IDLE", "^X", "kept")
	for i := range 50 {
		set(t, s, "BUSY", fmt.Sprintf("^Y(%d)", i), "v")
	}
	end := local.AppendedEnd()
	if floor, err := s.PurgeFloor("", end); err != nil || !floor.Less(end) {
		t.Fatalf("before: floor %s (%v), want below the end %s: the idle database holds it", floor, err, end)
	}
	if err := s.AdvanceIdle("", end); err != nil {
		t.Fatal(err)
	}
	if floor, err := s.PurgeFloor("", end); err != nil || floor != end {
		t.Fatalf("after: floor %s (%v), want %s", floor, err, end)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s, err = Open(Options{Dir: dir, Journal: local, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	info, err := s.Get("IDLE")
	if err != nil || info.Applied != end {
		t.Fatalf("IDLE after reopen: %+v %v, want applied %s", info, err, end)
	}
	if v, ok := getv(t, s, "IDLE", "^X"); !ok || v != "kept" {
		t.Fatalf("IDLE ^X = %q %v", v, ok)
	}
}
