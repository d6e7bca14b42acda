// Package journal is the write-ahead journal of a member: numbered segment files
// (journal.000001, journal.000002, …) holding checksummed, self-positioned records.
//
// A commit is durable when its journal record is synced; databases run with their
// own WAL disabled and are recovered by replaying the journal, and the same records
// are streamed to other members and to shadows. The package owns:
//
//   - the on-disk format of segments and records;
//   - group commit: Append only encodes into memory, and the first waiter in
//     WaitDurable writes every buffered byte and issues one sync for all of them;
//   - recovery at Open: a torn tail of the last segment is cut off, anything else
//     that fails a check refuses to open with ErrCorrupt naming file and offset;
//   - tailing readers that see only durable records and follow segment rolls;
//   - retention: consumers register the position they still need and Purge
//     deletes only the oldest segments nobody needs;
//   - copies of a journal on other members: records another member wrote are
//     appended at the positions they carry (AppendReceived, AppendEncoded),
//     durable records are shipped still encoded (ReadEncoded, DurableNotify),
//     and a tail the other members never got is cut off (TruncateAfter);
//   - read-only inspection (Check, Dump) for operator tools.
//
// It must not touch anything outside its directory, interpret record contents
// (database names, keys and values mean nothing here), or decide what is
// mirrored: callers own those choices.
//
// # Format
//
// A segment starts with a 32-byte header: magic "MKJOURNL", format version
// (uint16, FormatVersion), two zero bytes, segment number and epoch at creation
// (uint64 each), CRC32C of the first 28 bytes; integers are little-endian.
// Records follow, each framed as [uint32 payload length][uint32 CRC32C of the
// payload][payload]. A zero frame header ends the records: segments are
// zero-filled ahead of the data so that syncs need not update file metadata.
// The payload is a version byte (1), type, flags (TxnEnd, HasBefore, HasValue),
// then uvarints epoch, segment, offset (the record's own position, checked on
// every read), transaction id, zigzag time, and length-prefixed database name,
// key, value (if HasValue) and before-image (if HasBefore).
//
// Purge also records the end of the newest segment it deleted in the file
// "purged-end" (see purgedend.go), so that a reader that had read everything up
// to that end goes on in the oldest segment left instead of being refused.
package journal
