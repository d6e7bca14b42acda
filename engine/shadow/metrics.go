package shadow

import "github.com/prometheus/client_golang/prometheus"

var (
	latencyDesc = prometheus.NewDesc("mirrorkit_shadow_latency_seconds", "How far behind its source a shadow is, in time (0 when caught up).", []string{"shadow"}, nil)
	behindDesc  = prometheus.NewDesc("mirrorkit_shadow_behind_bytes", "How far behind its source a shadow is, in journal bytes.", []string{"shadow"}, nil)
	stateDesc   = prometheus.NewDesc("mirrorkit_shadow_state", "1 for the state a shadow is in.", []string{"shadow", "state"}, nil)
	recvDesc    = prometheus.NewDesc("mirrorkit_shadow_received_bytes_total", "Journal bytes a shadow received from its source (uncompressed).", []string{"shadow"}, nil)
)

// Metrics is a collector of the shadows' latency and state, computed at scrape time.
func (m *Manager) Metrics() prometheus.Collector { return collector{m} }

type collector struct{ m *Manager }

func (c collector) Describe(ch chan<- *prometheus.Desc) {
	ch <- latencyDesc
	ch <- behindDesc
	ch <- stateDesc
	ch <- recvDesc
}

func (c collector) Collect(ch chan<- prometheus.Metric) {
	for _, st := range c.m.List() {
		ch <- prometheus.MustNewConstMetric(latencyDesc, prometheus.GaugeValue, st.LatencySeconds, st.Name)
		ch <- prometheus.MustNewConstMetric(behindDesc, prometheus.GaugeValue, float64(st.BytesBehind), st.Name)
		ch <- prometheus.MustNewConstMetric(recvDesc, prometheus.CounterValue, float64(st.ReceivedBytes), st.Name)
		for _, s := range []string{Processing, Suspended, Stopped, Error} {
			v := 0.0
			if st.State == s {
				v = 1
			}
			ch <- prometheus.MustNewConstMetric(stateDesc, prometheus.GaugeValue, v, st.Name, s)
		}
	}
}
