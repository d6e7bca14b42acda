// Package backuptest is test support for the backup and restore tests: an in-memory backup.Target, a target that fails
// part-way, checkpoints of real databases to back up (made once and shared where tests only read them), and one-call
// backups of those checkpoints. No production code imports it.
package backuptest
