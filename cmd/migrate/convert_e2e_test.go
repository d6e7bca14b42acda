package main_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mirrorkit/mirrorkit/engine/mirror"
	"github.com/mirrorkit/mirrorkit/engine/server"
	"github.com/mirrorkit/mirrorkit/engine/shadow"
	"github.com/mirrorkit/mirrorkit/engine/store"
	"github.com/mirrorkit/mirrorkit/internal/memberproc"
	"github.com/mirrorkit/mirrorkit/internal/testcluster"
	"github.com/mirrorkit/mirrorkit/plans"
)

// shadowSetup starts the source A and the destinations dests, each running shadow SH of A's databases dbs (same names),
// then fills the databases on A and waits until every shadow has applied everything: each copy is then current and
// untouched, with A's logical hash.
func shadowSetup(t *testing.T, dbs []string, dests ...string) (*testcluster.Cluster, *testcluster.Node) {
	t.Helper()
	c := testcluster.New(t)
	c.Add("A")
	for _, d := range dests {
		c.Add(d)
	}
	c.Start()
	t.Cleanup(func() {
		if t.Failed() {
			for _, n := range c.Nodes() {
				t.Logf("log of %s:\n%s", n.Name, n.LogTail(60))
			}
		}
	})
	A := c.Node("A")
	var mapping []string
	for _, db := range dbs {
		mapping = append(mapping, db+"="+db)
	}
	for _, d := range dests {
		n := c.Node(d)
		mustNode(t, n, "shadow", "create", "SH", "--source", A.Addr, "--map", strings.Join(mapping, ","))
		mustNode(t, n, "shadow", "start", "SH")
	}
	for _, db := range dbs {
		fill(t, A, db, 500, 100)
	}
	for _, d := range dests {
		waitShadowCurrent(t, c, A, c.Node(d), dbs)
	}
	return c, A
}

// waitShadowCurrent waits until shadow SH on n is Processing with nothing left to apply, and n's copy of each database
// has the source's logical hash.
func waitShadowCurrent(t *testing.T, c *testcluster.Cluster, src, n *testcluster.Node, dbs []string) {
	t.Helper()
	c.WaitFor(t, "shadow SH on "+n.Name+" is current", 60*time.Second, func() (bool, error) {
		st, err := shadowStatus(n)
		if err != nil {
			return false, err
		}
		if st.State != shadow.Processing || !st.Connected || st.BytesBehind != 0 {
			return false, fmt.Errorf("shadow SH on %s: %s, connected %v, %d bytes behind", n.Name, st.State, st.Connected, st.BytesBehind)
		}
		for _, db := range dbs {
			hs, err := logicalHash(src, db)
			if err != nil {
				return false, err
			}
			hn, err := logicalHash(n, db)
			if err != nil {
				return false, err
			}
			if hs != hn {
				return false, fmt.Errorf("%s has %d nodes on %s, %d on %s", db, hs.Nodes, src.Name, hn.Nodes, n.Name)
			}
		}
		return true, nil
	})
}

func shadowStatus(n *testcluster.Node) (shadow.Status, error) {
	var st shadow.Status
	status, err := n.TryAdminGet("/api/v1/shadows/SH", &st)
	if err == nil && status != http.StatusOK {
		err = fmt.Errorf("shadow SH on %s: HTTP %d", n.Name, status)
	}
	return st, err
}

func logicalHash(n *testcluster.Node, db string) (store.LogicalHash, error) {
	var h store.LogicalHash
	status, err := n.TryAdminGet("/api/v1/databases/"+db+"/hash", &h)
	if err == nil && status != http.StatusOK {
		err = fmt.Errorf("hash of %s on %s: HTTP %d", db, n.Name, status)
	}
	return h, err
}

// mirrorsOf is the mirrors n belongs to.
func mirrorsOf(t *testing.T, n *testcluster.Node) []mirror.Status {
	t.Helper()
	var sts []mirror.Status
	n.AdminGet(t, "/api/v1/mirror/local", &sts)
	return sts
}

func shadowsOn(t *testing.T, n *testcluster.Node) []shadow.Status {
	t.Helper()
	var all server.ShadowsStatus
	n.AdminGet(t, "/api/v1/shadows", &all)
	return all.Shadows
}

