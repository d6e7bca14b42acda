package agent

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/rs/zerolog"

	"github.com/mirrorkit/mirrorkit/engine/journal"
)

// writeJournal writes n one-record transactions into a mirror journal of dataDir, in segments small enough that they
// span several, and returns the records as written.
func writeJournal(tb testing.TB, dataDir, mirror string, n int) []journal.Record {
	tb.Helper()
	dir := filepath.Join(dataDir, "mirrors", mirror, "journal")
	j, err := journal.Open(dir, journal.Options{SegmentSize: 512, Logger: zerolog.New(zerolog.NewTestWriter(tb))})
	if err != nil {
		tb.Fatal(err)
	}
	for i := range n {
		rec := journal.Record{Type: journal.RecordSet, DB: "APP", Key: fmt.Appendf(nil, "key%03d", i), Value: bytes.Repeat([]byte{'v'}, 40),
			HasValue: true, TxnEnd: true}
		if _, err := j.Commit(context.Background(), []journal.Record{rec}); err != nil {
			tb.Fatal(err)
		}
	}
	if err := j.Close(); err != nil {
		tb.Fatal(err)
	}
	var recs []journal.Record
	if err := journal.Dump(vfs.Default, dir, journal.Position{}, func(r journal.Record) error {
		recs = append(recs, r)
		return nil
	}); err != nil {
		tb.Fatal(err)
	}
	if len(recs) != n || recs[n-1].Pos.Segment < 3 {
		tb.Fatalf("wrote %d records ending in segment %d, want %d in at least 3 segments", len(recs), recs[len(recs)-1].Pos.Segment, n)
	}
	return recs
}

// endOf is the position after rec.
func endOf(rec journal.Record) journal.Position {
	return journal.Position{Epoch: rec.Pos.Epoch, Segment: rec.Pos.Segment, Offset: rec.Pos.Offset + uint64(rec.Size())}
}

// decodeFrames decodes frames back to back.
func decodeFrames(tb testing.TB, frames []byte) []journal.Record {
	tb.Helper()
	var recs []journal.Record
	for off := 0; off < len(frames); {
		rec, n, err := journal.DecodeRecord(frames[off:])
		if err != nil {
			tb.Fatalf("frame at byte %d: %v", off, err)
		}
		recs = append(recs, rec)
		off += n
	}
	return recs
}

// sameRecords compares records by position and content.
func sameRecords(got, want []journal.Record) error {
	if len(got) != len(want) {
		return fmt.Errorf("%d records, want %d", len(got), len(want))
	}
	for i := range got {
		g, w := got[i], want[i]
		if g.Pos != w.Pos || g.DB != w.DB || !bytes.Equal(g.Key, w.Key) || !bytes.Equal(g.Value, w.Value) || g.TxnID != w.TxnID {
			return fmt.Errorf("record %d = %+v, want %+v", i, g, w)
		}
	}
	return nil
}

func TestJournalServing(t *testing.T) {
	m := helperMemberConfig(t, "A", false, "serve")
	recs := writeJournal(t, m.DataDir, "MIR", 30)
	first := journal.Position{Epoch: 1, Segment: 1, Offset: journal.HeaderSize}
	end := endOf(recs[len(recs)-1])
	a := newTestAgent(t, Config{Token: testToken, Members: []MemberConfig{m}})
	c, srv := serveTest(t, a, testToken)

	// The first record of the second segment, and the end of the first (which the next segment follows).
	secondSegment := slices.IndexFunc(recs, func(r journal.Record) bool { return r.Pos.Segment == 2 })
	tests := []struct {
		name   string
		mirror string
		from   journal.Position
		want   []journal.Record
	}{
		{"oldest", "MIR", journal.Position{}, recs},
		{"first record", "MIR", recs[0].Pos, recs},
		{"middle record", "MIR", recs[7].Pos, recs[7:]},
		{"segment start", "MIR", recs[secondSegment].Pos, recs[secondSegment:]},
		{"segment start at offset 0", "MIR", journal.Position{Epoch: 1, Segment: recs[secondSegment].Pos.Segment}, recs[secondSegment:]},
		{"end of a sealed segment", "MIR", endOf(recs[secondSegment-1]), recs[secondSegment:]},
		{"last record", "MIR", recs[len(recs)-1].Pos, recs[len(recs)-1:]},
		{"end", "MIR", end, nil},
		{"mirror name in lower case", "mir", recs[20].Pos, recs[20:]},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			frames, gotEnd, err := c.Journal(testContext(t), "A", tc.mirror, tc.from)
			if err != nil {
				t.Fatal(err)
			}
			if err := sameRecords(decodeFrames(t, frames), tc.want); err != nil {
				t.Fatal(err)
			}
			if gotEnd != end {
				t.Fatalf("end %s, want %s", gotEnd, end)
			}
		})
	}

	resp, err := authorizedGet(t, srv.URL+"/v1/members/A/mirrors/MIR/journal?from="+recs[3].Pos.String())
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Header.Get(HeaderJournalFirst) != first.String() || resp.Header.Get(HeaderJournalEnd) != end.String() {
		t.Fatalf("status %d, headers %v", resp.StatusCode, resp.Header)
	}
}

