package testcluster

import (
	"testing"
	"time"
)

func TestUnavailabilityMergesOverlappingStalls(t *testing.T) {
	base := time.Unix(1000, 0)
	at := func(ms int) time.Time { return base.Add(time.Duration(ms) * time.Millisecond) }
	l := &Load{slow: []interval{
		{at(0), at(100)}, {at(50), at(300)}, // two writers stalled together: 0..300
		{at(1000), at(1080)}, // alone: 80
		{at(290), at(310)},   // extends the first: 0..310
	}}
	total, longest := l.Unavailability()
	if total != 390*time.Millisecond || longest != 310*time.Millisecond {
		t.Fatalf("Unavailability = %s total, %s longest; want 390ms and 310ms", total, longest)
	}
	if total, longest := (&Load{}).Unavailability(); total != 0 || longest != 0 {
		t.Fatalf("no stalls: %s %s", total, longest)
	}
}
