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
	// A QoS timeout far longer than the test's steps: A drops the frozen B no earlier than about 15 s after the freeze (the
	// timeout after B's last message, sent at most a quarter of it before), so however loaded the machine, the write below
	// stays unacknowledged while the read runs.
	newMirror(t, c, []member{{"A", ""}, {"B", "failover"}}, "--qos", "20s")
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
	if st.QoS != "20s" {
		t.Fatalf("QoS timeout %s, want 20s", st.QoS)
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
	// Within the QoS timeout the backup neither acknowledges nor is dropped, so the write is still unacknowledged.
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
	// Once the backup runs again and acknowledges, the write is acknowledged and read back.
	B.Resume()
	if err := <-written; err != nil {
		t.Fatalf("the write: %v", err)
	}
	if v, ok, err := cl.Get(ctx, "APP", "^R"); err != nil || !ok || string(v) != "new" {
		t.Fatalf("read after the acknowledgement: %q %v %v", v, ok, err)
	}
}
