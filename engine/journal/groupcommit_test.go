package journal

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/cockroachdb/pebble/v2/vfs/errorfs"
)

func TestGroupCommitConcurrent(t *testing.T) {
	const (
		writers = 64
		commits = 40
	)
	mem := vfs.NewCrashableMem()
	// A slow sync stands in for a disk, so that commits pile up behind it.
	inj := &faultInjector{syncDelay: time.Millisecond}
	opts := testOptions(t, errorfs.Wrap(mem, inj))
	opts.SegmentSize = 64 << 10
	var hookRecords atomic.Int64
	opts.OnSync = func(info SyncInfo) { hookRecords.Add(int64(info.Records)) }
	j := openTest(t, testDir, opts)
	syncsBefore := inj.syncs.Load()

	var (
		mu    sync.Mutex
		acked = map[string]Position{} // key -> position of acknowledged records
	)
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	for w := range writers {
		wg.Go(func() {
			var prevPos, prevEnd Position
			for i := range commits {
				// Alternate one- and two-record transactions.
				recs := []Record{setRecord("db", fmt.Sprintf("%d-%d", w, i), "value")}
				if i%2 == 1 {
					recs[0].TxnEnd = false
					recs = append(recs, setRecord("db", fmt.Sprintf("%d-%d-b", w, i), "second"))
				}
				end, err := j.Commit(context.Background(), recs)
				if err != nil {
					errs <- err
					return
				}
				if posBefore(j.DurableEnd(), end) {
					errs <- fmt.Errorf("commit returned at %s before durable end %s", end, j.DurableEnd())
					return
				}
				if recs[0].Pos.Less(prevEnd) || !prevPos.Less(recs[0].Pos) || !recs[len(recs)-1].Pos.Less(end) {
					errs <- fmt.Errorf("writer %d: position %s after %s (ending at %s), end %s", w, recs[0].Pos, prevPos, prevEnd, end)
					return
				}
				prevPos, prevEnd = recs[len(recs)-1].Pos, end
				mu.Lock()
				for _, r := range recs {
					acked[recordKey(r)] = r.Pos
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}

	total := writers * commits
	syncs := j.Stats().Syncs
	t.Logf("%d commits, %d group syncs, %.1f commits per sync", total, syncs, float64(total)/float64(syncs))
	if syncs >= uint64(total/4) || inj.syncs.Load()-syncsBefore >= int64(total/4) {
		t.Fatalf("%d syncs (%d at the file system) for %d commits: group commit is not batching", syncs, inj.syncs.Load()-syncsBefore, total)
	}
	wantRecords := len(acked)
	if got := hookRecords.Load(); got != int64(wantRecords) {
		t.Fatalf("OnSync saw %d records, want %d", got, wantRecords)
	}

	// Everything acknowledged is on disk: a crash now loses none of it.
	crashed := mem.CrashClone(vfs.CrashCloneCfg{})
	for name, fs := range map[string]vfs.FS{"live": mem, "after crash": crashed} {
		var got []Record
		if name == "live" {
			got = readAll(t, j)
		} else {
			got = dumpAll(t, fs, testDir)
		}
		if len(got) != wantRecords {
			t.Fatalf("%s: read %d records, want %d", name, len(got), wantRecords)
		}
		for i, r := range got {
			if pos, ok := acked[recordKey(r)]; !ok || pos != r.Pos {
				t.Fatalf("%s: record %s at %s, acknowledged at %s", name, recordKey(r), r.Pos, pos)
			}
			if i > 0 && !got[i-1].Pos.Less(r.Pos) {
				t.Fatalf("%s: record %d at %s not after %s", name, i, r.Pos, got[i-1].Pos)
			}
		}
	}
}

// TestGroupCommitAppendsDuringSync holds a sync in flight and checks that
// appends go on meanwhile and are all written by the next single sync.
func TestGroupCommitAppendsDuringSync(t *testing.T) {
	hold := newSyncHold()
	j := openTest(t, testDir, testOptions(t, hold.fs))

	hold.armed.Store(true)
	first := make(chan error, 1)
	go func() {
		_, err := j.Commit(context.Background(), []Record{setRecord("db", "first", "1")})
		first <- err
	}()
	<-hold.entered // the leader is inside its sync

	const waiting = 10
	ends := make([]Position, waiting)
	for i := range waiting {
		end, err := j.Append([]Record{setRecord("db", fmt.Sprint(i), "v")})
		if err != nil {
			t.Fatal(err)
		}
		ends[i] = end
	}
	done := make(chan error, waiting)
	for _, end := range ends {
		go func() { done <- j.WaitDurable(context.Background(), end) }()
	}
	syncsBefore := j.Stats().Syncs
	close(hold.release)
	if err := <-first; err != nil {
		t.Fatal(err)
	}
	for range waiting {
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
	if got := j.Stats().Syncs - syncsBefore; got != 2 {
		t.Fatalf("%d syncs for the held one and the batch behind it, want 2", got)
	}
}

func TestWaitDurableContext(t *testing.T) {
	hold := newSyncHold()
	j := openTest(t, testDir, testOptions(t, hold.fs))
	hold.armed.Store(true)
	end, err := j.Append([]Record{setRecord("db", "k", "v")})
	if err != nil {
		t.Fatal(err)
	}
	leader := make(chan error, 1)
	go func() { leader <- j.WaitDurable(context.Background(), end) }()
	<-hold.entered
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := j.WaitDurable(ctx, end); err != context.Canceled {
		t.Fatalf("waiter with a cancelled context: %v", err)
	}
	close(hold.release)
	if err := <-leader; err != nil {
		t.Fatal(err)
	}
}
