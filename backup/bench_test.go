package backup

import (
	"context"
	"testing"
)

// BenchmarkBackup backs a checkpoint of about 64 MiB (Pebble halves the values written) up into memory at the default
// settings; compare its MB/s with `tar -C DIR -cf - . | zstd -3 -T2 > /dev/null` on the same directory.
func BenchmarkBackup(b *testing.B) {
	fx := makeCheckpoint(b, "Bench", 136<<20)
	var size int64
	for _, data := range readDir(b, fx.dir) {
		size += int64(len(data))
	}
	b.SetBytes(size)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Run(context.Background(), DirSource(fx.dir), newMemTarget(), Options{}); err != nil {
			b.Fatal(err)
		}
	}
}
