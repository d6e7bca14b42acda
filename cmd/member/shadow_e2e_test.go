package main_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/mirrorkit/mirrorkit/engine/client"
	"github.com/mirrorkit/mirrorkit/engine/journal"
	"github.com/mirrorkit/mirrorkit/engine/mirror"
	"github.com/mirrorkit/mirrorkit/engine/server"
	"github.com/mirrorkit/mirrorkit/engine/shadow"
	"github.com/mirrorkit/mirrorkit/engine/store"
	"github.com/mirrorkit/mirrorkit/internal/testcluster"
)

// shadowOn is shadow name's status on member n (GET /api/v1/shadows/NAME).
func shadowOn(n *testcluster.Node, name string) (shadow.Status, error) {
	var st shadow.Status
	status, err := n.TryAdminGet("/api/v1/shadows/"+name, &st)
	if err == nil && status != 200 {
		err = fmt.Errorf("shadow %s on %s: HTTP %d", name, n.Name, status)
	}
	return st, err
}

// waitShadow waits until shadow name on n satisfies cond and returns its status.
func waitShadow(t *testing.T, c *testcluster.Cluster, n *testcluster.Node, name, desc string, cond func(shadow.Status) bool) shadow.Status {
	t.Helper()
	var st shadow.Status
	c.WaitFor(t, fmt.Sprintf("shadow %s on %s: %s", name, n.Name, desc), 60*time.Second, func() (bool, error) {
		var err error
		if st, err = shadowOn(n, name); err != nil {
			return false, err
		}
		return cond(st), fmt.Errorf("state %s, connected %v, checkpoint %s, error %q, databases %+v", st.State, st.Connected, st.Checkpoint, st.Error, st.Databases)
	})
	return st
}

func shadowDB(st shadow.Status, dest string) shadow.DBStatus {
	for _, d := range st.Databases {
		if d.Dest == dest {
			return d
		}
	}
	return shadow.DBStatus{}
}

// dbHashOn is the logical hash of database db on member n.
func dbHashOn(n *testcluster.Node, db string) (store.LogicalHash, error) {
	var h store.LogicalHash
	status, err := n.TryAdminGet("/api/v1/databases/"+db+"/hash", &h)
	if err == nil && status != 200 {
		err = fmt.Errorf("hash of %s on %s: HTTP %d", db, n.Name, status)
	}
	return h, err
}

// waitSameContent waits until dst's database dstDB holds the same data as src's srcDB.
func waitSameContent(t *testing.T, c *testcluster.Cluster, src *testcluster.Node, srcDB string, dst *testcluster.Node, dstDB string) store.LogicalHash {
	t.Helper()
	var want store.LogicalHash
	c.WaitFor(t, fmt.Sprintf("%s on %s holds what %s holds on %s", dstDB, dst.Name, srcDB, src.Name), 60*time.Second, func() (bool, error) {
		var err error
		if want, err = dbHashOn(src, srcDB); err != nil {
			return false, err
		}
		got, err := dbHashOn(dst, dstDB)
		if err != nil {
			return false, err
		}
		return got.SHA256 == want.SHA256 && got.Nodes == want.Nodes, fmt.Errorf("%s has %d nodes (%.12s…), %s has %d (%.12s…)", src.Name, want.Nodes, want.SHA256, dst.Name, got.Nodes, got.SHA256)
	})
	return want
}

// cliHash is `member db hash DB --json` on n.
func cliHash(t *testing.T, n *testcluster.Node, db string) store.LogicalHash {
	t.Helper()
	var h store.LogicalHash
	if err := json.Unmarshal([]byte(mustNode(t, n, "db", "hash", db, "--json")), &h); err != nil {
		t.Fatal(err)
	}
	return h
}

// journalEnd is where member n's durable local journal ends, and where it starts.
func journalEnd(t *testing.T, n *testcluster.Node) (end, first journal.Position) {
	t.Helper()
	var st server.Status
	n.AdminGet(t, "/api/v1/status", &st)
	return st.Journal.Durable, st.Journal.First
}

