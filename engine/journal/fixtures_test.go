package journal

import (
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
)

var update = flag.Bool("update", false, "rewrite the journal fixtures in testdata/journal")

const fixtureRoot = "../../testdata/journal"

var fixtureTime = time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)

// fixtureTxn returns transaction i: one or two records with fixed contents.
func fixtureTxn(i int, end bool) []Record {
	recs := []Record{{Type: RecordSet, TxnID: uint64(i + 1), Time: fixtureTime.Add(time.Duration(i) * time.Second).UnixNano(),
		DB: "orders", Key: fmt.Appendf(nil, "^Orders(%d)", i), Value: fmt.Appendf(nil, "total=%d", 100+i), HasValue: true}}
	if i%2 == 1 {
		kill := recs[0]
		kill.Type, kill.Key, kill.Value, kill.HasValue = RecordKill, fmt.Appendf(nil, "^Cart(%d)", i), nil, false
		kill.Before, kill.HasBefore = []byte("items=3"), true
		recs = append(recs, kill)
	}
	recs[len(recs)-1].TxnEnd = end
	return recs
}

// segmentFile is a hand-built segment: header, then records at the
// positions they say they are at.
func segmentFile(num, epoch uint64, txns ...[]Record) ([]byte, []Record) {
	b := encodeHeader(num, epoch)
	var all []Record
	for _, txn := range txns {
		for _, r := range txn {
			r.Pos = Position{Epoch: epoch, Segment: num, Offset: uint64(len(b))}
			b = AppendRecord(b, &r)
			all = append(all, r)
		}
	}
	return b, all
}

func txns(from, to int) [][]Record {
	var out [][]Record
	for i := from; i < to; i++ {
		out = append(out, fixtureTxn(i, true))
	}
	return out
}

// fixtureFiles builds every fixture but "clean", which the journal writes.
func fixtureFiles() map[string]map[string][]byte {
	out := map[string]map[string][]byte{}

	seg, recs := segmentFile(1, 1, txns(0, 5)...)
	last := recs[len(recs)-1]
	torn := seg[:last.Pos.Offset+uint64(last.Size()/2)]
	out["torn-tail"] = map[string][]byte{"journal.000001": torn}

	seg, _ = segmentFile(1, 1, txns(0, 4)...)
	out["zero-tail"] = map[string][]byte{"journal.000001": append(seg, make([]byte, 1000)...)}

	seg, recs = segmentFile(1, 1, txns(0, 4)...)
	seg[recs[2].Pos.Offset+frameHeaderSize+10] ^= 0x20
	out["corrupt-middle"] = map[string][]byte{"journal.000001": seg}

	s1, _ := segmentFile(1, 1, txns(0, 2)...)
	s3, _ := segmentFile(3, 2, txns(2, 4)...)
	out["empty-segment"] = map[string][]byte{
		"journal.000001": s1, "journal.000002": encodeHeader(2, 1),
		"journal.000003": s3, "journal.000004": encodeHeader(4, 2),
	}

	s1, _ = segmentFile(1, 1, txns(0, 2)...)
	s3, _ = segmentFile(3, 1, txns(2, 4)...)
	out["missing-segment"] = map[string][]byte{"journal.000001": s1, "journal.000003": s3}

	seg, _ = segmentFile(1, 1, fixtureTxn(0, true), fixtureTxn(1, true), fixtureTxn(3, false))
	out["incomplete-txn"] = map[string][]byte{"journal.000001": seg}

	seg, _ = segmentFile(1, 1, txns(0, 2)...)
	binary.LittleEndian.PutUint16(seg[8:], 99)
	binary.LittleEndian.PutUint32(seg[28:], crc32.Checksum(seg[:28], castagnoli))
	out["future-version"] = map[string][]byte{"journal.000001": seg}
	return out
}

