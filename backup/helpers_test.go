package backup_test

import (
	"context"
	"testing"
	"time"

	"github.com/mirrorkit/mirrorkit/backup"
	"github.com/mirrorkit/mirrorkit/backup/backuptest"
)

func TestMain(m *testing.M) { backuptest.Main(m) }

// small is a checkpoint of a few hundred KiB shared by the tests that only read it.
var small = backuptest.Shared{DB: "Orders", Size: 400 << 10}

// reassemble reads every file of the backup back through a ChunkReader.
func reassemble(tb testing.TB, tgt backup.Target, m *backup.Manifest, key []byte) map[string][]byte {
	tb.Helper()
	r, err := backup.NewChunkReader(tgt, m, key, 2)
	if err != nil {
		tb.Fatal(err)
	}
	defer r.Close()
	out := map[string][]byte{}
	for i := range m.Files {
		f := &m.Files[i]
		data := []byte{}
		for j := range f.Chunks {
			plain, err := r.Read(context.Background(), f, &f.Chunks[j], nil)
			if err != nil {
				tb.Fatal(err)
			}
			data = append(data, plain...)
		}
		out[f.Name] = data
	}
	return out
}

func fixedClock(t time.Time) func() time.Time { return func() time.Time { return t } }
