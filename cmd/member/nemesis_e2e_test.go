package main_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"

	"github.com/mirrorkit/mirrorkit/engine/client"
	"github.com/mirrorkit/mirrorkit/engine/journal"
	"github.com/mirrorkit/mirrorkit/engine/mirror"
	"github.com/mirrorkit/mirrorkit/internal/faultproxy"
	"github.com/mirrorkit/mirrorkit/internal/memberproc"
)

// nemesisRounds is how many faults TestLinearizableUnderFaults injects; the longfaults build tag raises it
// (nemesis_long_test.go).
var nemesisRounds = 10

// nemesisFault is one kind of fault: inject breaks something around the current primary and returns what heals it.
type nemesisFault struct {
	name   string
	inject func(f *arbitrated, primary, backup string, blackHole bool) (heal func())
}

// nemesisFaults are the faults the nemesis picks from. blackHole chooses, for the link faults, silently dropped traffic
// instead of reset connections.
var nemesisFaults = []nemesisFault{
	{"kill-primary", func(f *arbitrated, primary, _ string, _ bool) func() {
		f.c.Node(primary).Kill()
		return f.c.Node(primary).Restart
	}},
	{"pause-primary", func(f *arbitrated, primary, _ string, _ bool) func() {
		f.c.Node(primary).Pause()
		return f.c.Node(primary).Resume
	}},
	{"partition-primary", func(f *arbitrated, primary, backup string, blackHole bool) func() {
		return breakLinks(blackHole, f.c.Node(backup).Link(primary), f.c.Node(primary).Link(backup), f.c.Node(primary).ArbiterLink())
	}},
	{"cut-members", func(f *arbitrated, primary, backup string, blackHole bool) func() {
		return breakLinks(blackHole, f.c.Node(backup).Link(primary), f.c.Node(primary).Link(backup))
	}},
	{"kill-arbiter", func(f *arbitrated, _, _ string, _ bool) func() {
		f.arb.Kill()
		return f.arb.Restart
	}},
	{"pause-arbiter", func(f *arbitrated, _, _ string, _ bool) func() {
		f.arb.Pause()
		return f.arb.Resume
	}},
}

// breakLinks cuts or black-holes the proxies and returns what heals them.
func breakLinks(blackHole bool, links ...*faultproxy.Proxy) func() {
	for _, l := range links {
		if blackHole {
			l.BlackHole()
		} else {
			l.Cut()
		}
	}
	return func() {
		for _, l := range links {
			l.Heal()
		}
	}
}

// regHistory collects the operations of the register clients for porcupine.
type regHistory struct {
	start time.Time
	// keySet selects the registers in use: keySet×keys up to (keySet+1)×keys-1. Each nemesis round moves the clients to a
	// new set, so that porcupine checks one round's operations on a register at a time (its search grows with the length
	// of a register's history and with the writes of unknown outcome left open in it); reads at the end of the run tie
	// every set to what survived all the later faults.
	keySet atomic.Int64

	mu      sync.Mutex
	ops     []porcupine.Operation
	ok      atomic.Int64 // operations that returned without error
	unknown int          // put and cas calls that failed: their outcome is unknown
	dropped int          // get calls that failed: they observed nothing
	byOp    map[string]int
	nextID  int // the next porcupine ClientId to hand out
}

func (h *regHistory) now() int64 { return int64(time.Since(h.start)) }

// newID returns a fresh porcupine client id: a client whose call had an unknown outcome goes on under a new one, since
// that call stays open until the end of the history and each id's operations must be sequential.
func (h *regHistory) newID() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.nextID++
	return h.nextID - 1
}