// TestGenerateFixtures rewrites testdata/journal; run with -update.
func TestGenerateFixtures(t *testing.T) {
	if !*update {
		t.Skip("run with -update to rewrite the fixtures")
	}
	writeDir := func(name string, files map[string][]byte) {
		dir := filepath.Join(fixtureRoot, name)
		if err := os.RemoveAll(dir); err != nil {
			t.Fatal(err)
		}
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		for file, data := range files {
			if err := os.WriteFile(filepath.Join(dir, file), data, 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	for name, files := range fixtureFiles() {
		writeDir(name, files)
	}

	// "clean" is written by the journal itself, as data from this version.
	mem := vfs.NewMem()
	opts := testOptions(t, mem)
	opts.SegmentSize = 512
	opts.Now = func() time.Time { return fixtureTime }
	j, err := Open(testDir, opts)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 8 {
		recs := fixtureTxn(i, true)
		for k := range recs {
			recs[k].TxnID = 0
		}
		commit(t, j, recs...)
	}
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	files := map[string][]byte{}
	names, err := mem.List(testDir)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range names {
		if _, ok := parseSegmentName(name); ok {
			files[name] = readFile(t, mem, mem.PathJoin(testDir, name))
		}
	}
	writeDir("clean", files)
}

// loadFixture copies a fixture into a memory file system, so that Open may
// repair it without touching the checked-in files.
func loadFixture(tb testing.TB, name string) vfs.FS {
	tb.Helper()
	dir := filepath.Join(fixtureRoot, name)
	entries, err := os.ReadDir(dir)
	if err != nil {
		tb.Fatalf("fixture %s: %v (generate with go test -run TestGenerateFixtures -update)", name, err)
	}
	fs := vfs.NewMem()
	if err := fs.MkdirAll(testDir, 0o755); err != nil {
		tb.Fatal(err)
	}
	for _, e := range entries {
		data, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			tb.Fatal(err)
		}
		writeFile(tb, fs, fs.PathJoin(testDir, e.Name()), data)
	}
	return fs
}

func TestFixtures(t *testing.T) {
	tests := []struct {
		name     string
		records  int
		txns     int
		segments int
		tornAt   int64 // offset of the torn tail; -1 if none
		end      Position
		wantErr  error
		errText  []string // the error names these
	}{
		{name: "clean", records: 12, txns: 8, segments: 2, tornAt: -1, end: Position{1, 2, 185}},
		{name: "torn-tail", records: 6, txns: 4, segments: 1, tornAt: 340, end: Position{1, 1, 340}},
		{name: "zero-tail", records: 6, txns: 4, segments: 1, tornAt: -1, end: Position{1, 1, 340}},
		{name: "corrupt-middle", wantErr: ErrCorrupt, errText: []string{"journal.000001 at offset 136:", "checksum mismatch", "valid record follows"}},
		{name: "empty-segment", records: 6, txns: 4, segments: 4, tornAt: -1, end: Position{2, 4, HeaderSize}},
		{name: "missing-segment", wantErr: ErrMissingSegment, errText: []string{"journal.000002"}},
		{name: "incomplete-txn", records: 3, txns: 2, segments: 1, tornAt: 185, end: Position{1, 1, 185}},
		{name: "future-version", wantErr: ErrUnsupportedVersion, errText: []string{"journal.000001", "version 99", "version 1"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fs := loadFixture(t, tt.name)
			report, checkErr := Check(fs, testDir)
			j, err := Open(testDir, testOptions(t, fs))
			if tt.wantErr != nil {
				if err == nil {
					j.Close()
				}
				for call, err := range map[string]error{"Open": err, "Check": checkErr} {
					if !errors.Is(err, tt.wantErr) {
						t.Fatalf("%s: got %v, want %v", call, err, tt.wantErr)
					}
					for _, text := range tt.errText {
						if !strings.Contains(err.Error(), text) {
							t.Fatalf("%s: %q does not mention %q", call, err, text)
						}
					}
				}
				return
			}
			if err != nil || checkErr != nil {
				t.Fatalf("Open: %v; Check: %v", err, checkErr)
			}
			defer j.Close()
			info := j.Recovery()
			for _, got := range []struct {
				records, txns, segments int
				end                     Position
				torn                    *TornTail
			}{
				{info.Records, info.Transactions, info.Segments, info.End, info.TornTail},
				{report.Records, report.Transactions, report.Segments, report.End, report.TornTail},
			} {
				if got.records != tt.records || got.txns != tt.txns || got.segments != tt.segments || got.end != tt.end {
					t.Fatalf("found %d records, %d transactions, %d segments, end %s; want %d, %d, %d, %s",
						got.records, got.txns, got.segments, got.end, tt.records, tt.txns, tt.segments, tt.end)
				}
				switch {
				case tt.tornAt < 0 && got.torn != nil:
					t.Fatalf("unexpected torn tail %+v", *got.torn)
				case tt.tornAt >= 0 && (got.torn == nil || got.torn.Offset != tt.tornAt):
					t.Fatalf("torn tail %+v, want one at offset %d", got.torn, tt.tornAt)
				}
			}
			recs := readAll(t, j)
			if len(recs) != tt.records {
				t.Fatalf("read %d records, want %d", len(recs), tt.records)
			}
			for i, r := range recs {
				if r.DB != "orders" || r.Time < fixtureTime.UnixNano() {
					t.Fatalf("record %d: %+v", i, r)
				}
			}
		})
	}
}
