// Package store owns a member's databases: one Pebble instance per database directory, the globals data model on top of it
// (Set, Get, Kill, Order, Query, Increment, CompareAndSet and atomic multi-operation transactions), the journal position each
// database has applied, crash recovery by journal replay, and consistent checkpoints.
//
// Durability model. The journal is the write-ahead log: Pebble runs with its own WAL disabled. A write transaction is evaluated
// under its database's writer lock, its records (each carrying the before-image of the key it changes) are appended to the
// journal, and the resulting Pebble batch — which also records the database's applied journal position — is applied without a
// sync. The caller is acknowledged only once the journal has synced past the transaction (group commit). Two rules keep the
// databases from ever holding data the journal lost: every Pebble flush first syncs the journal (a FlushBegin hook), and reads
// wait until everything they might have seen is durable. After a crash, each database replays the journal from its persisted
// applied position.
//
// The store does not know about mirrors, streams or the network: it is handed the journal a database writes to.
package store