// shadowCLIFails runs a shadow command that must fail, and checks its exit code and that stderr names the cause.
func shadowCLIFails(t *testing.T, n *testcluster.Node, code int, want string, args ...string) {
	t.Helper()
	r := n.CLI(t, append([]string{"shadow"}, args...)...)
	if r.ExitCode != code || !strings.Contains(r.Stderr, want) {
		t.Errorf("member shadow %s: exit %d, stderr %q; want exit %d and an error about %q", strings.Join(args, " "), r.ExitCode, r.Stderr, code, want)
	}
}

// A destination shadows two databases of a source under load: it follows the source, suspends and resumes, stops and
// starts, survives a graceful restart and a kill -9 of itself and of the source, and every copy ends identical to the
// source's; status, the served stream and the metrics say what happens; a local write marks a copy modified.
func TestShadowFollowsSourceThroughSuspendStopAndCrashes(t *testing.T) {
	c := testcluster.New(t)
	S, D := c.Add("S"), c.Add("D")
	defer dumpLogs(t, c)
	c.Start()
	mustNode(t, S, "db", "create", "APP")
	mustNode(t, S, "db", "create", "INV")
	created, _ := journalEnd(t, S)
	out := mustNode(t, D, "shadow", "create", "SH", "--source", S.Addr, "--start", "now", "--map", "APP=APP,INV=INV")
	if !strings.Contains(out, "shadow SH created") || !strings.Contains(out, shadow.Stopped) {
		t.Fatalf("create: %q", out)
	}
	st, err := shadowOn(D, "SH")
	if err != nil {
		t.Fatal(err)
	}
	if st.State != shadow.Stopped || st.Start != created || len(st.Databases) != 2 {
		t.Fatalf("after create: %+v (the source's journal ended at %s)", st, created)
	}

	l := testcluster.StartLoad(t, []string{S.Addr}, testcluster.LoadOptions{DBs: []string{"APP", "INV"}, Writers: 2, Prefix: "L",
		Client: client.Options{Conns: 2, RetryTimeout: 20 * time.Second}})
	l.WaitAcks(t, c, 100)
	mustNode(t, D, "shadow", "start", "SH")
	l.WaitAcks(t, c, 300)
	waitShadow(t, c, D, "SH", "processing and connected to S", func(st shadow.Status) bool {
		return st.State == shadow.Processing && st.Connected && st.SourceMember == "S" && created.Less(st.Checkpoint) && st.ReceivedBytes > 0
	})

	// Status: the text form, the JSON form's latency fields, the source's view of the stream, and the metrics.
	out = mustNode(t, D, "shadow", "status", "SH")
	for _, want := range []string{"shadow SH: Processing", "connected to S", "latency", "APPLIED", "MODIFIED", "APP", "INV"} {
		if !strings.Contains(out, want) {
			t.Errorf("shadow status lacks %q:\n%s", want, out)
		}
	}
	var raw map[string]any
	if err := json.Unmarshal([]byte(mustNode(t, D, "shadow", "status", "SH", "--json")), &raw); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"latency_seconds", "bytes_behind", "checkpoint", "source_end", "connected", "databases"} {
		if _, ok := raw[k]; !ok {
			t.Errorf("shadow status --json lacks %q: %v", k, raw)
		}
	}
	var served server.ShadowsStatus
	if err := json.Unmarshal([]byte(mustNode(t, S, "shadow", "status", "--json")), &served); err != nil {
		t.Fatal(err)
	}
	if len(served.Shadows) != 0 || len(served.Serving) != 1 || served.Serving[0].Shadow != "SH" || served.Serving[0].Member != "D" {
		t.Fatalf("the source's shadow status: %+v", served)
	}
	c.WaitFor(t, "the source shows the destination's acknowledged checkpoint", 30*time.Second, func() (bool, error) {
		var all server.ShadowsStatus
		if _, err := S.TryAdminGet("/api/v1/shadows", &all); err != nil {
			return false, err
		}
		return len(all.Serving) == 1 && created.Less(all.Serving[0].Applied) && !all.Serving[0].Sent.Less(all.Serving[0].Applied), fmt.Errorf("serving %+v", all.Serving)
	})
	if out := mustNode(t, S, "shadow", "status"); !strings.Contains(out, "serving shadow SH to D") {
		t.Errorf("the source's shadow status text: %q", out)
	}
	if m := grepLines(metricsOf(t, D), "mirrorkit_shadow_"); !strings.Contains(m, `mirrorkit_shadow_latency_seconds{shadow="SH"}`) ||
		!strings.Contains(m, `mirrorkit_shadow_state{shadow="SH",state="Processing"} 1`) {
		t.Errorf("destination metrics:\n%s", m)
	}

	// Suspended: the source keeps writing, the checkpoint stays; resumed: it catches up.
	paused := func(action, state, back string) {
		t.Helper()
		out := mustNode(t, D, "shadow", action, "SH")
		if !strings.Contains(out, state) {
			t.Fatalf("shadow %s: %q", action, out)
		}
		held, err := shadowOn(D, "SH")
		if err != nil {
			t.Fatal(err)
		}
		l.WaitAcks(t, c, 300)
		end, _ := journalEnd(t, S)
		after, err := shadowOn(D, "SH")
		if err != nil {
			t.Fatal(err)
		}
		if after.State != state || after.Connected || after.Checkpoint != held.Checkpoint || !after.Checkpoint.Less(end) {
			t.Fatalf("%s while the source writes: %s connected %v checkpoint %s → %s, source at %s", state, after.State, after.Connected, held.Checkpoint, after.Checkpoint, end)
		}
		for _, d := range after.Databases {
			if d.Applied != shadowDB(held, d.Dest).Applied {
				t.Fatalf("%s: %s moved from %s to %s while %s", state, d.Dest, shadowDB(held, d.Dest).Applied, d.Applied, state)
			}
		}
		mustNode(t, D, "shadow", back, "SH")
		waitShadow(t, c, D, "SH", "caught up with "+end.String()+" after "+back, func(st shadow.Status) bool {
			return st.State == shadow.Processing && st.Connected && !st.Checkpoint.Less(end)
		})
	}
	paused("suspend", shadow.Suspended, "resume")
	paused("stop", shadow.Stopped, "start")
	shadowCLIFails(t, D, 1, "not suspended", "resume", "SH")

	// Suspended, the shadow keeps its state and checkpoint across a graceful restart; after a kill -9 under load it resumes
	// by itself from the checkpoint it persisted (no older than that one), not from its start.
	mustNode(t, D, "shadow", "suspend", "SH")
	held, err := shadowOn(D, "SH")
	if err != nil {
		t.Fatal(err)
	}
	if err := D.Terminate(); err != nil {
		t.Fatal(err)
	}
	l.WaitAcks(t, c, 100)
	D.Restart()
	if st, err := shadowOn(D, "SH"); err != nil || st.State != shadow.Suspended || st.Checkpoint != held.Checkpoint {
		t.Fatalf("after a graceful restart: %+v %v, want Suspended at %s", st, err, held.Checkpoint)
	}
	mustNode(t, D, "shadow", "resume", "SH")
	waitShadow(t, c, D, "SH", "processing again after the restart", func(st shadow.Status) bool {
		return st.State == shadow.Processing && st.Connected && held.Checkpoint.Less(st.Checkpoint)
	})
	l.WaitAcks(t, c, 200)
	D.Kill()
	l.WaitAcks(t, c, 300)
	D.Restart()
	acked := l.Finish(t)
	end, _ := journalEnd(t, S)
	st = waitShadow(t, c, D, "SH", "caught up after a kill -9", func(st shadow.Status) bool {
		return st.State == shadow.Processing && st.Connected && !st.Checkpoint.Less(end)
	})
	if end.Segment == held.Checkpoint.Segment && st.ReceivedBytes > end.Offset-held.Checkpoint.Offset {
		t.Errorf("after the kill -9 the shadow fetched %d bytes, more than the %d after the checkpoint it had persisted (%s): it did not resume from its checkpoint",
			st.ReceivedBytes, end.Offset-held.Checkpoint.Offset, held.Checkpoint)
	}
	for _, db := range []string{"APP", "INV"} {
		waitSameContent(t, c, S, db, D, db)
		if a, b := cliHash(t, S, db), cliHash(t, D, db); a.SHA256 != b.SHA256 || a.Nodes != b.Nodes || a.Nodes == 0 {
			t.Fatalf("member db hash %s: source %+v, destination %+v", db, a, b)
		}
	}
	dc := D.Client(t, 2)
	for db, refs := range acked {
		for ref, val := range refs {
			if v, ok, err := dc.Get(context.Background(), db, ref); err != nil || !ok || string(v) != val {
				t.Fatalf("acknowledged %s %s=%s on the destination: %q %v %v", db, ref, val, v, ok, err)
			}
		}
	}

	// The source crashes: the destination notices, retries by itself and catches up with what the source writes next.
	S.Kill()
	waitShadow(t, c, D, "SH", "disconnected from the dead source", func(st shadow.Status) bool {
		return st.State == shadow.Processing && !st.Connected && st.Error != ""
	})
	S.Restart()
	sc := S.Client(t, 2)
	for i := range 50 {
		for _, db := range []string{"APP", "INV"} {
			if err := sc.Set(context.Background(), db, fmt.Sprintf("^After(%d)", i), []byte("v")); err != nil {
				t.Fatal(err)
			}
		}
	}
	waitShadow(t, c, D, "SH", "reconnected to the restarted source", func(st shadow.Status) bool {
		return st.State == shadow.Processing && st.Connected && st.Reconnects > 0 && st.Error == ""
	})
	for _, db := range []string{"APP", "INV"} {
		waitSameContent(t, c, S, db, D, db)
	}

	// A local write on the destination to a shadowed copy is allowed and marks that copy modified.
	mustNode(t, D, "kv", "set", "^Local", "mine", "--db", "INV")
	st, err = shadowOn(D, "SH")
	if err != nil {
		t.Fatal(err)
	}
	if !shadowDB(st, "INV").Modified || shadowDB(st, "APP").Modified {
		t.Fatalf("after a local write to INV: %+v", st.Databases)
	}
	out = mustNode(t, D, "shadow", "status", "SH")
	if !strings.Contains(grepLines(out, "INV"), "yes") || strings.Contains(grepLines(out, "APP"), "yes") {
		t.Errorf("shadow status after a local write to INV:\n%s", out)
	}
	if !strings.Contains(mustNode(t, D, "shadow", "status", "SH", "--json"), `"modified": true`) {
		t.Error(`shadow status --json does not say "modified": true`)
	}
	// The shadow goes on applying the source's writes to the modified copy.
	if err := sc.Set(context.Background(), "INV", "^Later", []byte("x")); err != nil {
		t.Fatal(err)
	}
	c.WaitFor(t, "the source's later write reaches the modified copy", 30*time.Second, func() (bool, error) {
		v, ok, err := dc.Get(context.Background(), "INV", "^Later")
		return err == nil && ok && string(v) == "x", err
	})

	// A copy dismounted while the shadow runs misses the source's writes meanwhile; mounted again, it gets them.
	mustNode(t, D, "db", "dismount", "APP")
	for i := range 20 {
		if err := sc.Set(context.Background(), "APP", fmt.Sprintf("^WhileDismounted(%d)", i), []byte("y")); err != nil {
			t.Fatal(err)
		}
	}
	if err := sc.Set(context.Background(), "INV", "^AfterDismount", []byte("z")); err != nil {
		t.Fatal(err)
	}
	c.WaitFor(t, "the shadow goes on with the other copy", 30*time.Second, func() (bool, error) {
		v, ok, err := dc.Get(context.Background(), "INV", "^AfterDismount")
		return err == nil && ok && string(v) == "z", err
	})
	mustNode(t, D, "db", "mount", "APP")
	if err := sc.Set(context.Background(), "INV", "^AfterMount", []byte("w")); err != nil {
		t.Fatal(err)
	}
	waitSameContent(t, c, S, "APP", D, "APP")
}

