// Package mirror owns a member's mirrors: their persisted configuration (members, roles, epoch and its history, mirrored
// databases), this member's copy of each mirror journal, the journal stream from the primary to every other member (with
// durable-receipt acks from the backup), dejournaling on backups and asyncs, the role state machine with planned and
// automatic failover, and the statuses the Mirror Monitor shows (MIRRORING.md §1–8).
//
// It does not store data itself (engine/store does, through the journal and write gate this package attaches) and it does
// not listen: engine/server hands it the stream connections that arrive on the data port. It is a client of the arbiter
// (engine/arbiter) and of host agents (engine/agent), never their server.
//
// # Automatic failover (auto.go)
//
// Each failover member runs a failover loop and reports to the arbiter every QoS/4. The primary decides the failover
// mode — Arbiter Controlled only while both failover members reach each other and the arbiter and the backup is Active —
// and sends it to the backup in a MirrorState frame every QoS/8 (Active, mode, no-failover, its send time); the backup
// echoes each one. The echo tells the primary the mode the backup will act in should they lose each other (the primary
// assumes the more dangerous of what it sent and what came back), and since when the backup is known to have still
// followed it.
//
//   - Lease: the primary serves reads and acknowledges commits only within QoS/2 of the send time of the latest echoed
//     state, or of a report the arbiter answered without naming a later primary (monotonic clock, this member's own
//     times only). A takeover needs QoS of silence, so a deposed primary's lease has always run out first. Without a
//     backup that may act in Arbiter Controlled mode (or after the arbiter let the primary continue alone) no lease is
//     needed: nobody can take over without forcing this member down first.
//   - In Trouble: a primary that loses its Active backup acknowledges nothing until it knows the backup did not take
//     over: the backup reconnects, the arbiter grants Continue, or (Agent Controlled) the backup's agent shows it down or
//     2 × QoS pass. Commits waiting then complete, or fail with an unknown outcome if this member is deposed.
//   - Takeover: a backup that has not heard from the primary for QoS asks the arbiter (Arbiter Controlled and Active) or
//     the primary's agent, which forces it down and hands over the rest of its journal; then it raises the epoch.
//   - Waiting: a primary that restarts serves only once its backup streams from it, the arbiter lets it continue, or
//     (without an arbiter) the backup or its agent shows it is not primary; it then begins a new epoch.
//
// Every epoch's start position is kept in Config.Epochs. A member whose journal holds records of an older epoch past the
// next epoch's start (a former primary's unacknowledged tail) is told to cut back to it: rollback.go writes the records to
// rollback/<epoch>-<time>.jsonl, restores their before-images in the databases and truncates the journal, each step
// repeatable after a crash. force.go holds the operator's takeovers: force-primary and promoting a DR async without a
// primary.
package mirror
