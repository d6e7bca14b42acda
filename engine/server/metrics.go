package server

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/mirrorkit/mirrorkit/engine/journal"
)

// metrics are registered on a registry of the server's own, so several members can run in one process (tests).
type metrics struct {
	registry       *prometheus.Registry
	requests       *prometheus.CounterVec
	commits        prometheus.Counter
	commitLatency  prometheus.Histogram
	groupCommit    prometheus.Histogram
	journalBytes   prometheus.Counter
	journalSyncs   prometheus.Counter
	journalSyncDur prometheus.Histogram
	connections    prometheus.Gauge
	badFrames      prometheus.Counter
	snapshotBytes  prometheus.Counter
}

func newMetrics() *metrics {
	m := &metrics{
		registry: prometheus.NewRegistry(),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mirrorkit_requests_total", Help: "Data requests served, by outcome (ok or the error code).",
		}, []string{"outcome"}),
		commits: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "mirrorkit_commits_total", Help: "Write transactions committed (durable in the journal).",
		}),
		commitLatency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "mirrorkit_commit_latency_seconds", Help: "Time from receiving a write request to its durable commit.",
			Buckets: prometheus.ExponentialBuckets(50e-6, 2, 16),
		}),
		groupCommit: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "mirrorkit_group_commit_transactions", Help: "Transactions made durable by one journal sync.",
			Buckets: prometheus.ExponentialBuckets(1, 2, 10),
		}),
		journalBytes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "mirrorkit_journal_bytes_total", Help: "Bytes written to the journal.",
		}),
		journalSyncs: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "mirrorkit_journal_syncs_total", Help: "Journal fsyncs.",
		}),
		journalSyncDur: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "mirrorkit_journal_sync_seconds", Help: "Duration of one group-commit write and fsync.",
			Buckets: prometheus.ExponentialBuckets(50e-6, 2, 16),
		}),
		connections: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "mirrorkit_data_connections", Help: "Open data-port connections.",
		}),
		badFrames: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "mirrorkit_bad_frames_total", Help: "Connections closed for a malformed or oversized frame.",
		}),
		snapshotBytes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "mirrorkit_snapshot_bytes_served_total", Help: "Bytes of database snapshot files served to other members and tools (copies, downloads, backups).",
		}),
	}
	m.registry.MustRegister(m.snapshotBytes, m.requests, m.commits, m.commitLatency, m.groupCommit, m.journalBytes, m.journalSyncs,
		m.journalSyncDur, m.connections, m.badFrames,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

func (m *metrics) onSync(info journal.SyncInfo) {
	m.journalSyncs.Inc()
	m.journalBytes.Add(float64(info.Bytes))
	m.groupCommit.Observe(float64(info.Transactions))
	m.journalSyncDur.Observe(info.Duration.Seconds())
}