// record adds one operation; a failed put or cas is kept with an unknown outcome (its Return is set at the end), a
// failed get is dropped. It reports whether the client must take a new id.
func (h *regHistory) record(id int, in regInput, out regOutput, call, ret int64, err error) (newID bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	switch {
	case err == nil:
		h.ok.Add(1)
		h.byOp[in.op]++
	case in.op == "get":
		h.dropped++
		return false
	default:
		// Only a refusal before execution would make the outcome certain, and the mirror-aware client retries those
		// instead of returning them: the errors it returns for a write (a lost connection, no response, an unknown
		// outcome, or ErrNoPrimary when the call's time ran out while an attempt was in flight) all allow that it executed.
		h.unknown++
		h.byOp[in.op+"?"]++
		out, ret = regOutput{unknown: true}, -1
	}
	h.ops = append(h.ops, porcupine.Operation{ClientId: id, Input: in, Call: call, Output: out, Return: ret})
	return err != nil
}

// finish closes every unknown-outcome operation at end, after every other return, and returns the history.
func (h *regHistory) finish(end int64) []porcupine.Operation {
	h.mu.Lock()
	defer h.mu.Unlock()
	for i := range h.ops {
		if h.ops[i].Return < 0 {
			h.ops[i].Return = end
		}
	}
	return slices.Clone(h.ops)
}

// runRegisterClient drives random get, put and cas on the keys registers of the current key set until stop is closed. A
// put is sent as a transaction with an increment of a per-client counter, ^Puts(n), so that it is not idempotent: the
// mirror-aware client re-sends an idempotent request whose outcome is unknown, and a Set that executed, was overwritten
// by another client and then executed again by the re-send is not one linearizable put. Not being re-sent, a put whose
// outcome is unknown fails and is recorded as such.
func runRegisterClient(cl *client.Client, h *regHistory, n, keys int, seed uint64, stop <-chan struct{}) {
	rng := rand.New(rand.NewPCG(seed, uint64(n)))
	id := h.newID()
	last := map[int]string{} // the value this client last read per register, which its cas expects
	for seq := 0; ; seq++ {
		select {
		case <-stop:
			return
		default:
		}
		in := regInput{key: int(h.keySet.Load())*keys + rng.IntN(keys)}
		ref := fmt.Sprintf(`^R(%d)`, in.key)
		ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
		call := h.now()
		var out regOutput
		var err error
		switch r := rng.IntN(10); {
		case r < 5:
			in.op = "get"
			var v []byte
			v, _, err = cl.Get(ctx, "APP", ref)
			out.value = string(v)
		case r < 8:
			in.op, in.value = "put", fmt.Sprintf("c%d-%d", n, seq)
			_, err = cl.Txn("APP").Set(ref, []byte(in.value)).Incr(fmt.Sprintf(`^Puts(%d)`, n), "1").Commit(ctx)
		default:
			in.op, in.value, in.expect = "cas", fmt.Sprintf("c%d-%d", n, seq), last[in.key]
			out.ok, _, _, err = cl.CAS(ctx, "APP", ref, []byte(in.expect), in.expect != "", []byte(in.value))
		}
		ret := h.now()
		cancel()
		if h.record(id, in, out, call, ret, err) {
			id = h.newID()
		}
		if err == nil && in.op == "get" {
			last[in.key] = out.value
		}
	}
}

