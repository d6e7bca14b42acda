package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/mirrorkit/mirrorkit/engine/mirror"
	"github.com/mirrorkit/mirrorkit/engine/server"
	"github.com/mirrorkit/mirrorkit/engine/version"
	"github.com/mirrorkit/mirrorkit/internal/units"
)

type statusCmd struct {
	remote
	DBs   bool          `name:"dbs" help:"Also list each mirrored database with its status and next record to dejournal."`
	Watch time.Duration `help:"Refresh every interval until interrupted (e.g. 2s)."`
}

// memberView is what `member status --json` prints: the member and the Mirror Monitor of each of its mirrors.
type memberView struct {
	Member  server.Status   `json:"member"`
	Mirrors []mirror.Status `json:"mirrors"`
}

func (c *statusCmd) Run() error {
	for {
		if err := c.once(); err != nil {
			return err
		}
		if c.Watch <= 0 {
			return nil
		}
		time.Sleep(c.Watch)
		if !c.JSON {
			fmt.Print("\033[H\033[2J")
		}
	}
}

func (c *statusCmd) once() error {
	ctx, cancel := c.context()
	defer cancel()
	var v memberView
	if err := c.admin(ctx, http.MethodGet, "/api/v1/status", nil, &v.Member); err != nil {
		return err
	}
	if err := c.admin(ctx, http.MethodGet, "/api/v1/mirror/status", nil, &v.Mirrors); err != nil {
		return err
	}
	if c.JSON {
		return printJSON(v)
	}
	st := v.Member
	fmt.Printf("member %s (version %s), data %s, admin %s, up %s\n", st.Member, st.Version.Software, st.DataAddr, st.AdminAddr, st.Uptime)
	if len(v.Mirrors) == 0 {
		fmt.Printf("journal: epoch %d, %d segments, from %s to %s, %d records, %d syncs\n",
			st.Journal.Epoch, st.Journal.Segments, st.Journal.First, st.Journal.Durable, st.Journal.Records, st.Journal.Syncs)
		for _, d := range st.Databases {
			fmt.Printf("database %s: %s, applied %s, %d bytes\n", d.Name, mountState(d.Mounted), d.Applied, d.Bytes)
		}
		for _, sh := range st.Shadows {
			printShadowText(sh)
		}
		return nil
	}
	for _, m := range v.Mirrors {
		printMonitor(m, c.DBs)
	}
	if len(st.Shadows) > 0 {
		fmt.Println()
	}
	for _, sh := range st.Shadows {
		printShadowText(sh)
	}
	return nil
}

func printMonitor(m mirror.Status, dbs bool) {
	fmt.Printf("\nmirror %s: epoch %d, primary %s (%s), QoS %s\n", m.Mirror, m.Epoch, m.Primary, m.PrimaryAddr, m.QoS)
	tw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "MEMBER\tTYPE\tSTATUS\tJOURNAL TRANSFER\tDEJOURNALING\tVERSION")
	for _, r := range m.Members {
		ver := "-"
		if r.Software != "" {
			ver = fmt.Sprintf("%s (level %d)", r.Software, r.Level)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", r.Name, r.Type, r.Status, dash(r.JournalTransfer), dash(r.Dejournaling), ver)
	}
	tw.Flush()
	finalized := "not finalized"
	if m.FinalizedLevel > 1 {
		finalized = fmt.Sprintf("finalized at level %d", m.FinalizedLevel)
	}
	fmt.Printf("format: %s; failover and DR members need level %d; journal records written in format %d\n", finalized, m.PrimaryLevel, m.RecordFormat)
	fmt.Printf("arbiter: %s; failover mode: %s", m.Arbiter, m.FailoverMode)
	if m.ArbiterConnection != "" && m.ArbiterAddr != "" {
		fmt.Printf(" (%s)", strings.ToLower(m.ArbiterConnection[:1])+m.ArbiterConnection[1:])
	}
	if m.NoFailover {
		fmt.Print("; no-failover set")
	}
	fmt.Println()
	if m.Trouble != "" {
		fmt.Printf("%s: %s\n", m.Member, m.Trouble)
	}
	if m.Takeover != "" {
		fmt.Printf("%s lost the primary and does not take over: %s\n", m.Member, m.Takeover)
	}
	if len(m.NotValidated) > 0 {
		fmt.Printf("not validated (must not become primary): %s\n", strings.Join(m.NotValidated, ", "))
	}
	if n := m.Failovers; len(n) > 0 || m.TroubleEpisodes > 0 {
		fmt.Printf("%s became primary %d times by failover (%s); In Trouble %d times\n", m.Member, sumCounts(n), countsText(n), m.TroubleEpisodes)
	}
	if m.WireBytes > 0 {
		fmt.Printf("journal data: %s on the wire, %s uncompressed (ratio %.2f)", units.Bytes(int64(m.WireBytes)), units.Bytes(int64(m.JournalBytes)), m.Ratio)
		if m.Role != "primary" {
			fmt.Printf("; arriving at %s/s on the wire, %s/s of journal", units.Bytes(int64(m.WireRate)), units.Bytes(int64(m.JournalRate)))
		}
		fmt.Println()
	}
	if dbs {
		tw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintf(tw, "DATABASE (on %s)\tSTATUS\tNEXT RECORD\n", m.Member)
		for _, d := range m.Databases {
			next := d.NextRecord
			if d.Progress != "" {
				next = d.Progress // a copy being downloaded has no record to apply yet
			}
			if d.Error != "" {
				next += " (" + d.Error + ")"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\n", d.Name, d.Status, next)
		}
		tw.Flush()
	}
}

func dash(s string) string {
	if strings.TrimSpace(s) == "" {
		return "-"
	}
	return s
}

type versionCmd struct {
	JSON bool `name:"json" help:"Print JSON."`
}

func (c *versionCmd) Run() error {
	v := version.Get()
	if c.JSON {
		return printJSON(v)
	}
	fmt.Printf("member %s (format level %d: journal format %d with records up to version %d, wire protocol %d..%d, database format %d, %s)\n",
		v.Software, v.Level, v.JournalFormat, v.RecordFormat, v.WireMinProtocol, v.WireProtocol, v.DatabaseFormat, v.GoVersion)
	return nil
}

func printJSONLine(v any) error {
	return json.NewEncoder(os.Stdout).Encode(v)
}

func sumCounts(m map[string]uint64) uint64 {
	var n uint64
	for _, v := range m {
		n += v
	}
	return n
}

// countsText prints counters as "arbiter 2, planned 1", sorted by name.
func countsText(m map[string]uint64) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s %d", k, m[k])
	}
	return strings.Join(parts, ", ")
}