// What the operator gets wrong is refused with a message naming it; a shadow that needs purged journal stops in Error and
// says so; a running shadow is not removed, and a removed one leaves its copies as local databases with their data.
func TestShadowRefusalsPurgedJournalAndRemove(t *testing.T) {
	c := testcluster.New(t)
	// P purges its local journal as soon as it can.
	P := c.Add("P", "--segment-size", "1048576", "--keep-segments", "1", "--max-age", "1ms", "--purge-interval", "100ms")
	D := c.Add("D")
	defer dumpLogs(t, c)
	c.Start()
	for _, db := range []string{"APP", "NEW"} {
		mustNode(t, P, "db", "create", db)
	}
	mustNode(t, D, "shadow", "create", "OLD", "--source", P.Addr, "--map", "APP=APP")
	start, _ := journalEnd(t, P)

	// Bad input.
	shadowCLIFails(t, D, 1, `shadow "NOPE" is not configured`, "status", "NOPE")
	shadowCLIFails(t, D, 1, `shadow "NOPE" is not configured`, "start", "NOPE")
	shadowCLIFails(t, D, 1, `shadow "NOPE" is not configured`, "remove", "NOPE")
	shadowCLIFails(t, D, 2, "want SRC=DST", "create", "X", "--source", P.Addr, "--map", "APP")
	shadowCLIFails(t, D, 2, "want SRC=DST", "create", "X", "--source", P.Addr, "--map", "APP=")
	shadowCLIFails(t, D, 1, "target of two source databases", "create", "X", "--source", P.Addr, "--map", "APP=X1,NEW=X1")
	shadowCLIFails(t, D, 1, "want now or a position", "create", "X", "--source", P.Addr, "--start", "yesterday", "--map", "NEW=X1")
	shadowCLIFails(t, D, 1, "want now or a position", "create", "X", "--source", P.Addr, "--start", "0:0:0", "--map", "NEW=X1")
	shadowCLIFails(t, D, 1, "already the destination of shadow OLD", "create", "X", "--source", P.Addr, "--map", "NEW=APP")
	shadowCLIFails(t, D, 1, "already exists", "create", "OLD", "--source", P.Addr, "--map", "NEW=X1")
	shadowCLIFails(t, D, 1, "use a letter", "create", "9lives", "--source", P.Addr, "--map", "NEW=X1")
	shadowCLIFails(t, D, 1, "ask the source", "create", "X", "--source", "127.0.0.1:1", "--map", "NEW=X1")
	shadowCLIFails(t, D, 1, "not suspended", "resume", "OLD")
	shadowCLIFails(t, D, 1, "not processing", "suspend", "OLD")
	var all server.ShadowsStatus
	D.AdminGet(t, "/api/v1/shadows", &all)
	if len(all.Shadows) != 1 || all.Shadows[0].Name != "OLD" {
		t.Fatalf("refused creations left shadows behind: %+v", all.Shadows)
	}
	var dbs []store.Info
	if err := json.Unmarshal([]byte(mustNode(t, D, "db", "list", "--json")), &dbs); err != nil {
		t.Fatal(err)
	}
	if len(dbs) != 1 || dbs[0].Name != "APP" {
		t.Fatalf("refused creations left databases behind: %+v", dbs)
	}

	// OLD stays stopped while P writes several segments and purges them.
	big := strings.Repeat("x", 64<<10)
	pc := P.Client(t, 2)
	for i := range 60 {
		if err := pc.Set(context.Background(), "APP", fmt.Sprintf("^Big(%d)", i), []byte(big)); err != nil {
			t.Fatal(err)
		}
	}
	c.WaitFor(t, "P purges the segment OLD starts in", 30*time.Second, func() (bool, error) {
		var st server.Status
		if _, err := P.TryAdminGet("/api/v1/status", &st); err != nil {
			return false, err
		}
		return start.Segment < st.Journal.First.Segment, fmt.Errorf("P's local journal starts at %s", st.Journal.First)
	})
	mustNode(t, D, "shadow", "start", "OLD")
	st := waitShadow(t, c, D, "OLD", "in Error", func(st shadow.Status) bool { return st.State == shadow.Error })
	if !strings.Contains(st.Error, "purged") || st.Connected {
		t.Fatalf("a shadow whose start is purged: %+v", st)
	}
	out := mustNode(t, D, "shadow", "status", "OLD")
	if !strings.Contains(out, "OLD: Error") || !strings.Contains(out, "purged") {
		t.Errorf("shadow status of a purged shadow:\n%s", out)
	}
	if out := mustNode(t, D, "shadow", "status", "OLD", "--json"); !strings.Contains(out, `"state": "Error"`) {
		t.Errorf("shadow status --json of a purged shadow:\n%s", out)
	}
	if m := metricsOf(t, D); !strings.Contains(m, `mirrorkit_shadow_state{shadow="OLD",state="Error"} 1`) {
		t.Errorf("metrics of a purged shadow:\n%s", grepLines(m, "mirrorkit_shadow_state"))
	}
	// Started again as it is, it fails the same way; started from a position P still has, it runs.
	mustNode(t, D, "shadow", "start", "OLD")
	waitShadow(t, c, D, "OLD", "in Error again", func(st shadow.Status) bool { return st.State == shadow.Error && strings.Contains(st.Error, "purged") })
	now, _ := journalEnd(t, P)
	mustNode(t, D, "shadow", "start", "OLD", "--start", now.String())
	if err := pc.Set(context.Background(), "APP", "^Fresh", []byte("f")); err != nil {
		t.Fatal(err)
	}
	st = waitShadow(t, c, D, "OLD", "processing from "+now.String(), func(st shadow.Status) bool {
		return st.State == shadow.Processing && st.Connected && now.Less(st.Checkpoint) && st.Error == ""
	})
	if st.Start != now {
		t.Errorf("start position after start --start %s: %s", now, st.Start)
	}
	dc := D.Client(t, 2)
	c.WaitFor(t, "the write after the new start reaches the copy", 30*time.Second, func() (bool, error) {
		v, ok, err := dc.Get(context.Background(), "APP", "^Fresh")
		return err == nil && ok && string(v) == "f", err
	})
	shadowCLIFails(t, D, 1, "stop it before choosing a new start position", "start", "OLD", "--start", now.String())

	// A start position explicitly older than P's journal, and one that is not a record boundary: Error, saying why.
	_, first := journalEnd(t, P)
	old := journal.Position{Epoch: first.Epoch, Segment: start.Segment, Offset: journal.HeaderSize}
	mustNode(t, D, "shadow", "create", "ANCIENT", "--source", P.Addr, "--start", old.String(), "--map", "NEW=N1")
	mustNode(t, D, "shadow", "start", "ANCIENT")
	waitShadow(t, c, D, "ANCIENT", "in Error naming the purge", func(st shadow.Status) bool { return st.State == shadow.Error && strings.Contains(st.Error, "purged") })
	odd := journal.Position{Epoch: first.Epoch, Segment: first.Segment, Offset: journal.HeaderSize + 1}
	mustNode(t, D, "shadow", "create", "ODD", "--source", P.Addr, "--start", odd.String(), "--map", "NEW=N2")
	mustNode(t, D, "shadow", "start", "ODD")
	waitShadow(t, c, D, "ODD", "in Error naming the bad position", func(st shadow.Status) bool {
		return st.State == shadow.Error && strings.Contains(st.Error, "no record")
	})

	// A shadow stopped exactly at the end of a segment that P then purges lost nothing: started again, it goes on.
	mustNode(t, P, "db", "create", "EDGY")
	mustNode(t, D, "shadow", "create", "EDGE", "--source", P.Addr, "--map", "EDGY=N3")
	mustNode(t, D, "shadow", "start", "EDGE")
	edge, _ := journalEnd(t, P)
	waitShadow(t, c, D, "EDGE", "at the end of P's journal "+edge.String(), func(st shadow.Status) bool {
		return st.State == shadow.Processing && st.Connected && st.Checkpoint.Segment == edge.Segment && st.Checkpoint.Offset == edge.Offset
	})
	mustNode(t, D, "shadow", "stop", "EDGE")
	huge := bytes.Repeat([]byte("e"), 1<<20) // larger than a segment with its record header: starts the next one
	if err := pc.Set(context.Background(), "EDGY", "^Edge", huge); err != nil {
		t.Fatal(err)
	}
	c.WaitFor(t, "P purges the segment EDGE stopped at the end of", 30*time.Second, func() (bool, error) {
		_, first := journalEnd(t, P)
		return edge.Segment < first.Segment, fmt.Errorf("P's local journal starts at %s", first)
	})
	if _, first := journalEnd(t, P); first.Segment != edge.Segment+1 {
		t.Fatalf("P's journal starts at %s: the test needs segment %d, the one after EDGE's checkpoint %s", first, edge.Segment+1, edge)
	}
	mustNode(t, D, "shadow", "start", "EDGE")
	waitShadow(t, c, D, "EDGE", "processing past the purged segment", func(st shadow.Status) bool {
		return st.State == shadow.Processing && st.Connected && st.Error == "" && edge.Segment < st.Checkpoint.Segment
	})
	c.WaitFor(t, "the write after the purged segment reaches EDGE's copy", 30*time.Second, func() (bool, error) {
		v, ok, err := dc.Get(context.Background(), "N3", "^Edge")
		return err == nil && ok && bytes.Equal(v, huge), err
	})

	// A running or suspended shadow is not removed; a stopped one is, and its copy stays a local database with its data.
	mustNode(t, D, "shadow", "create", "LIVE", "--source", P.Addr, "--map", "NEW=COPY")
	mustNode(t, D, "shadow", "start", "LIVE")
	for i := range 100 {
		if err := pc.Set(context.Background(), "NEW", fmt.Sprintf("^N(%d)", i), []byte("n")); err != nil {
			t.Fatal(err)
		}
	}
	want := waitSameContent(t, c, P, "NEW", D, "COPY")
	shadowCLIFails(t, D, 1, "stop it first", "remove", "LIVE")
	mustNode(t, D, "shadow", "suspend", "LIVE")
	shadowCLIFails(t, D, 1, "stop it first", "remove", "LIVE")
	mustNode(t, D, "shadow", "stop", "LIVE")
	if out := mustNode(t, D, "shadow", "remove", "LIVE"); !strings.Contains(out, "shadow LIVE removed") {
		t.Fatalf("remove: %q", out)
	}
	shadowCLIFails(t, D, 1, `shadow "LIVE" is not configured`, "status", "LIVE")
	var info store.Info
	D.AdminGet(t, "/api/v1/databases/COPY", &info)
	if info.Mirror != "" || !info.Mounted {
		t.Fatalf("the removed shadow's copy: %+v", info)
	}
	if got := cliHash(t, D, "COPY"); got.SHA256 != want.SHA256 || got.Nodes != want.Nodes {
		t.Fatalf("the removed shadow's copy holds %+v, want %+v", got, want)
	}
	mustNode(t, D, "kv", "set", "^Mine", "m", "--db", "COPY")
	if err := pc.Set(context.Background(), "NEW", "^AfterRemove", []byte("a")); err != nil {
		t.Fatal(err)
	}
	// It survives a restart as a local database, and the source's later writes no longer reach it.
	if err := D.Terminate(); err != nil {
		t.Fatal(err)
	}
	D.Restart()
	dc = D.Client(t, 2)
	if v, ok, err := dc.Get(context.Background(), "COPY", "^Mine"); err != nil || !ok || string(v) != "m" {
		t.Fatalf("local write to the former copy after a restart: %q %v %v", v, ok, err)
	}
	if _, ok, err := dc.Get(context.Background(), "COPY", "^AfterRemove"); err != nil || ok {
		t.Fatalf("a source write after the removal reached the former copy: %v %v", ok, err)
	}
	D.AdminGet(t, "/api/v1/shadows", &all)
	if len(all.Shadows) != 4 {
		t.Fatalf("shadows after a restart: %+v", all.Shadows)
	}
}

