package mirror

import "time"

// rateWindow is how far back arrival rates look.
const rateWindow = 10 * time.Second

// rate measures bytes per second over the last rateWindow from cumulative counters sampled as data flows.
type rate struct {
	samples []rateSample
}

type rateSample struct {
	at        time.Time
	wire, raw uint64
}

// add records the cumulative counters at now (at most one sample per 250ms is kept).
func (r *rate) add(now time.Time, wire, raw uint64) {
	if n := len(r.samples); n > 0 && now.Sub(r.samples[n-1].at) < 250*time.Millisecond {
		r.samples[n-1].wire, r.samples[n-1].raw = wire, raw
		return
	}
	r.samples = append(r.samples, rateSample{now, wire, raw})
	for len(r.samples) > 2 && now.Sub(r.samples[1].at) > rateWindow {
		r.samples = r.samples[1:]
	}
}

// perSecond returns the wire and uncompressed rates over the window ending now; zero when nothing arrived within it.
func (r *rate) perSecond(now time.Time, wire, raw uint64) (float64, float64) {
	if len(r.samples) == 0 {
		return 0, 0
	}
	first := r.samples[0]
	if now.Sub(r.samples[len(r.samples)-1].at) > rateWindow {
		return 0, 0
	}
	dt := now.Sub(first.at).Seconds()
	if dt < 1 {
		dt = 1
	}
	return float64(wire-first.wire) / dt, float64(raw-first.raw) / dt
}