// snapshotBytesServed reads the member's mirrorkit_snapshot_bytes_served_total.
func snapshotBytesServed(t *testing.T, n *testcluster.Node) float64 {
	t.Helper()
	resp, err := http.Get("http://" + n.AdminAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "mirrorkit_snapshot_bytes_served_total "); ok {
			f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			if err != nil {
				t.Fatalf("metrics of %s: %q: %v", n.Name, sc.Text(), err)
			}
			return f
		}
	}
	t.Fatalf("metrics of %s have no mirrorkit_snapshot_bytes_served_total (%v)", n.Name, sc.Err())
	return 0
}

// convertOutput is one JSON value printed by convert-shadow --json: the plan first, then progress events, then the result.
type convertOutput struct {
	Step    int    `json:"step"`
	Kind    string `json:"kind"`
	Phase   string `json:"phase"`
	Message string `json:"message"`
	Event   string `json:"event"`
	State   struct {
		Steps    []json.RawMessage `json:"steps"`
		Finished bool              `json:"finished"`
	} `json:"state"`
}

func decodeOutput(t *testing.T, stdout string) []convertOutput {
	t.Helper()
	var out []convertOutput
	dec := json.NewDecoder(strings.NewReader(stdout))
	for {
		var v convertOutput
		if err := dec.Decode(&v); errors.Is(err, io.EOF) {
			return out
		} else if err != nil {
			t.Fatalf("convert-shadow --json output: %v\n%s", err, stdout)
		}
		out = append(out, v)
	}
}

// convertArgs converts the shadows of A on B (backup) and C (DR) into mirror MIR. A step waits at most 40s, so a conversion
// that cannot finish fails the test rather than hanging it.
func convertArgs(c *testcluster.Cluster, extra ...string) []string {
	return append([]string{"convert-shadow", "--source", c.Node("A").Addr, "--shadow", c.Node("B").Addr + "," + c.Node("C").Addr,
		"--as", "backup,dr", "--mirror", "MIR", "--qos", "2s", "--wait", "40s"}, extra...)
}

// checkConverted checks the end state of a conversion of dbs from A to B (backup) and C (DR): every acknowledged write on
// every member, one logical hash, B and C Dejournaling, the shadows gone.
func checkConverted(t *testing.T, c *testcluster.Cluster, acked map[string]map[string]string, dbs []string) {
	t.Helper()
	// A copy shows Catchup Running until it records that it applied the journal's end, a moment after its data has.
	c.WaitFor(t, "every copy is Dejournaling", 60*time.Second, func() (bool, error) {
		for _, n := range c.Nodes()[1:] {
			for _, db := range dbs {
				if s := dbStatus(t, n, db); s != mirror.DBDejournaling {
					return false, fmt.Errorf("%s on %s is %q", db, n.Name, s)
				}
			}
		}
		return true, nil
	})
	for _, db := range dbs {
		checkCopies(t, c, db, acked[db])
	}
	for _, n := range c.Nodes() {
		sts := mirrorsOf(t, n)
		if len(sts) != 1 || sts[0].Mirror != "MIR" || sts[0].Primary != "A" {
			t.Fatalf("%s's mirrors after the conversion: %+v, want MIR with primary A", n.Name, sts)
		}
		if n.Name != "A" {
			if sh := shadowsOn(t, n); len(sh) != 0 {
				t.Fatalf("%s still has shadows after the conversion: %+v", n.Name, sh)
			}
		}
	}
}

