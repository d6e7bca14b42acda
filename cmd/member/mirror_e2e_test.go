package main_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/mirrorkit/mirrorkit/engine/client"
	"github.com/mirrorkit/mirrorkit/engine/globals"
	"github.com/mirrorkit/mirrorkit/engine/mirror"
	"github.com/mirrorkit/mirrorkit/engine/store"
	"github.com/mirrorkit/mirrorkit/engine/wire"
	"github.com/mirrorkit/mirrorkit/internal/testcluster"
)

// rawSet sends one Set over the bare protocol and returns the member's typed refusal, if any.
func rawSet(t *testing.T, addr, db, ref string) *wire.Error {
	t.Helper()
	return rawOp(t, addr, db, wire.Op{Kind: wire.OpSet, Key: encodeRef(t, ref), Value: []byte("x")})
}

// rawGet sends one Get over the bare protocol and returns the member's typed refusal, if any.
func rawGet(t *testing.T, addr, db, ref string) *wire.Error {
	t.Helper()
	return rawOp(t, addr, db, wire.Op{Kind: wire.OpGet, Key: encodeRef(t, ref)})
}

func encodeRef(t *testing.T, ref string) []byte {
	t.Helper()
	key, err := globals.Encode(globals.MustParse(ref))
	if err != nil {
		t.Fatal(err)
	}
	return key
}

// rawOp sends one operation without a mirror-aware client (no redirect is followed).
func rawOp(t *testing.T, addr, db string, op wire.Op) *wire.Error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	nc, err := wire.Dial(ctx, addr, nil)
	if err != nil {
		t.Fatal(err)
	}
	conn := wire.NewConn(nc, wire.DefaultMaxFrame)
	defer conn.Close()
	if _, err := wire.ClientHandshake(ctx, conn, wire.Hello{Purpose: wire.PurposeClient, Name: "raw"}); err != nil {
		t.Fatal(err)
	}
	req := wire.Request{DB: db, Ops: []wire.Op{op}}
	if err := conn.WriteFrame(wire.Frame{Kind: wire.KindRequest, ReqID: 1, Payload: wire.EncodeRequest(nil, &req)}); err != nil {
		t.Fatal(err)
	}
	f, err := conn.ReadFrame()
	if err != nil {
		t.Fatal(err)
	}
	resp, err := wire.DecodeResponse(f.Payload)
	if err != nil {
		t.Fatal(err)
	}
	return resp.Err
}

// member describes one member of a test mirror: its name and how it joins ("" for the creator).
type member struct{ name, as string }

// newMirror starts the members, creates mirror MIR on the first (QoS 2s plus createArgs), joins the others, and creates the
// mirrored database APP everywhere.
func newMirror(t *testing.T, c *testcluster.Cluster, members []member, createArgs ...string) {
	t.Helper()
	c.Start()
	first := c.Node(members[0].name)
	mustNode(t, first, append([]string{"mirror", "create", "MIR", "--qos", "2s"}, createArgs...)...)
	for _, m := range members[1:] {
		mustNode(t, c.Node(m.name), "mirror", "join", "MIR", "--primary", first.Addr, "--as", m.as)
	}
	mustNode(t, first, "db", "create", "APP", "--mirror", "MIR")
	for _, m := range members[1:] {
		n := c.Node(m.name)
		c.WaitFor(t, "create APP on "+m.name, 30*time.Second, func() (bool, error) {
			r := n.CLI(t, "db", "create", "APP", "--mirror", "MIR")
			if r.ExitCode != 0 {
				return false, fmt.Errorf("%s", r.Stderr)
			}
			return true, nil
		})
	}
}

func mustNode(t *testing.T, n *testcluster.Node, args ...string) string {
	t.Helper()
	r := n.CLI(t, args...)
	if r.ExitCode != 0 {
		t.Fatalf("member %s on %s: exit %d: %s", strings.Join(args, " "), n.Name, r.ExitCode, r.Stderr)
	}
	return r.Stdout
}

