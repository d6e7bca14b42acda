package main_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/mirrorkit/mirrorkit/engine/client"
	"github.com/mirrorkit/mirrorkit/internal/memberproc"
)

// write is one transaction a client tried: the keys it set and the value each got.
type write struct {
	refs  []string
	value string
}

// TestKill9LosesNoAcknowledgedWrite runs 32 concurrent clients writing unique keys (a third of them as multi-key
// transactions) against the real member binary, SIGKILLs it mid-load, restarts it, and checks that every acknowledged write
// is present and that no transaction is partly visible. It repeats this on the same data directory.
func TestKill9LosesNoAcknowledgedWrite(t *testing.T) {
	const clients, rounds = 32, 3
	m := memberproc.Start(t, memberproc.Config{Name: "crash"})
	if r := memberproc.CLI(t, "db", "create", "APP", "--member", m.Addr); r.ExitCode != 0 {
		t.Fatalf("db create: %s", r.Stderr)
	}
	var acked, attempted []write
	for round := 0; round < rounds; round++ {
		// A short retry budget: once the member is killed, calls should fail promptly rather than look for another primary.
		c, err := client.Dial(context.Background(), m.Addr, client.Options{Conns: 4, RetryTimeout: 200 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		var (
			mu    sync.Mutex
			count atomic.Int64
			wg    sync.WaitGroup
		)
		enough := make(chan struct{})
		var once sync.Once
		target := int64(1500 + 500*round)
		for id := 0; id < clients; id++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for seq := 0; ; seq++ {
					w := write{value: fmt.Sprintf("r%d-c%d-s%d", round, id, seq)}
					ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
					var err error
					if seq%3 == 0 {
						for part := 0; part < 3; part++ {
							w.refs = append(w.refs, fmt.Sprintf(`^T(%d,%d,%d,%d)`, round, id, seq, part))
						}
						tx := c.Txn("APP")
						for _, ref := range w.refs {
							tx.Set(ref, []byte(w.value))
						}
						_, err = tx.Commit(ctx)
					} else {
						w.refs = []string{fmt.Sprintf(`^K(%d,%d,%d)`, round, id, seq)}
						err = c.Set(ctx, "APP", w.refs[0], []byte(w.value))
					}
					cancel()
					mu.Lock()
					attempted = append(attempted, w)
					if err == nil {
						acked = append(acked, w)
					}
					mu.Unlock()
					if err != nil {
						return // the member is gone
					}
					if count.Add(1) >= target {
						once.Do(func() { close(enough) })
					}
				}
			}()
		}
		select {
		case <-enough:
		case <-time.After(2 * time.Minute):
			t.Fatalf("round %d: only %d writes acknowledged in 2 minutes", round, count.Load())
		}
		m.Signal(syscall.SIGKILL)
		wg.Wait()
		if err := m.Wait(time.Minute); err == nil {
			t.Fatal("member exited cleanly after SIGKILL?")
		}
		m.Restart()
		verify(t, m, acked, attempted)
		t.Logf("round %d: %d writes acknowledged in total, %d attempted; all acknowledged present, none partial", round, len(acked), len(attempted))
	}
}

func verify(t *testing.T, m *memberproc.Member, acked, attempted []write) {
	t.Helper()
	c := m.Client(t, 4)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	ackedSet := map[string]bool{}
	for _, w := range acked {
		ackedSet[w.value] = true
	}
	var missing []string
	for _, w := range attempted {
		present := 0
		for _, ref := range w.refs {
			v, ok, err := c.Get(ctx, "APP", ref)
			if err != nil {
				t.Fatalf("get %s after restart: %v", ref, err)
			}
			if ok {
				if string(v) != w.value {
					t.Fatalf("%s = %q, want %q", ref, v, w.value)
				}
				present++
			}
		}
		if present != 0 && present != len(w.refs) {
			t.Fatalf("transaction %s is partly visible: %d of %d keys", w.value, present, len(w.refs))
		}
		if ackedSet[w.value] && present == 0 {
			missing = append(missing, w.value)
		}
	}
	if len(missing) > 0 {
		t.Fatalf("%d acknowledged writes lost, e.g. %s\n%s", len(missing), strings.Join(missing[:min(5, len(missing))], ", "), m.LogTail(20))
	}
}

// TestSIGTERMShutsDownCleanly checks the ordered shutdown: exit status 0, nothing to replay at the next start.
func TestSIGTERMShutsDownCleanly(t *testing.T) {
	m := memberproc.Start(t, memberproc.Config{Name: "term"})
	memberproc.CLI(t, "db", "create", "APP", "--member", m.Addr)
	c := m.Client(t, 2)
	ctx := context.Background()
	for i := 0; i < 100; i++ {
		if err := c.Set(ctx, "APP", fmt.Sprintf(`^X(%d)`, i), []byte("v")); err != nil {
			t.Fatal(err)
		}
	}
	if err := m.Terminate(); err != nil {
		t.Fatalf("SIGTERM: exit status %v\n%s", err, m.LogTail(20))
	}
	if !strings.Contains(m.LogTail(5), "member stopped") {
		t.Fatalf("no clean stop in the log:\n%s", m.LogTail(10))
	}
	m.Restart()
	if strings.Contains(m.LogTail(50), "journal replayed") {
		t.Fatalf("a clean shutdown should leave nothing to replay:\n%s", m.LogTail(20))
	}
	v, ok, err := m.Client(t, 1).Get(ctx, "APP", `^X(99)`)
	if err != nil || !ok || string(v) != "v" {
		t.Fatalf("after restart ^X(99) = %q %v %v", v, ok, err)
	}
}

// TestSIGTERMFinishesInflightCommits sends SIGTERM while clients are writing: every write the clients saw acknowledged is
// present after restart, and the others failed with an error rather than hanging.
func TestSIGTERMFinishesInflightCommits(t *testing.T) {
	m := memberproc.Start(t, memberproc.Config{Name: "drain"})
	memberproc.CLI(t, "db", "create", "APP", "--member", m.Addr)
	c, err := client.Dial(context.Background(), m.Addr, client.Options{Conns: 4, RetryTimeout: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var (
		mu    sync.Mutex
		acked []string
		wg    sync.WaitGroup
		n     atomic.Int64
	)
	started := make(chan struct{})
	var once sync.Once
	for id := 0; id < 16; id++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for seq := 0; ; seq++ {
				ref := fmt.Sprintf(`^D(%d,%d)`, id, seq)
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				err := c.Set(ctx, "APP", ref, []byte("x"))
				cancel()
				if err != nil {
					return
				}
				mu.Lock()
				acked = append(acked, ref)
				mu.Unlock()
				if n.Add(1) > 200 {
					once.Do(func() { close(started) })
				}
			}
		}()
	}
	<-started
	if err := m.Terminate(); err != nil {
		t.Fatalf("SIGTERM under load: %v\n%s", err, m.LogTail(20))
	}
	wg.Wait()
	m.Restart()
	c2 := m.Client(t, 2)
	for _, ref := range acked {
		if _, ok, err := c2.Get(context.Background(), "APP", ref); err != nil || !ok {
			t.Fatalf("acknowledged %s missing after SIGTERM (%v)", ref, err)
		}
	}
}
