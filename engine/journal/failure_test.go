package journal

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/cockroachdb/pebble/v2/vfs/errorfs"
)

func TestIOFailureIsSticky(t *testing.T) {
	tests := []struct {
		name  string
		small bool // small segments, so that the next commit creates a segment
		fail  func(*faultInjector)
	}{
		{"sync", false, func(f *faultInjector) { f.failSync.Store(true) }},
		{"write", false, func(f *faultInjector) { f.failWrite.Store(true) }},
		{"segment creation", true, func(f *faultInjector) { f.failCreate.Store(true) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			inj := &faultInjector{}
			opts := testOptions(t, errorfs.Wrap(vfs.NewMem(), inj))
			if tt.small {
				opts.SegmentSize = 128
			}
			j := openTest(t, testDir, opts)
			commit(t, j, setRecord("db", "before", "0123456789012345678901234567890123456789012345678901234567890123456789"))
			durable := j.DurableEnd()

			tt.fail(inj)
			const n = 8
			var wg sync.WaitGroup
			errs := make([]error, n)
			for i := range n {
				wg.Go(func() {
					_, errs[i] = j.Commit(context.Background(), []Record{setRecord("db", fmt.Sprint(i), "0123456789012345678901234567890123456789")})
				})
			}
			wg.Wait()
			for i, err := range errs {
				if !errors.Is(err, ErrFailed) || !errors.Is(err, ErrClosed) {
					t.Fatalf("commit %d: %v, want the sticky failure", i, err)
				}
				if !errors.Is(err, errInjected) && !errors.Is(err, errorfs.ErrInjected) {
					t.Fatalf("commit %d: %v does not wrap the cause", i, err)
				}
			}
			if j.DurableEnd() != durable {
				t.Fatalf("durable end moved from %s to %s after a failure", durable, j.DurableEnd())
			}

			// Even once the disk recovers, nothing more is accepted: a retried
			// fsync may report success for data the kernel already dropped.
			inj.failSync.Store(false)
			inj.failWrite.Store(false)
			inj.failCreate.Store(false)
			if _, err := j.Append([]Record{setRecord("db", "later", "v")}); !errors.Is(err, ErrFailed) {
				t.Fatalf("append after failure: %v", err)
			}
			if err := j.Sync(); !errors.Is(err, ErrFailed) {
				t.Fatalf("sync after failure: %v", err)
			}
			if err := j.SetEpoch(5); !errors.Is(err, ErrFailed) {
				t.Fatalf("set epoch after failure: %v", err)
			}
			if err := j.Close(); !errors.Is(err, ErrFailed) {
				t.Fatalf("close after failure: %v", err)
			}
		})
	}
}

func TestReaderSeesFailure(t *testing.T) {
	inj := &faultInjector{}
	j := openTest(t, testDir, testOptions(t, errorfs.Wrap(vfs.NewMem(), inj)))
	commit(t, j, setRecord("db", "k", "v"))
	r, err := j.NewReader(Position{})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	inj.failSync.Store(true)
	if _, err := j.Commit(context.Background(), []Record{setRecord("db", "lost", "v")}); err == nil {
		t.Fatal("commit succeeded")
	}
	if rec, err := r.Next(context.Background()); err != nil || recordKey(rec) != "db/k" {
		t.Fatalf("durable record: %+v, %v", rec, err)
	}
	if _, err := r.Next(context.Background()); !errors.Is(err, ErrFailed) {
		t.Fatalf("after the durable records: %v", err)
	}
}

func TestOpenFailsOnUnreadableSegment(t *testing.T) {
	mem := vfs.NewMem()
	j, err := Open(testDir, testOptions(t, mem))
	if err != nil {
		t.Fatal(err)
	}
	commit(t, j, setRecord("db", "k", "v"))
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	inj := errorfs.InjectorFunc(func(op errorfs.Op) error {
		if op.Kind == errorfs.OpFileReadAt {
			return errInjected
		}
		return nil
	})
	if _, err := Open(testDir, testOptions(t, errorfs.Wrap(mem, inj))); !errors.Is(err, errInjected) {
		t.Fatalf("got %v", err)
	}
}
