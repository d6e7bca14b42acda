// Package mirror owns a member's mirrors: their persisted configuration (members, roles, epoch, mirrored databases), this
// member's copy of each mirror journal, the journal stream from the primary to every other member (with durable-receipt acks
// from the backup), dejournaling on backups and asyncs, the role state machine and planned failover, and the statuses the
// Mirror Monitor shows (MIRRORING.md §1–5, §7–8).
//
// It does not store data itself (engine/store does, through the journal and write gate this package attaches) and it does
// not listen: engine/server hands it the stream connections that arrive on the data port.
package mirror