// monitor is the Mirror Monitor's view of mirror MIR on the member (merged with the primary's).
func monitor(n *testcluster.Node) (mirror.Status, error) {
	return mirrorStatus(n, "/api/v1/mirror/status")
}

// local is the member's own view of mirror MIR.
func local(n *testcluster.Node) (mirror.Status, error) {
	return mirrorStatus(n, "/api/v1/mirror/local")
}

func mirrorStatus(n *testcluster.Node, path string) (mirror.Status, error) {
	var sts []mirror.Status
	if _, err := n.TryAdminGet(path, &sts); err != nil {
		return mirror.Status{}, err
	}
	for _, st := range sts {
		if st.Mirror == "MIR" {
			return st, nil
		}
	}
	return mirror.Status{}, fmt.Errorf("member %s reports no mirror MIR", n.Name)
}

func row(st mirror.Status, name string) mirror.MemberStatus {
	for _, r := range st.Members {
		if r.Name == name {
			return r
		}
	}
	return mirror.MemberStatus{}
}

// waitTransfer waits until the primary shows member's journal transfer as want.
func waitTransfer(t *testing.T, c *testcluster.Cluster, primary, member, want string) {
	t.Helper()
	c.WaitFor(t, fmt.Sprintf("%s's journal transfer %q on %s", member, want, primary), 60*time.Second, func() (bool, error) {
		st, err := monitor(c.Node(primary))
		if err != nil {
			return false, err
		}
		got := row(st, member).JournalTransfer
		return got == want, fmt.Errorf("journal transfer of %s is %q", member, got)
	})
}

func hashOf(n *testcluster.Node) (store.LogicalHash, error) {
	var h store.LogicalHash
	status, err := n.TryAdminGet("/api/v1/databases/APP/hash", &h)
	if err == nil && status != 200 {
		err = fmt.Errorf("hash on %s: HTTP %d", n.Name, status)
	}
	return h, err
}

// waitConverged waits until the copies of APP on nodes (default: every member) have the same logical hash, and returns it.
func waitConverged(t *testing.T, c *testcluster.Cluster, nodes ...*testcluster.Node) store.LogicalHash {
	t.Helper()
	if len(nodes) == 0 {
		nodes = c.Nodes()
	}
	var h store.LogicalHash
	c.WaitFor(t, "all copies of APP converge", 60*time.Second, func() (bool, error) {
		var first store.LogicalHash
		for i, n := range nodes {
			got, err := hashOf(n)
			if err != nil {
				return false, err
			}
			if i == 0 {
				first = got
				continue
			}
			if got != first {
				return false, fmt.Errorf("%s has %d nodes (%s…), %s has %d (%s…)", nodes[0].Name, first.Nodes, first.SHA256[:12], n.Name, got.Nodes, got.SHA256[:12])
			}
		}
		h = first
		return true, nil
	})
	return h
}

// load is a testcluster.Load on database APP.
type load struct{ *testcluster.Load }

// loadOptions shape a load: the client's options, whether every write is a Set (idempotent, so the client re-sends it
// across any failover) or every fourth a transaction with an Incr, and the global name of the keys.
type loadOptions struct {
	client   client.Options
	setsOnly bool
	prefix   string
}

func startLoad(t *testing.T, addrs []string, writers int) *load {
	t.Helper()
	return startLoadWith(t, addrs, writers, loadOptions{client: client.Options{Conns: 2, RetryTimeout: 20 * time.Second}, prefix: "L"})
}

func startLoadWith(t *testing.T, addrs []string, writers int, o loadOptions) *load {
	t.Helper()
	return &load{testcluster.StartLoad(t, addrs, testcluster.LoadOptions{Client: o.client, Writers: writers, SetsOnly: o.setsOnly, Prefix: o.prefix})}
}

