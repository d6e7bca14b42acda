package mirror

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/mirrorkit/mirrorkit/engine/journal"
)

// ackLatency is how long commits on a primary wait for the backup's acknowledgement after their local sync.
var ackLatencyBuckets = prometheus.ExponentialBuckets(25e-6, 2, 16)

// Metrics returns the collector of this member's mirror metrics, for the member's Prometheus registry.
func (m *Manager) Metrics() prometheus.Collector { return &collector{m: m} }

type collector struct{ m *Manager }

var (
	descJournalLatencyBytes   = prometheus.NewDesc("mirrorkit_mirror_journal_latency_bytes", "Journal bytes the member has not yet received (primary's view).", []string{"mirror", "member"}, nil)
	descJournalLatencySeconds = prometheus.NewDesc("mirrorkit_mirror_journal_latency_seconds", "How long the member has been behind the primary's journal (0 when caught up).", []string{"mirror", "member"}, nil)
	descDejournalLatencyBytes = prometheus.NewDesc("mirrorkit_mirror_dejournal_latency_bytes", "Journal bytes received but not yet applied on this member.", []string{"mirror"}, nil)
	descDejournalLatencySecs  = prometheus.NewDesc("mirrorkit_mirror_dejournal_latency_seconds", "Journal time between the newest record received and the newest applied on this member.", []string{"mirror"}, nil)
	descArrival               = prometheus.NewDesc("mirrorkit_mirror_arrival_bytes_total", "Journal data arrived from the primary, on the wire and uncompressed.", []string{"mirror", "form"}, nil)
	descRatio                 = prometheus.NewDesc("mirrorkit_mirror_compression_ratio", "Uncompressed journal bytes per byte on the wire (stream compression).", []string{"mirror"}, nil)
	descEpoch                 = prometheus.NewDesc("mirrorkit_mirror_epoch", "The mirror's epoch as this member knows it.", []string{"mirror"}, nil)
	descIsPrimary             = prometheus.NewDesc("mirrorkit_mirror_primary", "1 when this member is the mirror's primary.", []string{"mirror"}, nil)
	descFailovers             = prometheus.NewDesc("mirrorkit_mirror_failovers_total", "Times this member became primary since it started, by how: planned, arbiter, agent, forced, promoted.", []string{"mirror", "how"}, nil)
	descTroubles              = prometheus.NewDesc("mirrorkit_mirror_trouble_episodes_total", "Times this member was In Trouble as primary since it started.", []string{"mirror"}, nil)
	descInTrouble             = prometheus.NewDesc("mirrorkit_mirror_in_trouble", "1 while this member is a primary that is In Trouble or Waiting (serving nothing).", []string{"mirror"}, nil)
	descArbiterConnected      = prometheus.NewDesc("mirrorkit_mirror_arbiter_connected", "1 while this member's reports reach the arbiter.", []string{"mirror"}, nil)
	descArbiterMode           = prometheus.NewDesc("mirrorkit_mirror_arbiter_controlled", "1 in Arbiter Controlled mode, 0 in Agent Controlled mode.", []string{"mirror"}, nil)
)

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descJournalLatencyBytes, descJournalLatencySeconds, descDejournalLatencyBytes, descDejournalLatencySecs, descArrival, descRatio, descEpoch, descIsPrimary,
		descFailovers, descTroubles, descInTrouble, descArbiterConnected, descArbiterMode} {
		ch <- d
	}
	c.m.ackLatency.Describe(ch)
}

