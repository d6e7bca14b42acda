package backup_test

import (
	"context"
	"testing"

	"github.com/mirrorkit/mirrorkit/backup"
	"github.com/mirrorkit/mirrorkit/backup/backuptest"
)

// BenchmarkBackup backs a checkpoint of about 64 MiB (Pebble halves the values written) up into memory at the default
// settings; compare its MB/s with `tar -C DIR -cf - . | zstd -3 -T2 > /dev/null` on the same directory.
func BenchmarkBackup(b *testing.B) {
	fx := backuptest.Checkpoint(b, "Bench", 136<<20, backuptest.CheckpointOptions{})
	var size int64
	for _, data := range backuptest.ReadFiles(b, fx.Dir) {
		size += int64(len(data))
	}
	b.SetBytes(size)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := backup.Run(context.Background(), backup.DirSource(fx.Dir), backuptest.NewMemTarget(), backup.Options{}); err != nil {
			b.Fatal(err)
		}
	}
}
