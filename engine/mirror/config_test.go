package mirror

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mirrorkit/mirrorkit/engine/journal"
	"github.com/mirrorkit/mirrorkit/engine/store"
	"github.com/mirrorkit/mirrorkit/engine/wire"
)

func TestCanonicalMirrorName(t *testing.T) {
	for _, tc := range []struct {
		in, want string
		ok       bool
	}{
		{"mir1", "MIR1", true},
		{"ABCDEFGHIJKLMNO", "ABCDEFGHIJKLMNO", true},
		{"", "", false},
		{"ABCDEFGHIJKLMNOP", "", false},
		{"my-mirror", "", false},
		{"m_1", "", false},
	} {
		got, err := CanonicalMirrorName(tc.in)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("CanonicalMirrorName(%q) = %q, %v", tc.in, got, err)
		}
		if err != nil && !errors.Is(err, wire.ErrInvalidName) {
			t.Errorf("error for %q is not ErrInvalidName: %v", tc.in, err)
		}
	}
}

func testConfig(members ...MemberConfig) Config {
	return Config{Name: "M", Version: 1, Epoch: 1, Primary: "A", QoS: Duration{2 * time.Second}, Members: members}
}

func TestConfigValidate(t *testing.T) {
	fo := func(n string) MemberConfig { return MemberConfig{Name: n, Type: Failover} }
	dr := func(n string) MemberConfig { return MemberConfig{Name: n, Type: DR} }
	many := []MemberConfig{fo("A"), fo("B")}
	for i := 0; i < 14; i++ {
		many = append(many, dr(fmt.Sprintf("D%d", i)))
	}
	for _, tc := range []struct {
		name string
		cfg  Config
		want string
	}{
		{"primary and backup", testConfig(fo("A"), fo("B"), dr("C")), ""},
		{"sixteen members", testConfig(many...), ""},
		{"seventeen members", testConfig(append(many, dr("X"))...), "at most 16"},
		{"three failover members", testConfig(fo("A"), fo("B"), fo("C")), "at most 2"},
		{"primary is an async", Config{Name: "M", Primary: "C", Members: []MemberConfig{fo("A"), dr("C")}}, "not a failover member"},
		{"unknown primary", Config{Name: "M", Primary: "Z", Members: []MemberConfig{fo("A")}}, "not a failover member"},
		{"duplicate member", testConfig(fo("A"), dr("A")), "listed twice"},
	} {
		err := tc.cfg.Validate()
		if tc.want == "" && err != nil || tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("%s: Validate() = %v, want %q", tc.name, err, tc.want)
		}
	}
}

func TestCodecSelection(t *testing.T) {
	cfg := testConfig()
	if c, _ := cfg.codecFor(Failover); c != wire.CodecLZ4 {
		t.Errorf("system-selected codec to the backup = %s, want lz4", c)
	}
	if c, _ := cfg.codecFor(ReportingRO); c != wire.CodecZstd {
		t.Errorf("system-selected codec to asyncs = %s, want zstd", c)
	}
	cfg.CompressionFailover, cfg.CompressionAsync = "none", "lz4"
	if c, _ := cfg.codecFor(Failover); c != wire.CodecNone {
		t.Errorf("codec to the backup = %s, want none", c)
	}
	if c, _ := cfg.codecFor(DR); c != wire.CodecLZ4 {
		t.Errorf("codec to a DR async = %s, want lz4", c)
	}
}

func TestParseMemberType(t *testing.T) {
	for _, s := range []string{"failover", "DR", "reporting-ro", "reporting-rw"} {
		if _, err := ParseMemberType(s); err != nil {
			t.Errorf("ParseMemberType(%q): %v", s, err)
		}
	}
	if _, err := ParseMemberType("backup"); err == nil {
		t.Error("ParseMemberType accepted \"backup\"")
	}
	if !ReportingRW.IsReporting() || DR.IsReporting() || Failover.IsAsync() || !DR.IsAsync() {
		t.Error("member type predicates are wrong")
	}
}

func TestMergeTakesTransferFromPrimaryAndDejournalingFromMembers(t *testing.T) {
	primary := Status{Mirror: "M", Primary: "A", Members: []MemberStatus{
		{Name: "A", Status: StatusPrimary, JournalTransfer: TransferNA, Dejournaling: TransferNA},
		{Name: "B", Status: StatusBackup, JournalTransfer: TransferActive},
		{Name: "C", Status: StatusDown, JournalTransfer: "Disconnected"},
	}}
	locals := map[string]Status{
		"B": {Members: []MemberStatus{{Name: "B", Status: StatusBackup, JournalTransfer: CaughtUp, Dejournaling: CaughtUp}}},
		"C": {Members: []MemberStatus{{Name: "C", Status: StatusStopped, JournalTransfer: "Disconnected on 2026-01-01T00:00:00Z", Dejournaling: DejournalStopped}}},
	}
	got := Merge(primary, locals)
	if b := got.Members[1]; b.JournalTransfer != TransferActive || b.Dejournaling != CaughtUp {
		t.Errorf("B merged as %+v", b)
	}
	if c := got.Members[2]; c.Status != StatusStopped || c.Dejournaling != DejournalStopped || !strings.HasPrefix(c.JournalTransfer, "Disconnected on") {
		t.Errorf("C merged as %+v", c)
	}
	if primary.Members[1].Dejournaling != "" {
		t.Error("Merge modified its input")
	}
}

