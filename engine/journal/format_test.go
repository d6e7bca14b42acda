package journal

import (
	"bytes"
	"errors"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// withMaxRecordVersion runs the rest of the test as a build of a lower format level would.
func withMaxRecordVersion(t *testing.T, v uint8) {
	t.Helper()
	old := MaxRecordVersion()
	SetMaxRecordVersion(v)
	t.Cleanup(func() { SetMaxRecordVersion(old) })
}

func TestRecordV2RoundTrip(t *testing.T) {
	r := setRecord("db", "k", "v")
	r.Pos = Position{Epoch: 3, Segment: 2, Offset: HeaderSize}
	r.Time = 1234
	r.Version, r.Origin = RecordV2, "member-b"
	b := AppendRecord(nil, &r)
	if len(b) != r.Size() {
		t.Fatalf("encoded %d bytes, Size says %d", len(b), r.Size())
	}
	got, n, err := DecodeRecord(b)
	if err != nil || n != len(b) {
		t.Fatalf("decode: %v (%d of %d bytes)", err, n, len(b))
	}
	if got.Version != RecordV2 || got.Origin != "member-b" || string(got.Value) != "v" || got.Pos != r.Pos {
		t.Fatalf("decoded %+v", got)
	}
	if again := AppendRecord(nil, &got); !bytes.Equal(again, b) {
		t.Fatal("a decoded version 2 record does not re-encode to the same bytes")
	}
	// A build of format level 1 refuses it with the version named, never as corruption.
	withMaxRecordVersion(t, RecordV1)
	if _, _, err := DecodeRecord(b); !errors.Is(err, ErrUnsupportedVersion) {
		t.Fatalf("level 1 decode: %v, want ErrUnsupportedVersion", err)
	}
	// Nor may it write one, or an origin on a version 1 record.
	if err := checkAppendable(&r); !errors.Is(err, ErrInvalidRecord) {
		t.Fatalf("level 1 append of a v2 record: %v", err)
	}
	r.Version = 0
	if err := checkAppendable(&r); !errors.Is(err, ErrInvalidRecord) {
		t.Fatalf("origin on a v1 record: %v", err)
	}
}

func TestSetRecordFormatStampsAppends(t *testing.T) {
	fs := vfs.NewMem()
	j := openTest(t, testDir, testOptions(t, fs))
	commit(t, j, setRecord("db", "a", "1"))
	if err := j.SetRecordFormat(RecordV2, "A"); err != nil {
		t.Fatal(err)
	}
	commit(t, j, setRecord("db", "b", "2"))
	recs := readAll(t, j)
	if len(recs) != 2 || recs[0].Version != 0 || recs[1].Version != RecordV2 || recs[1].Origin != "A" {
		t.Fatalf("records %+v", recs)
	}
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	// The newer build reopens it; a build of level 1 refuses to open it (it must not mistake the records for a torn
	// tail and cut them) and leaves the files as they were.
	j2, err := Open(testDir, testOptions(t, fs))
	if err != nil {
		t.Fatalf("reopen: %v", err)
	}
	if got := readAll(t, j2); len(got) != 2 {
		t.Fatalf("reopened: %d records", len(got))
	}
	end := j2.AppendedEnd()
	if err := j2.Close(); err != nil {
		t.Fatal(err)
	}
	withMaxRecordVersion(t, RecordV1)
	if _, err := Open(testDir, testOptions(t, fs)); !errors.Is(err, ErrUnsupportedVersion) {
		t.Fatalf("level 1 open: %v, want ErrUnsupportedVersion", err)
	}
	if err := (&Journal{}).SetRecordFormat(RecordV2, "A"); err == nil {
		t.Fatal("a level 1 build switched its journal to record version 2")
	}
	SetMaxRecordVersion(RecordV2)
	j3 := openTest(t, testDir, testOptions(t, fs))
	if j3.AppendedEnd() != end {
		t.Fatalf("after the refused open the journal ends at %s, before at %s", j3.AppendedEnd(), end)
	}
}
