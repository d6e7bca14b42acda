// Package arbiter owns the arbiter of MIRRORING.md §6: a small process, ideally on a third host, that the two failover
// members of a mirror keep contact with and that decides their races with a compare-and-set on the mirror's epoch. It
// holds no data; one arbiter serves any number of mirrors. It owns the arbiter protocol (its frame kinds, messages and
// handshake), the server with its persisted decisions, and the client a failover member uses.
//
// It does not decide when a member asks (the mirror's failover state machine does) and it does not touch a member's
// data, journals or mirror configuration; it must not import engine/mirror, which uses it.
//
// # Decisions
//
// Per mirror the arbiter records an epoch, the primary in that epoch and the epoch (if any) in which the primary was
// allowed to continue without its backup. Every change to that record is written to Dir/state.json (temp file, fsync,
// rename, fsync of the directory) before any answer that depends on it, so a restarted arbiter never forgets a
// decision. The checks, the write and the answer of one mirror's requests run under that mirror's mutex, so its
// decisions are linearizable. The rules, which keep two members from both being primary:
//
//   - Takeover (backup → primary in Epoch+1): granted only when the recorded epoch is Epoch, the requester last reported
//     being the Active backup in Epoch, the primary was not allowed to continue without its backup in Epoch, and every
//     other member of the mirror, the primary of Epoch above all, has been silent for at least the QoS timeout (the
//     longest any member reported). Silence counts from the arbiter's start for members it has not heard from since.
//   - Continue without backup: granted only when the recorded epoch is Epoch, the requester is its primary and every
//     other member has been silent for at least the QoS timeout or last reported being neither primary nor the Active
//     backup (the backup confirmed it is no longer active); it records that the backup is no longer active in
//     Epoch, so the backup's takeover in Epoch is refused from then on.
//   - Backup rejoined: the primary of Epoch clears that record once its backup is Active again.
//   - A request in an epoch older than the record is refused; so is one in a newer epoch, which a report records first.
//
// Reports are not decisions, and what the arbiter last heard from each member is not persisted, with one exception: a
// report of an epoch newer than the record (epochs also advance without the arbiter: planned failover, agent-controlled
// takeover, an operator's force) records that epoch, and its primary when the reporter is primary; likewise a primary
// reporting in the recorded epoch when none is recorded. Such a change is persisted before the View is answered.
//
// # Protocol
//
// The arbiter speaks wire frames on its own port. wire.ServerHandshake serves only the data port's purposes, so the
// arbiter does its own handshake with the same frames: the client writes wire.Magic, a wire.KindHello frame whose
// Purpose is [Purpose], and a [KindAuth] frame carrying the shared token (empty when none); the arbiter answers a
// wire.KindWelcome frame, or a wire.KindError frame before closing. With TLS the client's certificate authenticates it
// and the token is not checked. A member's data port refuses Purpose, so a member pointed at another member instead
// of the arbiter fails at once.
//
// Then each request frame is answered by one frame with the same request id: [KindReport] by [KindView];
// [KindTakeover], [KindContinue] and [KindRejoined] by [KindDecision]; any of them by [KindFailure] (a wire.Error
// payload) when it could not be decided: malformed, bad names, or the decision could not be persisted. Payloads start
// with a format version byte (1); strings are a uvarint length and bytes, integers minimal uvarints, durations minimal
// zig-zag varints of nanoseconds:
//
//	Report   = 1 | mirror str | member str | epoch uvarint | flags u8 (1 primary, 2 active backup, 4 sees peer) | qos varint
//	View     = 1 | epoch uvarint | primary str | flags u8 (1 peer seen) | peer Report (without its version byte)
//	             | peerAge varint | backupLost uvarint
//	Takeover = 1 | mirror str | member str | epoch uvarint | newEpoch uvarint
//	Continue = 1 | mirror str | member str | epoch uvarint       (Rejoined likewise)
//	Decision = 1 | flags u8 (1 granted) | epoch uvarint | primary str | reason str
//	Auth     = 1 | token str
package arbiter
