package dejournal

import (
	"fmt"
	"testing"

	"github.com/mirrorkit/mirrorkit/engine/journal"
)

// nullTarget records nothing, so that the benchmark measures dejournaling alone.
type nullTarget struct{ name string }

func (n nullTarget) Name() string                                                  { return n.name }
func (nullTarget) ApplyReplicated([]journal.Record, journal.Position, []int) error { return nil }
func (nullTarget) AdvanceApplied(journal.Position) error                           { return nil }
func (nullTarget) AppliedPositions() (journal.Position, [Partitions]journal.Position) {
	return journal.Position{}, [Partitions]journal.Position{}
}

// BenchmarkApply measures dejournaling throughput: one op is one transaction of three records over two databases.
func BenchmarkApply(b *testing.B) {
	j := openJournal(b, b.TempDir())
	w := newWorkload(b, j, 1, "A", "B")
	var recs []journal.Record
	for i := range b.N {
		db := w.dbs[i%2]
		for k := range 3 {
			recs = append(recs, journal.Record{Type: journal.RecordSet, DB: db, Key: testKey(b, fmt.Sprintf("g%d", (i+k)%64), "s"), Value: []byte("value"), HasValue: true})
		}
		recs[len(recs)-1].TxnEnd = true
		if len(recs) >= 3000 || i == b.N-1 {
			if _, err := j.Append(recs); err != nil {
				b.Fatal(err)
			}
			recs = recs[:0]
		}
	}
	if err := j.Sync(); err != nil {
		b.Fatal(err)
	}
	end := j.DurableEnd()
	d := newTest(b, j, Options{}, nullTarget{"A"}, nullTarget{"B"})
	b.ResetTimer()
	stop := start(b, d)
	waitApplied(b, d, end)
	b.StopTimer()
	stop()
}