// A source with three shadowed databases, written to throughout, converts into a mirror with every copy joining in place:
// no database is copied, every acknowledged write is on every member, and a dry run before changes nothing.
func TestConvertShadowInPlace(t *testing.T) {
	dbs := []string{"ONE", "TWO", "THREE"}
	c, A := shadowSetup(t, dbs, "B", "C")
	B, C := c.Node("B"), c.Node("C")
	state := t.TempDir()
	w := startWriter(t, []string{A.Addr}, dbs...)
	w.WaitAcks(t, c, 200)
	args := convertArgs(c, "--state-dir", state)

	dry := mustMigrate(t, nil, append(args, "--dry-run")...)
	for _, want := range []string{"create mirror MIR on A", "B joins mirror MIR", "C joins mirror MIR", "B's copy of TWO joins the mirror in place",
		"C's copy of THREE joins the mirror in place", "remove shadow SH on B", "dry run: every pre-check passes"} {
		if !strings.Contains(dry.stdout, want) {
			t.Fatalf("dry run output lacks %q:\n%s", want, dry.stdout)
		}
	}
	if strings.Contains(dry.stdout, "copy ONE from") || strings.Contains(dry.stdout, "delete") {
		t.Fatalf("the dry run plans a copy of a current, untouched copy:\n%s", dry.stdout)
	}
	if entries, _ := os.ReadDir(state); len(entries) != 0 {
		t.Fatalf("the dry run wrote %d files into the state dir", len(entries))
	}
	for _, n := range []*testcluster.Node{A, B, C} {
		if sts := mirrorsOf(t, n); len(sts) != 0 {
			t.Fatalf("after the dry run %s is in mirror %s", n.Name, sts[0].Mirror)
		}
	}
	for _, n := range []*testcluster.Node{B, C} {
		if st, err := shadowStatus(n); err != nil || st.State != shadow.Processing {
			t.Fatalf("after the dry run shadow SH on %s is %q (%v)", n.Name, st.State, err)
		}
	}

	r := mustMigrate(t, nil, append(args, "--yes", "--json")...)
	out := decodeOutput(t, r.stdout)
	inPlace := 0
	for _, ev := range out {
		if ev.Phase == "note" && strings.Contains(ev.Message, "joined in place") && strings.Contains(ev.Message, "matches the primary's") {
			inPlace++
		}
	}
	if inPlace != len(dbs)*2 {
		t.Fatalf("%d notes of a copy joined in place with the primary's hash, want %d:\n%s", inPlace, len(dbs)*2, r.stdout)
	}
	if last := out[len(out)-1]; last.Event != "done" {
		t.Fatalf("the last line is not the result: %+v", last)
	}

	w.WaitAcks(t, c, 200)
	checkConverted(t, c, w.Finish(t), dbs)
	if got := snapshotBytesServed(t, A); got != 0 {
		t.Fatalf("A served %.0f snapshot bytes: a copy was made", got)
	}
}

// A destination's copy written there after shadowing began cannot join in place: the plan deletes it and copies the
// database from the source, and the conversion ends with one logical hash.
func TestConvertShadowModifiedCopy(t *testing.T) {
	dbs := []string{"ONE", "TWO"}
	c, A := shadowSetup(t, dbs, "B", "C")
	B := c.Node("B")
	mustNode(t, B, "kv", "set", "--db", "TWO", "^Local(1)", "written on B")
	c.WaitFor(t, "B's copy of TWO is marked modified", 10*time.Second, func() (bool, error) {
		st, err := shadowStatus(B)
		for _, ds := range st.Databases {
			if ds.Source == "TWO" && ds.Modified {
				return true, nil
			}
		}
		return false, err
	})
	w := startWriter(t, []string{A.Addr}, dbs...)
	w.WaitAcks(t, c, 100)
	args := convertArgs(c, "--state-dir", t.TempDir())

	dry := mustMigrate(t, nil, append(args, "--dry-run")...)
	for _, want := range []string{"delete B's copy of TWO (the copy was written on B", "copy TWO from A to B", "B's copy of ONE joins the mirror in place",
		"C's copy of TWO joins the mirror in place"} {
		if !strings.Contains(dry.stdout, want) {
			t.Fatalf("dry run output lacks %q:\n%s", want, dry.stdout)
		}
	}
	if strings.Contains(dry.stdout, "B's copy of TWO joins") {
		t.Fatalf("the dry run has B's modified copy of TWO join in place:\n%s", dry.stdout)
	}

	mustMigrate(t, nil, append(args, "--yes")...)
	w.WaitAcks(t, c, 100)
	checkConverted(t, c, w.Finish(t), dbs)
	if got := snapshotBytesServed(t, A); got <= 0 {
		t.Fatalf("A served no snapshot bytes, yet B's copy of TWO was replaced")
	}
}