// Conversion in place: the source adds a shadowed database to a mirror the destination belongs to, while a client writes to
// it; the destination's copy applies the source's move, joins the mirror where the move put it, with no copy, and ends
// identical to the primary's, with every acknowledged write.
func TestShadowJoinsMirrorInPlace(t *testing.T) {
	c := testcluster.New(t)
	S, D := c.Add("S"), c.Add("D")
	defer dumpLogs(t, c)
	c.Start()
	mustNode(t, S, "db", "create", "APP")
	mustNode(t, D, "shadow", "create", "SH", "--source", S.Addr, "--map", "APP=APP")
	mustNode(t, D, "shadow", "start", "SH")
	writeN(t, S, "Old", 300)
	mustNode(t, S, "mirror", "create", "MIR", "--qos", "2s")
	mustNode(t, D, "mirror", "join", "MIR", "--primary", S.Addr, "--as", "failover")
	waitTransfer(t, c, "S", "D", mirror.TransferActive)

	l := startLoad(t, []string{S.Addr}, 2)
	l.waitAcks(t, c, 200)
	r := D.CLI(t, "shadow", "join", "SH", "--db", "APP", "--mirror", "MIR")
	if r.ExitCode == 0 || !strings.Contains(r.Stderr, "not in mirror MIR") {
		t.Fatalf("join before the source added the database: exit %d %q", r.ExitCode, r.Stderr)
	}
	mustNode(t, S, "db", "add-to-mirror", "APP", "--mirror", "MIR")
	l.waitAcks(t, c, 200)

	var to *store.ToMirror
	c.WaitFor(t, "the copy on D applies the source's move of APP into MIR", 30*time.Second, func() (bool, error) {
		var all server.ShadowsStatus
		if err := json.Unmarshal([]byte(mustNode(t, D, "shadow", "status", "--json")), &all); err != nil {
			return false, err
		}
		if len(all.Shadows) == 1 {
			to = shadowDB(all.Shadows[0], "APP").ToMirror
		}
		return to != nil, fmt.Errorf("shadows %+v", all.Shadows)
	})
	if to.Mirror != "MIR" || to.Pos.IsZero() {
		t.Fatalf("to-mirror marker applied on D: %+v", to)
	}
	if out := mustNode(t, D, "shadow", "status", "SH"); !strings.Contains(out, "MIR at "+to.Pos.String()) {
		t.Errorf("shadow status does not show where APP joins MIR:\n%s", out)
	}
	r = D.CLI(t, "shadow", "join", "NOPE", "--db", "APP", "--mirror", "MIR")
	if r.ExitCode == 0 || !strings.Contains(r.Stderr, "not configured") {
		t.Fatalf("join through a shadow that does not exist: exit %d %q", r.ExitCode, r.Stderr)
	}
	var res mirror.JoinResult
	if err := json.Unmarshal([]byte(mustNode(t, D, "shadow", "join", "SH", "--db", "APP", "--mirror", "MIR", "--json")), &res); err != nil {
		t.Fatal(err)
	}
	if res.Mirror != "MIR" || res.Applied.Less(to.Pos) || !res.Verified || res.Hash.Nodes == 0 {
		t.Fatalf("join: %+v, want MIR from %s, checked against the primary's hash", res, to.Pos)
	}
	waitDBStatus(t, c, D, mirror.DBDejournaling)
	st, err := shadowOn(D, "SH")
	if err != nil {
		t.Fatal(err)
	}
	if d := shadowDB(st, "APP"); d.Joined != "MIR" {
		t.Fatalf("shadow status after the join: %+v", st.Databases)
	}
	// Joining again changes nothing.
	if out := mustNode(t, D, "shadow", "join", "SH", "--db", "APP", "--mirror", "MIR"); !strings.Contains(out, "mirror MIR") {
		t.Fatalf("second join: %q", out)
	}
	l.waitAcks(t, c, 200)
	acked := l.finish(t)
	waitConverged(t, c, S, D)
	checkAcked(t, D, acked)
	if a, b := cliHash(t, S, "APP"), cliHash(t, D, "APP"); a.SHA256 != b.SHA256 || a.Nodes != b.Nodes {
		t.Fatalf("member db hash APP: primary %+v, D %+v", a, b)
	}
}
