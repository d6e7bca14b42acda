package mirror

import (
	"testing"
	"time"
)

func TestRate(t *testing.T) {
	var r rate
	t0 := time.Unix(1000, 0)
	var wire, raw uint64
	for i := 0; i <= 40; i++ { // 10 s of 1000 wire bytes and 3000 journal bytes every 250 ms
		now := t0.Add(time.Duration(i) * 250 * time.Millisecond)
		wire, raw = wire+1000, raw+3000
		r.add(now, wire, raw)
	}
	w, j := r.perSecond(t0.Add(10*time.Second), wire, raw)
	if w < 3900 || w > 4100 || j < 11700 || j > 12300 {
		t.Fatalf("rates %.0f/s and %.0f/s, want about 4000 and 12000", w, j)
	}
	if w, _ := r.perSecond(t0.Add(time.Minute), wire, raw); w != 0 {
		t.Fatalf("rate long after the last arrival = %.0f, want 0", w)
	}
	if len(r.samples) > 45 {
		t.Fatalf("%d samples kept", len(r.samples))
	}
}
