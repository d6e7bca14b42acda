package mirror

import (
	"strings"
	"testing"

	"github.com/mirrorkit/mirrorkit/engine/version"
)

func TestStreamAndPrimaryRefusals(t *testing.T) {
	if version.Level < 2 {
		t.Skip("needs a build of format level 2 or newer")
	}
	cfg := &Config{Name: "M", Primary: "A", PrimaryLevel: version.Level, PrimarySoftware: "9.9.9",
		Members: []MemberConfig{{Name: "A", Type: Failover}, {Name: "B", Type: Failover}, {Name: "R", Type: ReportingRO}, {Name: "D", Type: DR}}}
	old := version.Level - 1
	// A failover or DR member of an older level is refused the journal, naming both versions and what to do.
	for _, m := range []struct {
		name string
		t    MemberType
	}{{"B", Failover}, {"D", DR}} {
		why := streamRefusal(cfg, m.name, m.t, "0.9.0", old)
		for _, want := range []string{m.name, "0.9.0 (format level 1)", "9.9.9 (format level 2)", "upgrade " + m.name, "upgrade rollback"} {
			if !strings.Contains(why, want) {
				t.Errorf("%s refusal %q lacks %q", m.name, why, want)
			}
		}
	}
	// A reporting async may lag behind until the upgrade is finalized.
	if why := streamRefusal(cfg, "R", ReportingRO, "0.9.0", old); why != "" {
		t.Errorf("reporting async refused before finalize: %s", why)
	}
	if why := streamRefusal(cfg, "B", Failover, version.Software, version.Level); why != "" {
		t.Errorf("current member refused: %s", why)
	}
	// A level 0 (not reported) counts as level 1.
	if why := streamRefusal(cfg, "B", Failover, "", 0); !strings.Contains(why, "format level 1") {
		t.Errorf("unreported level: %q", why)
	}
	// After a rollback lowered the level, older members are welcome again; after finalize nobody older is.
	cfg.PrimaryLevel = old
	if why := streamRefusal(cfg, "B", Failover, "0.9.0", old); why != "" {
		t.Errorf("refused after the level was lowered: %s", why)
	}
	cfg.FinalizedLevel = version.Level
	if why := streamRefusal(cfg, "R", ReportingRO, "0.9.0", old); !strings.Contains(why, "finalized at format level 2") {
		t.Errorf("reporting async of an older level after finalize: %q", why)
	}
	// This build may become primary unless the mirror needs a newer level than its own.
	cfg.FinalizedLevel, cfg.PrimaryLevel = 0, version.Level
	if why := primaryRefusal(cfg, "B"); why != "" {
		t.Errorf("primary refusal for a current build: %s", why)
	}
	cfg.PrimaryLevel = version.Level + 1
	if why := primaryRefusal(cfg, "B"); !strings.Contains(why, "may not become primary") || !strings.Contains(why, version.Software) {
		t.Errorf("primary refusal: %q", why)
	}
	// Becoming primary records this member's version and raises the level, never lowers it.
	cfg.PrimaryLevel = 1
	notePrimaryLevel(cfg, "B")
	if cfg.PrimaryLevel != version.Level || cfg.PrimarySoftware != version.Software || cfg.Members[1].Level != version.Level {
		t.Errorf("after notePrimaryLevel: %+v", cfg)
	}
}