func TestJournalServingErrors(t *testing.T) {
	m := helperMemberConfig(t, "A", false, "serve")
	recs := writeJournal(t, m.DataDir, "MIR", 30)
	a := newTestAgent(t, Config{Token: testToken, Members: []MemberConfig{m}})
	c, srv := serveTest(t, a, testToken)
	past := endOf(recs[len(recs)-1])
	past.Offset += 100
	tests := []struct {
		name           string
		member, mirror string
		from           journal.Position
		want           error
		message        string
	}{
		{"unknown member", "B", "MIR", journal.Position{}, ErrNotFound, "member B"},
		{"unknown mirror", "A", "OTHER", journal.Position{}, ErrNotFound, "mirror OTHER"},
		{"not a mirror name", "A", "../x", journal.Position{}, ErrNotFound, `"../x"`},
		{"not a record boundary", "A", "MIR", journal.Position{Epoch: 1, Segment: 1, Offset: recs[1].Pos.Offset + 1}, journal.ErrBadPosition, "journal.000001"},
		{"past the end", "A", "MIR", past, journal.ErrBadPosition, "beyond the end"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := c.Journal(testContext(t), tc.member, tc.mirror, tc.from)
			if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.message) {
				t.Fatalf("Journal: %v, want %v mentioning %q", err, tc.want, tc.message)
			}
		})
	}

	resp, err := authorizedGet(t, srv.URL+"/v1/members/A/mirrors/MIR/journal?from=nonsense")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("bad from: status %d, want 400", resp.StatusCode)
	}
}

func TestJournalTornTailNotServed(t *testing.T) {
	m := helperMemberConfig(t, "A", false, "serve")
	recs := writeJournal(t, m.DataDir, "MIR", 30)
	// Tear the last record: its second half never reached the disk.
	last := recs[len(recs)-1]
	path := filepath.Join(m.DataDir, "mirrors", "MIR", "journal", fmt.Sprintf("journal.%06d", last.Pos.Segment))
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	half := int64(last.Size() / 2)
	if _, err := f.WriteAt(make([]byte, half), int64(last.Pos.Offset)+half); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	a := newTestAgent(t, Config{Token: testToken, Members: []MemberConfig{m}})
	c, _ := serveTest(t, a, testToken)

	frames, end, err := c.Journal(testContext(t), "A", "MIR", recs[20].Pos)
	if err != nil {
		t.Fatal(err)
	}
	if err := sameRecords(decodeFrames(t, frames), recs[20:len(recs)-1]); err != nil {
		t.Fatal(err)
	}
	if end != last.Pos {
		t.Fatalf("end %s, want %s where the torn record starts", end, last.Pos)
	}
	// Serving changed nothing on disk: the torn tail is still there for the member's recovery to cut.
	report, err := journal.Check(vfs.Default, filepath.Dir(path))
	if err != nil || report.TornTail == nil {
		t.Fatalf("check after serving: %+v, %v", report, err)
	}
}

func TestJournalPurgedPosition(t *testing.T) {
	m := helperMemberConfig(t, "A", false, "serve")
	recs := writeJournal(t, m.DataDir, "MIR", 30)
	dir := filepath.Join(m.DataDir, "mirrors", "MIR", "journal")
	j, err := journal.Open(dir, journal.Options{SegmentSize: 512, Logger: zerolog.New(zerolog.NewTestWriter(t))})
	if err != nil {
		t.Fatal(err)
	}
	removed, err := j.Purge(journal.PurgePolicy{KeepSegments: 1}, recs[len(recs)-1].Pos)
	if err != nil || len(removed) == 0 {
		t.Fatalf("purge: %v, %v", removed, err)
	}
	oldest := j.FirstPosition()
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	a := newTestAgent(t, Config{Token: testToken, Members: []MemberConfig{m}})
	c, srv := serveTest(t, a, testToken)

	_, _, err = c.Journal(testContext(t), "A", "MIR", recs[0].Pos)
	if !errors.Is(err, journal.ErrPurged) || !strings.Contains(err.Error(), oldest.String()) {
		t.Fatalf("Journal from a purged position: %v, want ErrPurged naming %s", err, oldest)
	}
	resp, err := authorizedGet(t, srv.URL+"/v1/members/A/mirrors/MIR/journal?from="+recs[0].Pos.String())
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusGone {
		t.Fatalf("status %d, want 410", resp.StatusCode)
	}
	// From the oldest position left, everything left is served.
	frames, _, err := c.Journal(testContext(t), "A", "MIR", journal.Position{})
	if err != nil {
		t.Fatal(err)
	}
	if got := decodeFrames(t, frames); len(got) == 0 || got[0].Pos.Segment != oldest.Segment {
		t.Fatalf("from the oldest: %d records starting at %v", len(got), got)
	}
}

// authorizedGet makes a GET with the test token.
func authorizedGet(tb testing.TB, url string) (*http.Response, error) {
	tb.Helper()
	req, err := http.NewRequestWithContext(testContext(tb), http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+testToken)
	return http.DefaultClient.Do(req)
}