// waitAcks waits until at least n more writes have been acknowledged.
func (l *load) waitAcks(t *testing.T, c *testcluster.Cluster, n int64) {
	t.Helper()
	l.WaitAcks(t, c, n)
}

// finish stops the writers and returns what was acknowledged.
func (l *load) finish(t *testing.T) map[string]string {
	t.Helper()
	return l.Finish(t)["APP"]
}

// checkAcked verifies every acknowledged write on a member.
func checkAcked(t *testing.T, n *testcluster.Node, acked map[string]string) {
	t.Helper()
	c := n.Client(t, 2)
	for ref, val := range acked {
		v, ok, err := c.Get(context.Background(), "APP", ref)
		if err != nil || !ok || string(v) != val {
			t.Fatalf("acknowledged %s=%s on %s: got %q %v %v", ref, val, n.Name, v, ok, err)
		}
	}
}

func TestMirrorConvergesAcrossMemberTypes(t *testing.T) {
	c := testcluster.New(t)
	for _, n := range []string{"A", "B", "C", "D"} {
		c.Add(n)
	}
	newMirror(t, c, []member{{"A", ""}, {"B", "failover"}, {"C", "dr"}, {"D", "reporting-ro"}})
	waitTransfer(t, c, "A", "B", mirror.TransferActive)
	l := startLoad(t, []string{c.Node("A").Addr}, 8)
	l.waitAcks(t, c, 1500)
	acked := l.finish(t)
	h := waitConverged(t, c)
	if h.Nodes < 1500 {
		t.Fatalf("converged on only %d nodes", h.Nodes)
	}
	checkAcked(t, c.Node("D"), acked)

	st, err := monitor(c.Node("C"))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string][3]string{
		"A": {mirror.StatusPrimary, mirror.TransferNA, mirror.TransferNA},
		"B": {mirror.StatusBackup, mirror.TransferActive, mirror.CaughtUp},
		"C": {mirror.StatusConnected, mirror.CaughtUp, mirror.CaughtUp},
		"D": {mirror.StatusConnected, mirror.CaughtUp, mirror.CaughtUp},
	}
	for name, w := range want {
		r := row(st, name)
		if [3]string{r.Status, r.JournalTransfer, r.Dejournaling} != w {
			t.Errorf("monitor row %s = %q %q %q, want %q", name, r.Status, r.JournalTransfer, r.Dejournaling, w)
		}
	}
	if len(st.Databases) != 1 || st.Databases[0].Status != mirror.DBDejournaling {
		t.Errorf("databases on C: %+v", st.Databases)
	}
	// A write sent to a non-primary is refused with the primary's address (raw protocol); the mirror-aware CLI follows it.
	if we := rawSet(t, c.Node("C").Addr, "APP", `^X`); we == nil || we.Code != wire.CodeNotPrimary || we.Redirect != c.Node("A").Addr || !strings.Contains(we.Message, "read-only") {
		t.Errorf("write on the DR async: %+v", we)
	}
	// Reads: the backup refuses them (clients read the primary), asyncs serve them.
	if we := rawGet(t, c.Node("B").Addr, "APP", `^L(0,0)`); we == nil || we.Code != wire.CodeNotPrimary || we.Redirect != c.Node("A").Addr {
		t.Errorf("read on the backup: %+v", we)
	}
	for _, async := range []string{"C", "D"} {
		if we := rawGet(t, c.Node(async).Addr, "APP", `^L(0,0)`); we != nil {
			t.Errorf("read on async %s refused: %+v", async, we)
		}
	}
	mustNode(t, c.Node("C"), "kv", "set", "^X", "via-redirect", "--db", "APP")
	if got := mustNode(t, c.Node("A"), "kv", "get", "^X", "--db", "APP"); got != "via-redirect\n" {
		t.Errorf("write through C's address landed as %q on the primary", got)
	}
	for name, code := range map[string]int{"A": 200, "B": 503, "C": 503} {
		if got := c.Node(name).AdminGet(t, "/mirror/health", nil); got != code {
			t.Errorf("/mirror/health on %s = %d, want %d", name, got, code)
		}
	}
	if got := c.Node("B").AdminGet(t, "/mirror/health?role=backup", nil); got != 200 {
		t.Errorf("/mirror/health?role=backup on B = %d", got)
	}
	for name, wants := range map[string][]string{
		"A": {`mirrorkit_mirror_ack_latency_seconds_count`, `mirrorkit_mirror_journal_latency_bytes{member="B",mirror="MIR"}`, `mirrorkit_mirror_journal_latency_seconds{member="C",mirror="MIR"}`, `mirrorkit_mirror_primary{mirror="MIR"} 1`},
		"B": {`mirrorkit_mirror_dejournal_latency_seconds{mirror="MIR"}`, `mirrorkit_mirror_dejournal_latency_bytes{mirror="MIR"}`, `mirrorkit_mirror_arrival_bytes_total{form="wire",mirror="MIR"}`, `mirrorkit_mirror_compression_ratio{mirror="MIR"}`},
	} {
		resp, err := http.Get("http://" + c.Node(name).AdminAddr + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		for _, w := range wants {
			if !strings.Contains(string(body), w) {
				t.Errorf("/metrics on %s lacks %s", name, w)
			}
		}
	}
	out := mustNode(t, c.Node("B"), "status", "--dbs")
	for _, s := range []string{"Active", "Disaster Recovery", "Read-Only Reporting", "APP", "Dejournaling", "no arbiter"} {
		if !strings.Contains(out, s) {
			t.Errorf("member status lacks %q:\n%s", s, out)
		}
	}
}

