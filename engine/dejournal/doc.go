// Package dejournal applies a member's copy of a mirror journal to the local copies of the mirrored databases (on a backup
// or an async member). It owns the order in which received transactions are applied, the per-partition applied positions that
// make recovery exact, pausing and resuming (per database, for the whole mirror, or on an apply error) and the data behind
// the Dejournaling status.
//
// It must not write the journal, receive or send journal data, purge segments, or open, create or dismount databases: the
// journal is read through Source and each database is reached only through Target.
//
// # Ordering
//
// Records are grouped into transactions (records with one TxnID, up to the record with TxnEnd). A complete transaction is
// split per database; each database's share is one Target.ApplyReplicated call, so it becomes visible atomically. Within a
// database, a record belongs to the partition Partition(db, key), which depends only on the global name, so all updates to one
// global go through one partition and are applied in journal order. Partitions are served by up to Partitions workers
// (partition p by worker p mod Workers); a share touching several partitions is queued on each of their workers and runs
// once every one of them has reached it, which is a barrier on exactly those workers.
//
// # Positions and recovery
//
// A database stores, atomically with each applied share, the end of its transaction as the applied position of every
// partition the share touched, and from time to time a base position that every partition has reached (AdvanceApplied), so
// that partitions without traffic do not hold back the lowest applied position. A share is skipped when each of its
// partitions is already applied at or past the end of its transaction. Since the applied position of a partition only moves
// in whole transactions and a base position is only recorded where no unapplied transaction of that database starts before
// it, re-reading the journal from the lowest applied position after a crash applies every missing transaction exactly once.
// This relies on each transaction's records being contiguous in the journal, which the journal's writers guarantee.
//
// # Catching up
//
// One main reader follows the journal for every database that is up to date. A database that is added while dejournaling
// runs, or resumed after a pause, gets its own catch-up reader from its own applied position; that reader applies only this
// database's transactions, in order, and hands the database over to the main reader once it has reached the main reader's
// position. Other databases keep being applied meanwhile. Resuming the whole mirror restarts the main reader from the lowest
// applied position of the databases that are not paused.
package dejournal
