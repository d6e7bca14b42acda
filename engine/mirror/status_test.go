package mirror

import (
	"testing"
	"time"

	"github.com/mirrorkit/mirrorkit/engine/dejournal"
	"github.com/mirrorkit/mirrorkit/engine/journal"
)

// A database the main reader applies is Dejournaling while the main reader keeps up, even with the newest records still
// being applied; it is Catchup Running on its own catch-up reader or behind a main reader that is far behind.
func TestDejournalingStatus(t *testing.T) {
	received := journal.Position{Epoch: 1, Segment: 1, Offset: 5000}
	applied := journal.Position{Epoch: 1, Segment: 1, Offset: 4000}
	now := time.Date(2026, 11, 27, 5, 0, 0, 0, time.UTC)
	keepingUp := dejournal.Status{LastReceivedTime: now, LastAppliedTime: now.Add(-20 * time.Millisecond)}
	backlog := dejournal.Status{LastReceivedTime: now, LastAppliedTime: now.Add(-time.Minute)}
	tests := []struct {
		name       string
		d          dejournal.DBStatus
		djs        dejournal.Status
		want, next string
	}{
		{"applied everything", dejournal.DBStatus{Applied: received}, keepingUp, DBDejournaling, received.String()},
		{"the newest records in flight", dejournal.DBStatus{Applied: applied}, keepingUp, DBDejournaling, applied.String()},
		{"nothing received yet", dejournal.DBStatus{Applied: applied}, dejournal.Status{}, DBDejournaling, applied.String()},
		{"own catch-up reader", dejournal.DBStatus{Applied: applied, CatchingUp: true}, keepingUp, DBCatchupRun, applied.String()},
		{"main reader a minute behind", dejournal.DBStatus{Applied: applied}, backlog, DBCatchupRun, applied.String()},
		{"caught up although the main reader is behind", dejournal.DBStatus{Applied: received}, backlog, DBDejournaling, received.String()},
		{"paused", dejournal.DBStatus{Applied: applied, Paused: true, Err: "apply failed"}, keepingUp, DBStopped, ""},
		{"mirror stopped", dejournal.DBStatus{Applied: applied}, dejournal.Status{Stopped: true}, DBStopped, ""},
	}
	for _, tt := range tests {
		st, next, err := dejournalingStatus(tt.d, tt.djs, received)
		if st != tt.want || next != tt.next || err != tt.d.Err {
			t.Errorf("%s: %q next %q error %q; want %q next %q error %q", tt.name, st, next, err, tt.want, tt.next, tt.d.Err)
		}
	}
}