func TestBackupRestartCatchesUpAndBecomesActive(t *testing.T) {
	c := testcluster.New(t)
	c.Add("A")
	c.Add("B")
	newMirror(t, c, []member{{"A", ""}, {"B", "failover"}})
	waitTransfer(t, c, "A", "B", mirror.TransferActive)
	l := startLoad(t, []string{c.Node("A").Addr}, 4)
	l.waitAcks(t, c, 300)
	c.Node("B").Kill()
	l.waitAcks(t, c, 300) // commits go on without the backup
	c.Node("B").Restart()
	l.waitAcks(t, c, 300)
	waitTransfer(t, c, "A", "B", mirror.TransferActive)
	acked := l.finish(t)
	waitConverged(t, c)
	checkAcked(t, c.Node("B"), acked)
}

func TestAsyncBehindSlowLinkCatchesUp(t *testing.T) {
	c := testcluster.New(t)
	c.Add("A")
	c.Add("B")
	c.Add("C")
	link := c.Link("C", "A")
	newMirror(t, c, []member{{"A", ""}, {"B", "failover"}, {"C", "dr"}})
	waitTransfer(t, c, "A", "B", mirror.TransferActive)
	waitTransfer(t, c, "A", "C", mirror.CaughtUp)
	link.SetBandwidth(20 << 10)
	link.SetDelay(100 * time.Millisecond)
	l := startLoad(t, []string{c.Node("A").Addr}, 8)
	// Commits keep being acknowledged while the async falls behind on its slow link.
	c.WaitFor(t, "C falls behind", 60*time.Second, func() (bool, error) {
		st, err := monitor(c.Node("A"))
		if err != nil {
			return false, err
		}
		return strings.HasSuffix(row(st, "C").JournalTransfer, "behind"), fmt.Errorf("C is %q", row(st, "C").JournalTransfer)
	})
	l.waitAcks(t, c, 500)
	st, _ := monitor(c.Node("A"))
	if got := row(st, "B").JournalTransfer; got != mirror.TransferActive {
		t.Fatalf("backup transfer %q while the async lags", got)
	}
	acked := l.finish(t)
	link.SetBandwidth(0)
	link.SetDelay(0)
	waitConverged(t, c)
	checkAcked(t, c.Node("C"), acked)
}

