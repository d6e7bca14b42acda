package journal

import (
	"context"
	"encoding/binary"
	"sync/atomic"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/rs/zerolog"
)

// BenchmarkCommitParallel commits one-record transactions (116-byte values)
// from many goroutines to a journal on the real file system, as clients of a
// member do; records/sync shows how well group commit batches them.
func BenchmarkCommitParallel(b *testing.B) {
	var syncTime atomic.Int64
	onSync := func(info SyncInfo) { syncTime.Add(int64(info.Duration)) }
	j, err := Open(b.TempDir(), Options{FS: vfs.Default, Logger: zerolog.Nop(), OnSync: onSync})
	if err != nil {
		b.Fatal(err)
	}
	defer j.Close()
	value := make([]byte, 116)
	var next atomic.Uint64
	// Sixteen committers per CPU: group commit needs concurrent clients.
	b.SetParallelism(16)
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		ctx := context.Background()
		key := make([]byte, 8)
		recs := make([]Record, 1)
		for pb.Next() {
			binary.BigEndian.PutUint64(key, next.Add(1))
			recs[0] = Record{Type: RecordSet, DB: "bench", Key: key, Value: value, HasValue: true, TxnEnd: true}
			if _, err := j.Commit(ctx, recs); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.StopTimer()
	st := j.Stats()
	if st.Syncs > 0 {
		b.ReportMetric(float64(st.SyncedRecords)/float64(st.Syncs), "records/sync")
		b.ReportMetric(float64(syncTime.Load())/float64(st.Syncs)/1e3, "µs/sync")
	}
}
