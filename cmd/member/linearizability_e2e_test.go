package main_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"

	"github.com/mirrorkit/mirrorkit/engine/client"
	"github.com/mirrorkit/mirrorkit/engine/mirror"
	"github.com/mirrorkit/mirrorkit/internal/testcluster"
)

// regInput is one operation on a register: a read, a write, or a compare-and-set.
type regInput struct {
	op     string // get, put, cas
	key    int
	value  string // put, cas: the new value
	expect string // cas: the expected value ("" = absent)
}

type regOutput struct {
	value   string // get: the value read ("" = absent)
	ok      bool   // cas: swapped
	unknown bool   // put, cas: the call failed, so it may or may not have taken effect (recorded as never returning)
}

// registerModel is a set of independent registers (one per key), each starting absent.
var registerModel = porcupine.Model{
	Partition: func(history []porcupine.Operation) [][]porcupine.Operation {
		byKey := map[int][]porcupine.Operation{}
		for _, op := range history {
			k := op.Input.(regInput).key
			byKey[k] = append(byKey[k], op)
		}
		var out [][]porcupine.Operation
		for _, ops := range byKey {
			out = append(out, ops)
		}
		return out
	},
	Init: func() any { return "" },
	Step: func(state, input, output any) (bool, any) {
		cur, in, out := state.(string), input.(regInput), output.(regOutput)
		switch in.op {
		case "get":
			return out.value == cur, cur
		case "put":
			return true, in.value
		default:
			if cur == in.expect {
				return out.ok || out.unknown, in.value
			}
			return !out.ok || out.unknown, cur
		}
	},
	Equal: func(a, b any) bool { return a == b },
	DescribeOperation: func(input, output any) string {
		in, out := input.(regInput), output.(regOutput)
		if out.unknown {
			return fmt.Sprintf("%s(%d %q %q) -> unknown", in.op, in.key, in.value, in.expect)
		}
		return fmt.Sprintf("%s(%d %q %q) -> %q %v", in.op, in.key, in.value, in.expect, out.value, out.ok)
	},
}

// TestLinearizableAcrossPlannedFailovers drives reads, writes and compare-and-sets on a few registers through mirror-aware
// clients while the primary role moves back and forth by planned failover, records the history and checks it with porcupine.
func TestLinearizableAcrossPlannedFailovers(t *testing.T) {
	c := testcluster.New(t)
	c.Add("A")
	c.Add("B")
	defer dumpLogs(t, c)
	newMirror(t, c, []member{{"A", ""}, {"B", "failover"}})
	addrs := []string{c.Node("A").Addr, c.Node("B").Addr}

	const clients, keys = 8, 4
	start := time.Now()
	now := func() int64 { return int64(time.Since(start)) }
	var (
		mu      sync.Mutex
		history []porcupine.Operation
		errs    []error
		wg      sync.WaitGroup
	)
	stop := make(chan struct{})
	for id := 0; id < clients; id++ {
		cl, err := client.DialMirror(context.Background(), addrs, client.Options{Conns: 1, RetryTimeout: 20 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		defer cl.Close()
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(id), 7))
			last := map[int]string{}
			for seq := 0; ; seq++ {
				select {
				case <-stop:
					return
				default:
				}
				in := regInput{key: rng.IntN(keys)}
				ref := fmt.Sprintf(`^R(%d)`, in.key)
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				call := now()
				var out regOutput
				var err error
				switch r := rng.IntN(10); {
				case r < 5:
					in.op = "get"
					var v []byte
					v, _, err = cl.Get(ctx, "APP", ref)
					out.value = string(v)
				case r < 8:
					in.op, in.value = "put", fmt.Sprintf("c%d-%d", id, seq)
					err = cl.Set(ctx, "APP", ref, []byte(in.value))
				default:
					in.op, in.value, in.expect = "cas", fmt.Sprintf("c%d-%d", id, seq), last[in.key]
					out.ok, _, _, err = cl.CAS(ctx, "APP", ref, []byte(in.expect), in.expect != "", []byte(in.value))
				}
				ret := now()
				cancel()
				mu.Lock()
				if err != nil {
					errs = append(errs, fmt.Errorf("%s %s: %w", in.op, ref, err))
					mu.Unlock()
					return
				}
				history = append(history, porcupine.Operation{ClientId: id, Input: in, Call: call, Output: out, Return: ret})
				mu.Unlock()
				if in.op == "get" {
					last[in.key] = out.value
				}
			}
		}()
	}
	primary, backup := "A", "B"
	for round := 0; round < 6; round++ {
		waitTransfer(t, c, primary, backup, mirror.TransferActive)
		mustNode(t, c.Node(primary), "mirror", "failover", "MIR")
		primary, backup = backup, primary
	}
	waitTransfer(t, c, primary, backup, mirror.TransferActive)
	close(stop)
	wg.Wait()
	if len(errs) > 0 {
		t.Fatalf("%d client errors across planned failovers, first: %v", len(errs), errs[0])
	}
	if len(history) < 200 {
		t.Fatalf("only %d operations recorded", len(history))
	}
	switch res := porcupine.CheckOperationsTimeout(registerModel, history, 60*time.Second); res {
	case porcupine.Ok:
		t.Logf("%d operations over 6 planned failovers: linearizable", len(history))
	case porcupine.Illegal:
		t.Fatalf("history of %d operations is not linearizable", len(history))
	default:
		t.Fatalf("the linearizability check of %d operations timed out", len(history))
	}
}

// TestRegisterModelRejectsStaleRead guards the checker itself: a read that misses a write acknowledged before it started,
// or a compare-and-set that claims success against another value, is not linearizable.
func TestRegisterModelRejectsStaleRead(t *testing.T) {
	put := porcupine.Operation{ClientId: 0, Input: regInput{op: "put", key: 1, value: "a"}, Call: 0, Output: regOutput{}, Return: 10}
	stale := porcupine.Operation{ClientId: 1, Input: regInput{op: "get", key: 1}, Call: 20, Output: regOutput{value: ""}, Return: 30}
	fresh := porcupine.Operation{ClientId: 1, Input: regInput{op: "get", key: 1}, Call: 20, Output: regOutput{value: "a"}, Return: 30}
	badCAS := porcupine.Operation{ClientId: 2, Input: regInput{op: "cas", key: 1, value: "b", expect: "x"}, Call: 40, Output: regOutput{ok: true}, Return: 50}
	if porcupine.CheckOperations(registerModel, []porcupine.Operation{put, stale}) {
		t.Error("a stale read was accepted")
	}
	if !porcupine.CheckOperations(registerModel, []porcupine.Operation{put, fresh}) {
		t.Error("a fresh read was refused")
	}
	if porcupine.CheckOperations(registerModel, []porcupine.Operation{put, fresh, badCAS}) {
		t.Error("a compare-and-set that succeeded against another value was accepted")
	}
}