// runConvertUntil runs migrate with args and kills it with SIGKILL when step reaches phase; if it ended first, it returns
// false and the run's result.
func runConvertUntil(t *testing.T, step int, phase string, args []string) (bool, result) {
	t.Helper()
	// Held there until killed (plans.HoldEnv): a fast step would otherwise be over before the kill lands.
	hold := []string{fmt.Sprintf("%s=%d:%s", plans.HoldEnv, step, phase)}
	ok, r := memberproc.RunUntil(t, "migrate", hold, 2*time.Minute, func(line json.RawMessage) bool {
		var v convertOutput
		return json.Unmarshal(line, &v) == nil && v.Step == step && v.Phase == phase
	}, args...)
	return ok, result{stdout: r.Stdout, stderr: r.Stderr, code: r.ExitCode}
}

// kill -9 of convert-shadow in each step in turn, once as its action is about to start and once as its verification starts (the action
// done, the step not yet recorded as done), each time run again, while a client writes: the last run finishes the plan,
// every copy still joins in place, and no acknowledged write is lost.
func TestConvertShadowKillEachStep(t *testing.T) {
	dbs := []string{"ONE", "TWO"}
	c, A := shadowSetup(t, dbs, "B", "C")
	w := startWriter(t, []string{A.Addr}, dbs...)
	w.WaitAcks(t, c, 100)
	args := convertArgs(c, "--state-dir", t.TempDir(), "--yes", "--json")
	// create-mirror, 2 joins, 2 adds, 4 joins in place, 2 shadow removals.
	const steps = 11
	for step := 1; step <= steps; step++ {
		for _, phase := range []string{"run", "verify"} {
			if killed, r := runConvertUntil(t, step, phase, args); !killed {
				t.Fatalf("the run to be killed in the %s of step %d ended before it: %s", phase, step, r)
			}
			w.WaitAcks(t, c, 20)
		}
	}
	final := mustMigrate(t, nil, args...)
	out := decodeOutput(t, final.stdout)
	if last := out[len(out)-1]; last.Event != "done" || len(last.State.Steps) != steps {
		t.Fatalf("the last line of the last run is not the result of a plan of %d steps: %+v", steps, last)
	}
	// The same command once more (as after a kill that landed just after the last step): the plan is done, not rebuilt.
	again := decodeOutput(t, mustMigrate(t, nil, args...).stdout)
	if last := again[len(again)-1]; last.Event != "done" || len(last.State.Steps) != steps || !last.State.Finished {
		t.Fatalf("a re-run of the finished conversion did not report it done: %+v", last)
	}
	w.WaitAcks(t, c, 100)
	checkConverted(t, c, w.Finish(t), dbs)
	if got := snapshotBytesServed(t, A); got != 0 {
		t.Fatalf("A served %.0f snapshot bytes: a copy was made", got)
	}
}

// TestConvertShadowUndo: a conversion stopped before its point of no return (the first database added to the mirror) is
// undone — the mirror removed, the destinations out of it — and the shadows keep applying the source as before; past that
// point, undo is refused with the reason.
func TestConvertShadowUndo(t *testing.T) {
	dbs := []string{"ONE"}
	c, A := shadowSetup(t, dbs, "B", "C")
	args := convertArgs(c, "--state-dir", t.TempDir(), "--yes", "--json")
	dry := mustMigrate(t, nil, append(convertArgs(c, "--state-dir", t.TempDir()), "--dry-run")...)
	if !strings.Contains(dry.stdout, "point of no return") {
		t.Fatalf("the plan does not show its point of no return:\n%s", dry.stdout)
	}
	// Steps: create the mirror, B joins, C joins, add ONE (the point of no return), … Stop in C's join.
	if killed, r := runConvertUntil(t, 3, "verify", args); !killed {
		t.Fatalf("the run ended before the verification of step 3: %s", r)
	}
	undo := decodeOutput(t, mustMigrate(t, nil, append(args, "--undo")...).stdout)
	if last := undo[len(undo)-1]; last.Event != "undone" {
		t.Fatalf("the undo did not end with its result: %+v", last)
	}
	for _, n := range []*testcluster.Node{A, c.Node("B"), c.Node("C")} {
		if sts := mirrorsOf(t, n); len(sts) != 0 {
			t.Fatalf("after the undo %s is still in mirror %s", n.Name, sts[0].Mirror)
		}
	}
	// Shadowing goes on: new writes on the source reach both copies.
	cl := A.Client(t, 1)
	for i := range 50 {
		if err := cl.Set(context.Background(), "ONE", fmt.Sprintf("^AfterUndo(%d)", i), []byte("x")); err != nil {
			t.Fatal(err)
		}
	}
	for _, d := range []string{"B", "C"} {
		waitShadowCurrent(t, c, A, c.Node(d), dbs)
	}

	// Run to completion; then undo is refused: the databases are in the mirror.
	mustMigrate(t, nil, args...)
	failMigrate(t, nil, "point of no return", append(args, "--undo")...)
	checkConverted(t, c, nil, dbs)
}