func TestPlannedFailoversUnderLoadLoseNothing(t *testing.T) {
	c := testcluster.New(t)
	c.Add("A")
	c.Add("B")
	c.Add("C")
	newMirror(t, c, []member{{"A", ""}, {"B", "failover"}, {"C", "dr"}})
	l := startLoad(t, []string{c.Node("A").Addr, c.Node("B").Addr}, 16)
	defer dumpLogs(t, c)
	primary, backup := "A", "B"
	for round := 0; round < 10; round++ {
		waitTransfer(t, c, primary, backup, mirror.TransferActive)
		l.waitAcks(t, c, 100)
		mustNode(t, c.Node(primary), "mirror", "failover", "MIR")
		primary, backup = backup, primary
		st, err := monitor(c.Node(primary))
		if err != nil {
			t.Fatal(err)
		}
		if st.Primary != primary || st.Epoch != uint64(round+2) {
			t.Fatalf("after failover %d: primary %s epoch %d", round+1, st.Primary, st.Epoch)
		}
	}
	l.waitAcks(t, c, 100)
	acked := l.finish(t)
	waitConverged(t, c)
	for _, n := range []string{"A", "B", "C"} {
		checkAcked(t, c.Node(n), acked)
	}
}

func TestSIGTERMOnPrimaryHandsOver(t *testing.T) {
	c := testcluster.New(t)
	c.Add("A")
	c.Add("B")
	newMirror(t, c, []member{{"A", ""}, {"B", "failover"}})
	waitTransfer(t, c, "A", "B", mirror.TransferActive)
	l := startLoad(t, []string{c.Node("A").Addr, c.Node("B").Addr}, 8)
	l.waitAcks(t, c, 200)
	if err := c.Node("A").Terminate(); err != nil {
		t.Fatalf("SIGTERM: %v", err)
	}
	l.waitAcks(t, c, 200)
	st, err := monitor(c.Node("B"))
	if err != nil || st.Primary != "B" {
		t.Fatalf("after SIGTERM on A: primary %q (%v)", st.Primary, err)
	}
	acked := l.finish(t)
	c.Node("A").Restart()
	waitTransfer(t, c, "B", "A", mirror.TransferActive)
	waitConverged(t, c)
	checkAcked(t, c.Node("A"), acked)
}

// TestCompressionGivesIdenticalData writes the same data through mirrors with and without compression.
func TestCompressionGivesIdenticalData(t *testing.T) {
	var hashes []store.LogicalHash
	for _, codec := range []string{"none", "zstd"} {
		c := testcluster.New(t)
		c.Add("A")
		c.Add("B")
		c.Add("C")
		newMirror(t, c, []member{{"A", ""}, {"B", "failover"}, {"C", "dr"}}, "--compression-failover", codec, "--compression-async", codec)
		cl := c.Node("A").Client(t, 2)
		for i := 0; i < 300; i++ {
			if err := cl.Set(context.Background(), "APP", fmt.Sprintf(`^Z(%d)`, i), []byte(strings.Repeat(fmt.Sprintf("value %d ", i), 10))); err != nil {
				t.Fatal(err)
			}
		}
		hashes = append(hashes, waitConverged(t, c))
		st, _ := monitor(c.Node("A"))
		if codec == "zstd" && st.Ratio < 1.5 {
			t.Errorf("zstd compression ratio %.2f on repetitive values", st.Ratio)
		}
		if codec == "none" && st.Ratio > 1.01 {
			t.Errorf("no compression, yet ratio %.2f", st.Ratio)
		}
	}
	if hashes[0] != hashes[1] {
		t.Fatalf("data differs with compression: %+v vs %+v", hashes[0], hashes[1])
	}
}

func dumpLogs(t *testing.T, c *testcluster.Cluster) {
	if t.Failed() {
		t.Log(c.Logs(60))
	}
}