func TestBehindText(t *testing.T) {
	if behind(300*time.Millisecond) != CaughtUp {
		t.Error("under a second should read Caught up")
	}
	if got := behind(3400 * time.Millisecond); got != "3s behind" {
		t.Errorf("behind(3.4s) = %q", got)
	}
}

func TestForkPoint(t *testing.T) {
	p := func(e, seg, off uint64) journal.Position {
		return journal.Position{Epoch: e, Segment: seg, Offset: off}
	}
	var cfg Config
	cfg.addEpoch(EpochStart{Epoch: 2, Primary: "B", Start: p(1, 1, 500)})
	cfg.addEpoch(EpochStart{Epoch: 3, Primary: "A", Start: p(2, 2, 100)})
	tests := []struct {
		name string
		end  journal.Position
		want journal.Position
		ok   bool
	}{
		{"new member", journal.Position{}, journal.Position{}, false},
		{"epoch 1 member behind the fork", p(1, 1, 400), journal.Position{}, false},
		{"epoch 1 member exactly at the fork", p(1, 1, 500), journal.Position{}, false},
		{"former epoch 1 primary with a tail", p(1, 1, 900), p(1, 1, 500), true},
		{"former epoch 1 primary with a tail in a later segment", p(1, 3, 40), p(1, 1, 500), true},
		{"epoch 2 member with a tail", p(2, 2, 300), p(2, 2, 100), true},
		{"current epoch", p(3, 5, 1), journal.Position{}, false},
	}
	for _, tt := range tests {
		got, ok := cfg.forkPoint(tt.end)
		if got != tt.want || ok != tt.ok {
			t.Errorf("%s: forkPoint(%s) = %s, %v; want %s, %v", tt.name, tt.end, got, ok, tt.want, tt.ok)
		}
	}
	for i := range 2 * maxEpochHistory {
		cfg.addEpoch(EpochStart{Epoch: uint64(4 + i)})
	}
	if len(cfg.Epochs) != maxEpochHistory || cfg.Epochs[len(cfg.Epochs)-1].Epoch != uint64(3+2*maxEpochHistory) {
		t.Fatalf("history of %d entries ending at epoch %d", len(cfg.Epochs), cfg.Epochs[len(cfg.Epochs)-1].Epoch)
	}
}

// A member that takes over marks the hashes its predecessor was still taking at add positions unavailable (copies waiting
// for them join unverified instead of waiting for ever); a former primary no longer records the hash it finishes late.
func TestPendingHashesAtTakeover(t *testing.T) {
	c := Config{Primary: "A", Epoch: 3, Epochs: []EpochStart{{Epoch: 2, Primary: "A"}, {Epoch: 3, Primary: "A"}}, AddedHash: map[string]store.LogicalHash{
		"DONE":  {Database: "DONE", SHA256: "abc"},
		"TAKEN": {Database: "TAKEN"},
		"LOST":  {Database: "LOST", SHA256: HashUnavailable},
		"ALSO":  {Database: "ALSO"},
	}}
	if !c.hashesPending() {
		t.Fatal("pending hashes not seen")
	}
	if !c.primarySince("A", 2) || c.primarySince("B", 2) {
		t.Fatal("primarySince before a takeover")
	}
	next := c.clone()
	if got := next.forgetPendingHashes(); !slices.Equal(got, []string{"ALSO", "TAKEN"}) {
		t.Fatalf("forgotten: %v", got)
	}
	if next.hashesPending() || next.AddedHash["TAKEN"].SHA256 != HashUnavailable || next.AddedHash["DONE"].SHA256 != "abc" {
		t.Fatalf("after forgetting: %+v", next.AddedHash)
	}
	if c.AddedHash["TAKEN"].SHA256 != "" {
		t.Fatal("forgetting changed the configuration it was cloned from")
	}
	// B takes over in epoch 4; A then restarts as primary in epoch 5: A added in epoch 3 is not primary since then.
	next.Primary, next.Epoch = "B", 4
	next.addEpoch(EpochStart{Epoch: 4, Primary: "B"})
	if next.primarySince("A", 3) || !next.primarySince("B", 4) {
		t.Fatal("primarySince after a takeover")
	}
	next.Primary, next.Epoch = "A", 5
	next.addEpoch(EpochStart{Epoch: 5, Primary: "A"})
	if next.primarySince("A", 3) || !next.primarySince("A", 5) {
		t.Fatal("primarySince after the old primary came back")
	}
	// The same primary beginning a new epoch (after a restart) is still the one that added the database.
	c.addEpoch(EpochStart{Epoch: 4, Primary: "A"})
	c.Epoch = 4
	if !c.primarySince("A", 3) {
		t.Fatal("a primary that began a new epoch itself")
	}
}