// Bad options are refused with an error that says what is wrong, before anything changes.
func TestConvertShadowBadInput(t *testing.T) {
	c, A := shadowSetup(t, []string{"ONE"}, "B")
	D := c.Add("D")
	c.Start("D")
	B := c.Node("B")
	state := t.TempDir()
	convert := func(want string, extra ...string) {
		t.Helper()
		failMigrate(t, nil, want, append([]string{"convert-shadow", "--source", A.Addr, "--state-dir", state, "--yes"}, extra...)...)
	}
	convert("one --as role per --shadow destination (2 destinations, 1 roles)", "--shadow", B.Addr+","+D.Addr, "--as", "backup", "--mirror", "MIR")
	convert("at most one destination can become the backup", "--shadow", B.Addr+","+D.Addr, "--as", "backup,backup", "--mirror", "MIR")
	convert("a mirrored database keeps the name it has on the primary", "--shadow", B.Addr, "--as", "backup", "--mirror", "MIR", "--names", "ONE=OTHER")
	convert("member D has no shadow of A", "--shadow", B.Addr+","+D.Addr, "--as", "backup,dr", "--mirror", "MIR")
	convert("is not a letter or digit", "--shadow", B.Addr, "--as", "backup", "--mirror", "MY-MIRROR")
	convert("must be 1 to 15 letters or digits", "--shadow", B.Addr, "--as", "backup", "--mirror", "AMIRRORNAMETOOLONG")

	if entries, _ := os.ReadDir(state); len(entries) != 0 {
		t.Fatalf("refused conversions wrote %d files into the state dir", len(entries))
	}
	for _, n := range []*testcluster.Node{A, B, D} {
		if sts := mirrorsOf(t, n); len(sts) != 0 {
			t.Fatalf("after refused conversions %s is in mirror %s", n.Name, sts[0].Mirror)
		}
	}
	if st, err := shadowStatus(B); err != nil || st.State != shadow.Processing {
		t.Fatalf("after refused conversions shadow SH on B is %q (%v)", st.State, err)
	}

	// The staged path: with --force-copy --stage, B's copy is replaced by a backup of A's restored onto it.
	stage := t.TempDir()
	out := mustMigrate(t, nil, "convert-shadow", "--source", A.Addr, "--shadow", B.Addr, "--as", "backup", "--mirror", "MIR", "--qos", "2s",
		"--state-dir", state, "--wait", "40s", "--force-copy", "--stage", stage, "--yes")
	for _, want := range []string{"back up ONE from A to " + stage, "restore backup", "copy forced with --force-copy"} {
		if !strings.Contains(out.stdout+out.stderr, want) {
			t.Fatalf("staged conversion output lacks %q:\n%s", want, out)
		}
	}
	c.WaitFor(t, "B's restored copy of ONE is Dejournaling with A's content", 60*time.Second, func() (bool, error) {
		if s := dbStatus(t, B, "ONE"); s != "Dejournaling" {
			return false, fmt.Errorf("ONE on B is %q", s)
		}
		a, b := mustNode(t, A, "db", "hash", "ONE"), mustNode(t, B, "db", "hash", "ONE")
		return a == b, fmt.Errorf("hashes %q and %q", a, b)
	})
	if list := mustMigrate(t, nil, "list", "--stage", stage); !strings.Contains(list.stdout, "ONE") {
		t.Fatalf("the stage holds no backup of ONE:\n%s", list.stdout)
	}
}
