// Package server wires a running member: it opens the journal and the store, serves the data port (framed protocol from
// engine/wire) and the admin HTTP port (JSON API, Prometheus metrics, load-balancer health), purges the journal in the
// background, and shuts all of it down in a fixed order. It holds no storage logic of its own.
package server
