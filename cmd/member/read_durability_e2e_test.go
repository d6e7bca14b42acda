package main_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/mirrorkit/mirrorkit/engine/journal"
	"github.com/mirrorkit/mirrorkit/engine/mirror"
	"github.com/mirrorkit/mirrorkit/internal/testcluster"
)

// TestPrimaryReadWaitsForTheBackup: a read on the primary never returns a write its backup has not acknowledged. With the
// backup frozen, a write is durable in the primary's own journal but not acknowledged; had a read shown it, a takeover by
// the backup (which does not have it) would make the read have seen a write that never happened.
func TestPrimaryReadWaitsForTheBackup(t *testing.T) {
	c := testcluster.New(t)
	A, B := c.Add("A"), c.Add("B")
	newMirror(t, c, []member{{"A", ""}, {"B", "failover"}})
	waitTransfer(t, c, "A", "B", mirror.TransferActive)
	cl := A.Client(t, 2)
	ctx := context.Background()
	if err := cl.Set(ctx, "APP", "^R", []byte("old")); err != nil {
		t.Fatal(err)
	}
	st, err := local(A)
	if err != nil {
		t.Fatal(err)
	}
	before, err := journal.ParsePosition(st.JournalEnd)
	if err != nil {
		t.Fatal(err)
	}

	B.Pause()
	defer B.Resume()
	written := make(chan error, 1)
	go func() { written <- cl.Set(ctx, "APP", "^R", []byte("new")) }()
	c.WaitFor(t, "the write durable in A's own journal", 10*time.Second, func() (bool, error) {
		st, err := local(A)
		if err != nil {
			return false, err
		}
		end, err := journal.ParsePosition(st.JournalEnd)
		return err == nil && before.Less(end), err
	})
	// The QoS timeout is 2s: within it the backup neither acknowledges nor is dropped, so the write is still unacknowledged.
	rctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
	v, ok, err := cl.Get(rctx, "APP", "^R")
	cancel()
	select {
	case werr := <-written:
		t.Fatalf("the write was acknowledged (%v) with the backup frozen, within the QoS timeout\n%s", werr, c.Logs(40))
	default:
	}
	if err == nil && ok && string(v) == "new" {
		t.Fatalf("a read on the primary returned a write the backup had not acknowledged\n%s", c.Logs(40))
	}
	if err != nil && !errors.Is(err, context.DeadlineExceeded) {
		t.Logf("the read waited and gave up: %v", err)
	}
	// Once the backup is dropped after the QoS timeout (or acknowledges), the write is acknowledged and read back.
	B.Resume()
	if err := <-written; err != nil {
		t.Fatalf("the write: %v", err)
	}
	if v, ok, err := cl.Get(ctx, "APP", "^R"); err != nil || !ok || string(v) != "new" {
		t.Fatalf("read after the acknowledgement: %q %v %v", v, ok, err)
	}
}