// finalReads reads every register of every key set once more, now that the faults are over, and adds the reads to the
// history: the value each register ends with must be one its own round's history allows, whatever the later rounds did.
func finalReads(t *testing.T, addrs []string, h *regHistory, keys int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cl, err := client.DialMirror(ctx, addrs, client.Options{Conns: 1, RetryTimeout: 30 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	id := h.newID()
	for key := range (int(h.keySet.Load()) + 1) * keys {
		call := h.now()
		v, _, err := cl.Get(ctx, "APP", fmt.Sprintf(`^R(%d)`, key))
		if err != nil {
			t.Fatalf("final read of ^R(%d): %v", key, err)
		}
		h.record(id, regInput{op: "get", key: key}, regOutput{value: string(v)}, call, h.now(), nil)
	}
}

// waitHealthy waits until the mirror is whole again: one member is primary and serving, with the other as its Backup
// whose journal transfer is Active, and both are in Arbiter Controlled mode. It returns the primary, the backup and the
// epoch, as the members' own views show them.
func (f *arbitrated) waitHealthy(t *testing.T) (primary, backup string, epoch uint64) {
	t.Helper()
	arbiterMode := mirror.ModeArbiter.String()
	f.c.WaitFor(t, "a healthy mirror (a serving primary, an Active backup, Arbiter Controlled)", 120*time.Second, func() (bool, error) {
		sts := map[string]mirror.Status{}
		var errs []string
		for _, name := range []string{"A", "B"} {
			st, err := local(f.c.Node(name))
			if err != nil {
				errs = append(errs, err.Error())
				continue
			}
			sts[name] = st
		}
		if len(errs) > 0 {
			return false, fmt.Errorf("%s", strings.Join(errs, "; "))
		}
		for _, p := range []string{"A", "B"} {
			b := map[string]string{"A": "B", "B": "A"}[p]
			sp, sb := sts[p], sts[b]
			if sp.Role == "primary" && row(sp, p).Status == mirror.StatusPrimary && sp.FailoverMode == arbiterMode &&
				row(sp, b).Status == mirror.StatusBackup && row(sp, b).JournalTransfer == mirror.TransferActive &&
				sb.Role == "backup" && sb.Primary == p && sb.Epoch == sp.Epoch && sb.FailoverMode == arbiterMode &&
				row(sb, b).Status == mirror.StatusBackup {
				primary, backup, epoch = p, b, sp.Epoch
				return true, nil
			}
		}
		return false, fmt.Errorf("A: %s; B: %s", brief(sts["A"]), brief(sts["B"]))
	})
	return primary, backup, epoch
}

// brief is one line of a member's own view of the mirror, for wait errors.
func brief(st mirror.Status) string {
	var rows []string
	for _, r := range st.Members {
		rows = append(rows, fmt.Sprintf("%s=%s/%s", r.Name, r.Status, r.JournalTransfer))
	}
	return fmt.Sprintf("role %s epoch %d primary %s mode %q arbiter %q rows [%s] trouble %q takeover %q", st.Role, st.Epoch,
		st.Primary, st.FailoverMode, st.ArbiterConnection, strings.Join(rows, " "), st.Trouble, st.Takeover)
}

// TestLinearizableUnderFaults runs register clients (get, put, cas) and a Set-only writer through mirror-aware clients
// while a nemesis injects random faults on an arbitrated mirror: kills, pauses and partitions of the primary, a cut
// between the members, the arbiter killed or paused. After each fault heals it waits for the mirror to be whole again.
// At the end it checks the register history with porcupine, every acknowledged Set on both members, and that the
// members' records never name two members as starting the same epoch.
func TestLinearizableUnderFaults(t *testing.T) {
	if testing.Short() {
		t.Skip("fault injection with an arbitrated mirror takes a minute")
	}
	began := time.Now()
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("NEMESIS_SEED"); s != "" {
		if _, err := fmt.Sscan(s, &seed); err != nil {
			t.Fatalf("NEMESIS_SEED=%q: %v", s, err)
		}
	}
	t.Logf("nemesis seed %d (set NEMESIS_SEED to replay the fault sequence), %d rounds", seed, nemesisRounds)
	rng := rand.New(rand.NewPCG(seed, 0x6e656d))

	f := newArbitrated(t)
	defer dumpLogs(t, f.c)
	addrs := []string{f.c.Node("A").Addr, f.c.Node("B").Addr}
	primary, backup, epoch := f.waitHealthy(t)

	const clients, keys = 8, 6
	h := &regHistory{start: time.Now(), byOp: map[string]int{}}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for n := range clients {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		cl, err := client.DialMirror(ctx, addrs, client.Options{Conns: 1, RetryTimeout: 60 * time.Second,
			DialTimeout: failoverQoS, AttemptTimeout: 2 * failoverQoS})
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		defer cl.Close()
		wg.Add(1)
		go func() {
			defer wg.Done()
			runRegisterClient(cl, h, n, keys, seed, stop)
		}()
	}
	stopClients := sync.OnceFunc(func() {
		close(stop)
		wg.Wait()
	})
	defer stopClients()
	sets := startSetLoad(t, addrs, 1)

	// progress waits until the register clients have completed n more operations and the Set writer 10 more.
	progress := func(n int64, what string) {
		t.Helper()
		target := h.ok.Load() + n
		f.c.WaitFor(t, fmt.Sprintf("%d more register operations %s", n, what), 90*time.Second, func() (bool, error) {
			return h.ok.Load() >= target, nil
		})
		sets.waitAcks(t, f.c, 10)
	}
	progress(200, "before the first fault")

	kinds := map[string]int{}
	switches := 0 // rounds after which another member was primary
	for round := 1; round <= nemesisRounds; round++ {
		fault := nemesisFaults[rng.IntN(len(nemesisFaults))]
		blackHole := rng.IntN(2) == 0
		hold := 2*failoverQoS + time.Duration(rng.Int64N(int64(failoverQoS)))
		name := fault.name
		if strings.HasPrefix(name, "partition") || strings.HasPrefix(name, "cut") {
			name += map[bool]string{true: "/blackhole", false: "/reset"}[blackHole]
		}
		kinds[name]++
		h.keySet.Add(1)
		progress(100, fmt.Sprintf("on the registers of round %d", round))
		heal := fault.inject(f, primary, backup, blackHole)
		time.Sleep(hold) // the fault's deliberate duration
		heal()
		wasPrimary, wasEpoch := primary, epoch
		primary, backup, epoch = f.waitHealthy(t)
		if epoch < wasEpoch {
			t.Fatalf("round %d: epoch went back from %d to %d", round, wasEpoch, epoch)
		}
		if primary != wasPrimary {
			switches++
		}
		progress(200, fmt.Sprintf("after round %d", round))
		t.Logf("round %d: %s for %s on primary %s (epoch %d) -> primary %s (epoch %d), %d operations so far", round, name,
			hold.Round(time.Millisecond), wasPrimary, wasEpoch, primary, epoch, h.ok.Load())
	}

	stopClients()
	finalReads(t, addrs, h, keys)
	history := h.finish(h.now())
	acked := sets.finish(t)
	waitConverged(t, f.c)
	checkAcked(t, f.c.Node("A"), acked)
	checkAcked(t, f.c.Node("B"), acked)

	checkStart := time.Now()
	res := porcupine.CheckOperationsTimeout(registerModel, history, 120*time.Second)
	checkTime := time.Since(checkStart)
	switch res {
	case porcupine.Ok:
	case porcupine.Illegal:
		t.Errorf("the history of %d register operations under faults is not linearizable (seed %d)", len(history), seed)
		visualize(t, history)
	default:
		t.Errorf("the linearizability check of %d operations timed out after %s (seed %d)", len(history), checkTime, seed)
	}

	// The members' own records of who started each epoch, read once they have stopped.
	for _, name := range []string{backup, primary} {
		if err := f.c.Node(name).Terminate(); err != nil {
			t.Errorf("SIGTERM on %s: %v", name, err)
		}
	}
	later := checkEpochOwners(t, f.c.Node(primary).DataDir, f.c.Node(backup).DataDir)

	var byKind []string
	for k, n := range kinds {
		byKind = append(byKind, fmt.Sprintf("%s=%d", k, n))
	}
	sort.Strings(byKind)
	var byOp []string
	for k, n := range h.byOp {
		byOp = append(byOp, fmt.Sprintf("%s=%d", k, n))
	}
	sort.Strings(byOp)
	t.Logf("summary: seed %d, %d rounds [%s]; %d register operations [%s], %d unknown outcomes, %d failed reads dropped; "+
		"%d acknowledged Sets checked; %d epochs, the primary moved in %d rounds, final primary %s in epoch %d; porcupine %v in %s; "+
		"total %s",
		seed, nemesisRounds, strings.Join(byKind, " "), len(history), strings.Join(byOp, " "), h.unknown, h.dropped,
		len(acked), later+1, switches, primary, epoch, res, checkTime.Round(time.Millisecond), time.Since(began).Round(time.Second))
}

// visualize writes porcupine's view of a history that is not linearizable to an HTML file that outlives the test (a
// t.TempDir would be removed with it) and logs its path.
func visualize(t *testing.T, history []porcupine.Operation) {
	t.Helper()
	// The offending register, on its own: its operations fit in the log, where the whole history would not.
	for _, part := range registerModel.Partition(history) {
		if porcupine.CheckOperations(registerModel, part) {
			continue
		}
		sort.Slice(part, func(i, j int) bool { return part[i].Call < part[j].Call })
		lines := make([]string, 0, len(part))
		for _, op := range part {
			lines = append(lines, fmt.Sprintf("client %d: %.3fs .. %.3fs: %s", op.ClientId, float64(op.Call)/1e9, float64(op.Return)/1e9,
				registerModel.DescribeOperation(op.Input, op.Output)))
		}
		if len(lines) > 400 {
			lines = append(lines[:400], fmt.Sprintf("… %d more", len(part)-400))
		}
		t.Errorf("register %d is not linearizable; its %d operations by call time:\n%s", part[0].Input.(regInput).key, len(part), strings.Join(lines, "\n"))
		break
	}
	_, info := porcupine.CheckOperationsVerbose(registerModel, history, 120*time.Second)
	dir, err := os.MkdirTemp("", "nemesis-porcupine-")
	if err != nil {
		t.Errorf("porcupine visualization: %v", err)
		return
	}
	path := filepath.Join(dir, "history.html")
	if err := porcupine.VisualizePath(registerModel, info, path); err != nil {
		t.Errorf("porcupine visualization: %v", err)
		return
	}
	t.Logf("porcupine visualization: %s", path)
}

// epochClaim is one source's statement that member started epoch.
type epochClaim struct{ member, source string }

// checkEpochOwners compares, across the stopped members' data directories, every record of who started each epoch: the
// epoch history of the mirror configuration in state.json and the epoch-start records of the mirror journal (listed by
// `member journal dump`). Two sources naming different members for one epoch would mean two primaries. Every member's
// configuration must end its epoch history with its own epoch and primary (a deposed member takes the whole configuration
// of the primary that deposed it). It returns the number of epochs after the first that the records show.
func checkEpochOwners(t *testing.T, dirs ...string) (later int) {
	t.Helper()
	owners := map[uint64]epochClaim{}
	claim := func(epoch uint64, c epochClaim) {
		if prev, ok := owners[epoch]; ok && prev.member != c.member {
			t.Errorf("epoch %d was started by %s according to %s, but by %s according to %s", epoch, prev.member, prev.source,
				c.member, c.source)
			return
		}
		if _, ok := owners[epoch]; !ok {
			owners[epoch] = c
		}
	}
	for _, dir := range dirs {
		mirDir := filepath.Join(dir, "mirrors", "MIR")
		data, err := os.ReadFile(filepath.Join(mirDir, "state.json"))
		if err != nil {
			t.Fatal(err)
		}
		var st struct {
			Config mirror.Config `json:"config"`
		}
		if err := json.Unmarshal(data, &st); err != nil {
			t.Fatalf("%s/state.json: %v", mirDir, err)
		}
		var prev uint64
		for _, e := range st.Config.Epochs {
			if e.Epoch <= prev {
				t.Errorf("%s/state.json: epoch history not increasing: %d after %d", mirDir, e.Epoch, prev)
			}
			prev = e.Epoch
			claim(e.Epoch, epochClaim{e.Primary, mirDir + "/state.json"})
		}
		// The history leaves out epoch 1, which the mirror's creator starts.
		if n := len(st.Config.Epochs); n > 0 && (st.Config.Epoch != prev || st.Config.Primary != st.Config.Epochs[n-1].Primary) {
			t.Errorf("%s/state.json: epoch %d primary %s, but its epoch history ends with epoch %d started by %s", mirDir,
				st.Config.Epoch, st.Config.Primary, prev, st.Config.Epochs[n-1].Primary)
		}
		starts := journalEpochStarts(t, filepath.Join(mirDir, "journal"))
		if len(starts) == 0 {
			t.Errorf("%s/journal has no epoch-start record", mirDir)
		}
		for _, s := range starts {
			claim(s.epoch, epochClaim{s.member, fmt.Sprintf("the epoch-start record at %s in %s/journal", s.pos, mirDir)})
		}
	}
	for e := range owners {
		later = max(later, int(e)-1)
	}
	return later
}

// epochStart is an epoch-start record of a journal.
type epochStart struct {
	epoch       uint64
	member, pos string
}

// journalEpochStarts lists the epoch-start records of a mirror journal with `member journal dump --json`, read as a
// stream (a long run's journal is large).
func journalEpochStarts(t *testing.T, dir string) []epochStart {
	t.Helper()
	cmd := exec.Command(memberproc.Build(t, "member"), "journal", "dump", dir, "--json")
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var starts []epochStart
	sc := bufio.NewScanner(out)
	sc.Buffer(nil, 16<<20)
	for sc.Scan() {
		line := sc.Bytes()
		if !strings.Contains(string(line), `"epoch-start"`) {
			continue
		}
		var rec struct {
			Pos   string `json:"pos"`
			Type  string `json:"type"`
			Value string `json:"value"`
		}
		if err := json.Unmarshal(line, &rec); err != nil {
			t.Fatalf("journal dump of %s: %v: %s", dir, err, line)
		}
		if rec.Type != "epoch-start" {
			continue
		}
		pos, err := journal.ParsePosition(rec.Pos)
		if err != nil {
			t.Fatalf("journal dump of %s: %v", dir, err)
		}
		starts = append(starts, epochStart{epoch: pos.Epoch, member: rec.Value, pos: rec.Pos})
	}
	if err := sc.Err(); err != nil {
		t.Fatalf("journal dump of %s: %v", dir, err)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("journal dump of %s: %v: %s", dir, err, stderr.String())
	}
	return starts
}

// TestRegisterModelUnknownOutcomes guards the checker's handling of failed writes: a put or cas whose outcome is unknown
// may have taken effect or not, but a read may not see a value no write could have produced.
func TestRegisterModelUnknownOutcomes(t *testing.T) {
	const end = 1000
	put := porcupine.Operation{ClientId: 0, Input: regInput{op: "put", key: 1, value: "a"}, Call: 0, Output: regOutput{}, Return: 10}
	lostPut := porcupine.Operation{ClientId: 1, Input: regInput{op: "put", key: 1, value: "b"}, Call: 20, Output: regOutput{unknown: true}, Return: end}
	lostCAS := porcupine.Operation{ClientId: 2, Input: regInput{op: "cas", key: 1, value: "c", expect: "a"}, Call: 20, Output: regOutput{unknown: true}, Return: end}
	read := func(v string, at int64) porcupine.Operation {
		return porcupine.Operation{ClientId: 3, Input: regInput{op: "get", key: 1}, Call: at, Output: regOutput{value: v}, Return: at + 5}
	}
	for _, tc := range []struct {
		ops  []porcupine.Operation
		want bool
		desc string
	}{
		{[]porcupine.Operation{put, lostPut, read("a", 30)}, true, "an unknown put that did not take effect"},
		{[]porcupine.Operation{put, lostPut, read("b", 30)}, true, "an unknown put that took effect"},
		{[]porcupine.Operation{put, lostPut, read("b", 30), read("a", 40)}, false, "an unknown put undone after it was read"},
		{[]porcupine.Operation{put, lostCAS, read("a", 30)}, true, "an unknown cas that did not take effect"},
		{[]porcupine.Operation{put, lostCAS, read("c", 30)}, true, "an unknown cas that took effect"},
		{[]porcupine.Operation{put, lostCAS, read("x", 30)}, false, "a read of a value never written"},
	} {
		if got := porcupine.CheckOperations(registerModel, tc.ops); got != tc.want {
			t.Errorf("%s: linearizable %v, want %v", tc.desc, got, tc.want)
		}
	}
}