// byteDistance approximates the journal bytes between two positions (whole segments count as the segment size).
func byteDistance(from, to journal.Position, segmentSize int64) float64 {
	if !from.Less(to) {
		return 0
	}
	if from.Segment == to.Segment {
		return float64(to.Offset - from.Offset)
	}
	return float64(int64(to.Segment-from.Segment)*segmentSize) + float64(to.Offset) - float64(from.Offset)
}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	c.m.ackLatency.Collect(ch)
	segSize := c.m.opts.SegmentSize
	if segSize == 0 {
		segSize = journal.DefaultSegmentSize
	}
	now := c.m.opts.Now()
	for _, name := range c.m.Names() {
		mir, err := c.m.Mirror(name)
		if err != nil {
			continue
		}
		mir.mu.Lock()
		primary := 0.0
		if mir.role == RolePrimary {
			primary = 1
			durable := mir.jrn.DurableEnd()
			for _, r := range mir.replicas {
				if r.ended() {
					continue
				}
				behindFor := 0.0
				if r.acked.Less(durable) && !r.caughtUp.IsZero() {
					behindFor = now.Sub(r.caughtUp).Seconds()
				}
				ch <- prometheus.MustNewConstMetric(descJournalLatencyBytes, prometheus.GaugeValue, byteDistance(r.acked, durable, segSize), name, r.name)
				ch <- prometheus.MustNewConstMetric(descJournalLatencySeconds, prometheus.GaugeValue, behindFor, name, r.name)
			}
		}
		wireBytes, rawBytes := mir.recv.wireBytes, mir.recv.rawBytes
		dj := mir.dj
		epoch := mir.st.Config.Epoch
		var fst Status
		mir.failoverStatusLocked(&fst, now)
		inTrouble := mir.role == RolePrimary && (mir.fo.trouble || mir.fo.waiting || !mir.leaseLocked())
		mir.mu.Unlock()
		for how, n := range fst.Failovers {
			ch <- prometheus.MustNewConstMetric(descFailovers, prometheus.CounterValue, float64(n), name, how)
		}
		ch <- prometheus.MustNewConstMetric(descTroubles, prometheus.CounterValue, float64(fst.TroubleEpisodes), name)
		ch <- prometheus.MustNewConstMetric(descInTrouble, prometheus.GaugeValue, b2f(inTrouble), name)
		ch <- prometheus.MustNewConstMetric(descArbiterConnected, prometheus.GaugeValue, b2f(fst.ArbiterConnection == ArbiterBoth || fst.ArbiterConnection == ArbiterSelf), name)
		ch <- prometheus.MustNewConstMetric(descArbiterMode, prometheus.GaugeValue, b2f(fst.FailoverMode == ModeArbiter.String()), name)
		ch <- prometheus.MustNewConstMetric(descEpoch, prometheus.GaugeValue, float64(epoch), name)
		ch <- prometheus.MustNewConstMetric(descIsPrimary, prometheus.GaugeValue, primary, name)
		if dj != nil {
			st := dj.Status()
			lag := 0.0
			if st.LastAppliedTime.Before(st.LastReceivedTime) {
				lag = st.LastReceivedTime.Sub(st.LastAppliedTime).Seconds()
			}
			low := st.Received
			for _, d := range st.Databases {
				if d.Applied.Less(low) {
					low = d.Applied
				}
			}
			ch <- prometheus.MustNewConstMetric(descDejournalLatencySecs, prometheus.GaugeValue, lag, name)
			ch <- prometheus.MustNewConstMetric(descDejournalLatencyBytes, prometheus.GaugeValue, byteDistance(low, st.Received, segSize), name)
		}
		if wireBytes > 0 {
			ch <- prometheus.MustNewConstMetric(descArrival, prometheus.CounterValue, float64(wireBytes), name, "wire")
			ch <- prometheus.MustNewConstMetric(descArrival, prometheus.CounterValue, float64(rawBytes), name, "journal")
			ch <- prometheus.MustNewConstMetric(descRatio, prometheus.GaugeValue, float64(rawBytes)/float64(wireBytes), name)
		}
	}
}

func newAckLatency() prometheus.Histogram {
	return prometheus.NewHistogram(prometheus.HistogramOpts{
		Name: "mirrorkit_mirror_ack_latency_seconds", Help: "Time a commit on the primary waits for the Active backup's acknowledgement after its local sync.",
		Buckets: ackLatencyBuckets,
	})
}

func since(t time.Time) float64 { return time.Since(t).Seconds() }

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
