// Package shadow is log shipping between members, the older and simpler replication that mirrors replace: a shadow
// destination pulls a source member's local journal over the data port (purpose shadow) from a chosen position and applies
// it, through a mapping of source database to destination database, to copies on the destination.
//
// # Destination
//
// A shadow is configured with a name, the source's data address, a start position ("now" is resolved against the source)
// and a mapping. Each mapped destination database is attached to the shadow (store.ShadowDatabase): its applied position
// is a position of the source's local journal and is written in the same batch as the data it covers, so it is the
// shadow's checkpoint, persisted atomically with the applied data (a crash loses unflushed data and checkpoint together,
// and the shadow fetches the records again). The shadow resumes from the lowest checkpoint of its databases.
//
// States: Processing (running; Connected says whether the source is reached at the moment, and a lost connection is
// retried with backoff), Suspended (the operator paused it; it resumes where it stopped), Stopped, and Error (it needs the
// operator: the source purged the journal it needs, the source refused the stream, or a record could not be applied).
// Latency is the time and journal bytes between the checkpoint and the source's durable end.
//
// This member's own writes to a shadowed copy are allowed and journaled locally; the copy records that it was written
// (ShadowInfo.Modified), so that a conversion can tell an untouched copy from a modified one.
//
// # Conversion
//
// When the source adds a database to a mirror it writes a store.MarkerToMirror marker into its local journal after the
// database's last local record. A copy that applies it remembers where it joins the mirror; JoinMirror then turns it into a
// copy of the mirrored database at that mirror journal position with no data copied, and the shadow stops applying it.
//
// # Source
//
// Serve streams the durable local journal from the requested position (JournalBatch frames, compressed when the destination
// accepts it) and heartbeats with the durable end; the destination acknowledges its checkpoint, which the source shows.
package shadow
