package mirror

import (
	"fmt"
	"maps"
	"time"

	"github.com/mirrorkit/mirrorkit/engine/dejournal"
	"github.com/mirrorkit/mirrorkit/engine/journal"
	"github.com/mirrorkit/mirrorkit/engine/wire"
	"github.com/mirrorkit/mirrorkit/internal/units"
)

// User-visible status strings (MIRRORING.md §3–5, §8).
const (
	StatusPrimary       = "Primary"
	StatusBackup        = "Backup"
	StatusConnected     = "Connected"
	StatusInTrouble     = "In Trouble"
	StatusTransition    = "Transition"
	StatusSynchronizing = "Synchronizing"
	StatusStopped       = "Stopped"
	StatusDown          = "Down"
	StatusNotInit       = "Not Initialized"
	StatusError         = "Error"

	// Arbiter connection (MIRRORING.md §8).
	ArbiterBoth = "Both failover members are connected to the arbiter"
	ArbiterSelf = "Only this member is connected to the arbiter"
	ArbiterNone = "Not connected to the arbiter"

	TransferNA     = "N/A"
	TransferActive = "Active"
	CaughtUp       = "Caught up"

	DejournalNeedsAttention = "Warning! Some databases need attention."
	DejournalStopped        = "Warning! Dejournaling is stopped."

	DBNormal          = "Normal"
	DBDejournaling    = "Dejournaling"
	DBCatchupRun      = "Catchup Running"
	DBStopped         = "Dejournaling Stopped"
	DBDismounted      = "Database Dismounted"
	DBOrphaned        = "Orphaned"
	DBObsolete        = "Obsolete"
	DBNeedsCatchup    = "Needs Catchup"
	DBNeedsActivation = "Needs Activation"
)

// MemberStatus is one row of the Mirror Monitor.
type MemberStatus struct {
	Name            string `json:"name"`
	Type            string `json:"type"`
	Status          string `json:"status"`
	JournalTransfer string `json:"journal_transfer"`
	Dejournaling    string `json:"dejournaling"`
	Addr            string `json:"addr"`
	Received        string `json:"received,omitempty"` // durable position received (acked)
	Applied         string `json:"applied,omitempty"`
	Error           string `json:"error,omitempty"` // why this member's stream is not running, as it last heard
	// Software and Level are the member's version as the primary last saw it; AgentAddr its host agent ("" if none).
	Software  string `json:"software,omitempty"`
	Level     int    `json:"format_level,omitempty"`
	AgentAddr string `json:"agent_addr,omitempty"`
}

// DatabaseStatus is one mirrored database on the member reporting it.
type DatabaseStatus struct {
	Name       string `json:"name"`
	Status     string `json:"status"`
	NextRecord string `json:"next_record"` // journal position of the next record to dejournal
	Error      string `json:"error,omitempty"`
	Progress   string `json:"progress,omitempty"` // a copy being downloaded: bytes done of total, and from where
	BytesDone  int64  `json:"bytes_done,omitempty"`
	BytesTotal int64  `json:"bytes_total,omitempty"`
}

// Status is a mirror as one member sees it (Local) or as the Mirror Monitor shows it (merged with the primary's view).
type Status struct {
	Mirror       string `json:"mirror"`
	Member       string `json:"member"` // the member reporting
	Role         string `json:"role"`
	Epoch        uint64 `json:"epoch"`
	Primary      string `json:"primary"`
	PrimaryAddr  string `json:"primary_addr"`
	QoS          string `json:"qos"`
	NoFailover   bool   `json:"no_failover"`
	Arbiter      string `json:"arbiter"`
	FailoverMode string `json:"failover_mode"`
	// ArbiterAddr is the arbiter's address ("" when none) and ArbiterConnection one of the Arbiter* strings.
	ArbiterAddr       string `json:"arbiter_addr,omitempty"`
	ArbiterConnection string `json:"arbiter_connection,omitempty"`
	// Trouble says why the primary is In Trouble or Waiting; Takeover why a backup that lost its primary does not take over.
	Trouble  string `json:"trouble,omitempty"`
	Takeover string `json:"takeover,omitempty"`
	// Failovers counts how often this member became primary, by how; TroubleEpisodes how often it was In Trouble.
	Failovers       map[string]uint64 `json:"failovers,omitempty"`
	TroubleEpisodes uint64            `json:"trouble_episodes"`
	NotValidated    []string          `json:"not_validated,omitempty"`
	Members         []MemberStatus    `json:"members"`
	Databases       []DatabaseStatus  `json:"databases"`
	RequireTLS      bool              `json:"require_tls"`
	Pending         []PendingMember   `json:"pending,omitempty"`
	JournalFirst    string            `json:"journal_first"`
	AsyncHoldback   string            `json:"async_holdback,omitempty"` // how long the primary keeps journal for a disconnected async
	JournalEnd      string            `json:"journal_end"`
	WireBytes       uint64            `json:"wire_bytes"`    // journal data received (or sent, on the primary) on the wire
	JournalBytes    uint64            `json:"journal_bytes"` // the same data uncompressed
	Ratio           float64           `json:"compression_ratio"`
	// Arrival rates over the last seconds (on a backup or async: journal data arriving from the primary).
	WireRate    float64 `json:"wire_bytes_per_second"`
	JournalRate float64 `json:"journal_bytes_per_second"`
	// PrimaryLevel is the format level failover and DR members need (the highest that has been primary, unless an upgrade
	// rollback lowered it); FinalizedLevel the level the mirror was finalized at (1: never); RecordFormat the journal
	// record format this member writes.
	PrimaryLevel   int `json:"primary_level"`
	FinalizedLevel int `json:"finalized_level"`
	RecordFormat   int `json:"record_format"`
}

func behind(d time.Duration) string {
	if d < caughtUpLag {
		return CaughtUp
	}
	return fmt.Sprintf("%s behind", d.Round(time.Second))
}

func disconnectedOn(t time.Time) string {
	if t.IsZero() {
		return "Disconnected"
	}
	return "Disconnected on " + t.UTC().Format(time.RFC3339)
}

// LocalStatus is what this member knows of the mirror.
func (mir *Mirror) LocalStatus() Status {
	now := mir.mgr.opts.Now()
	mir.mu.Lock()
	cfg := mir.st.Config.clone()
	st := Status{Mirror: mir.name, Member: mir.mgr.opts.Self, Role: mir.role.String(), Epoch: cfg.Epoch, Primary: cfg.Primary,
		QoS: cfg.QoS.String(), NoFailover: mir.st.NoFailover, RequireTLS: cfg.RequireTLS, Pending: cfg.Pending, Arbiter: "no arbiter", FailoverMode: "Agent Controlled",
		JournalFirst: mir.jrn.FirstPosition().String(), JournalEnd: mir.jrn.DurableEnd().String(),
		AsyncHoldback: cfg.AsyncHoldback.String(), PrimaryLevel: levelOr1(cfg.PrimaryLevel), FinalizedLevel: levelOr1(cfg.FinalizedLevel), RecordFormat: int(mir.jrn.RecordFormat())}
	if p, ok := cfg.Member(cfg.Primary); ok {
		st.PrimaryAddr = p.Addr
	}
	mir.failoverStatusLocked(&st, now)
	durable := mir.jrn.DurableEnd()
	dj := mir.dj
	for _, mc := range cfg.Members {
		row := MemberStatus{Name: mc.Name, Type: mc.Type.Label(), Addr: mc.Addr, Status: StatusDown, Software: mc.Software, Level: mc.Level, AgentAddr: mc.AgentAddr}
		switch {
		case mc.Name == cfg.Primary:
			row.JournalTransfer, row.Dejournaling = TransferNA, TransferNA
			if mc.Name == mir.mgr.opts.Self {
				row.Status = StatusPrimary
				switch {
				case mir.fo.waiting:
					row.Status = StatusWaiting()
				case mir.fo.trouble || mir.role == RolePrimary && !mir.leaseLocked():
					row.Status = StatusInTrouble
				case mir.blocked:
					row.Status = StatusTransition
				}
			}
		case mir.role == RolePrimary:
			r := mir.replicas[mc.Name]
			switch {
			case r == nil:
				row.JournalTransfer = "Disconnected"
			case r.ended():
				row.JournalTransfer = disconnectedOn(r.disconnectedAt)
			default:
				row.Status = StatusConnected
				if mc.Type == Failover {
					row.Status = StatusBackup
				}
				row.Received, row.Applied = r.acked.String(), r.applied.String()
				switch {
				case r.active:
					row.JournalTransfer = TransferActive
				case !r.acked.Less(durable):
					row.JournalTransfer = CaughtUp
				default:
					row.Status = StatusSynchronizing
					since := r.caughtUp
					if since.IsZero() {
						since = r.connected
					}
					row.JournalTransfer = behind(now.Sub(since))
				}
				st.WireBytes += r.wireBytes
				st.JournalBytes += r.rawBytes
			}
		case mc.Name == mir.mgr.opts.Self:
			row.Status, row.JournalTransfer = mir.replicaStatusLocked(mc, now)
			if !mir.recv.connected {
				row.Error = mir.recv.err
			}
			switch {
			case mir.st.RollbackRefused != "":
				row.Status, row.Error = StatusError, mir.st.RollbackRefused
			case mir.fo.takingOver || mir.st.RollbackTo != nil:
				row.Status = StatusTransition
			}
			row.Received = durable.String()
			st.WireBytes, st.JournalBytes = mir.recv.wireBytes, mir.recv.rawBytes
			st.WireRate, st.JournalRate = mir.recv.rate.perSecond(now, mir.recv.wireBytes, mir.recv.rawBytes)
		}
		st.Members = append(st.Members, row)
	}
	stopped := mir.st.DejournalPaused
	mir.mu.Unlock()

	if st.JournalBytes > 0 && st.WireBytes > 0 {
		st.Ratio = float64(st.JournalBytes) / float64(st.WireBytes)
	}
	st.Databases, st.Members = mir.databaseStatus(cfg, dj, stopped, st.Members)
	return st
}

func (mir *Mirror) replicaStatusLocked(mc MemberConfig, now time.Time) (status, transfer string) {
	if mir.st.MirroringStopped {
		return StatusStopped, disconnectedOn(mir.recv.since)
	}
	if !mir.recv.connected {
		return StatusWaiting(), disconnectedOn(mir.recv.since)
	}
	status = StatusConnected
	if mc.Type == Failover {
		status = StatusBackup
	}
	if !mir.jrn.AppendedEnd().Less(mir.recv.primaryDurable) {
		return status, CaughtUp
	}
	return status, behind(now.Sub(mir.recv.lastReceived))
}

// failoverStatusLocked fills the failover mode, the arbiter connection, the reasons and the counters.
func (mir *Mirror) failoverStatusLocked(st *Status, now time.Time) {
	cfg := &mir.st.Config
	fo := &mir.fo
	st.Failovers, st.TroubleEpisodes, st.NotValidated = maps.Clone(fo.failovers), fo.troubles, cfg.NotValidated
	mode := ModeAgent
	switch mir.role {
	case RolePrimary:
		mode = fo.mode
		if fo.waiting {
			st.Trouble = fo.waitWhy
		} else if fo.trouble {
			st.Trouble = fo.troubleWhy
		}
	case RoleBackup:
		if fo.flags&wire.StateArbiterMode != 0 {
			mode = ModeArbiter
		}
		st.Takeover = fo.blockedWhy
	}
	st.FailoverMode = mode.String()
	if cfg.Arbiter == "" {
		st.Arbiter, st.ArbiterConnection = "no arbiter", ArbiterNone
		return
	}
	st.Arbiter, st.ArbiterAddr = cfg.Arbiter, cfg.Arbiter
	switch {
	case !mir.arbiterFreshLocked(now):
		st.ArbiterConnection = ArbiterNone
	case fo.arbView.PeerSeen:
		st.ArbiterConnection = ArbiterBoth
	default:
		st.ArbiterConnection = ArbiterSelf
	}
}

// caughtUpLag is how far dejournaling may trail what was received (in journal time) and still count as caught up: under a
// steady load the records just received are always being applied.
const caughtUpLag = time.Second

// dejournalLag is how far, in journal time, the databases applied by the main reader trail the newest record received.
func dejournalLag(djs dejournal.Status) time.Duration {
	if djs.LastReceivedTime.IsZero() || !djs.LastAppliedTime.Before(djs.LastReceivedTime) {
		return 0
	}
	return djs.LastReceivedTime.Sub(djs.LastAppliedTime)
}

// dejournalingStatus is the status of a database the dejournaler applies, its next record (none when stopped) and its
// error. It is Catchup Running while it catches up on its own reader, or while the main reader is far behind (a backlog
// after a restart); a database applied by a main reader that keeps up is Dejournaling, even though the newest records are
// still being applied.
func dejournalingStatus(d dejournal.DBStatus, djs dejournal.Status, received journal.Position) (status, next, err string) {
	switch {
	case d.Paused || djs.Stopped:
		return DBStopped, "", d.Err
	case d.CatchingUp || d.Applied.Less(received) && dejournalLag(djs) >= caughtUpLag:
		return DBCatchupRun, d.Applied.String(), ""
	default:
		return DBDejournaling, d.Applied.String(), ""
	}
}

// StatusWaiting is the status of a member that is looking for its primary.
func StatusWaiting() string { return "Waiting" }

// databaseStatus computes this member's mirrored database statuses and its own dejournaling column.
func (mir *Mirror) databaseStatus(cfg Config, dj *dejournal.Dejournaler, stopped bool, rows []MemberStatus) ([]DatabaseStatus, []MemberStatus) {
	var djs dejournal.Status
	byName := map[string]dejournal.DBStatus{}
	if dj != nil {
		djs = dj.Status()
		for _, d := range djs.Databases {
			byName[d.Name] = d
		}
	}
	received := mir.jrn.DurableEnd()
	attention := false
	var out []DatabaseStatus
	for _, info := range mir.mgr.mirroredDatabases(mir.name) {
		ds := DatabaseStatus{Name: info.Name, NextRecord: info.Applied.String()}
		d, tracked := byName[info.Name]
		switch {
		case !info.Mounted:
			ds.Status = DBDismounted
		case containsFold(cfg.Removed, info.Name):
			ds.Status = DBObsolete
		case !containsFold(cfg.Databases, info.Name):
			ds.Status = DBOrphaned
		case cfg.Primary == mir.mgr.opts.Self:
			ds.Status = DBNormal
		case !tracked:
			ds.Status = DBNeedsCatchup
		default:
			var next string
			ds.Status, next, ds.Error = dejournalingStatus(d, djs, received)
			if next != "" {
				ds.NextRecord = next
			}
			attention = attention || ds.Error != ""
		}
		out = append(out, ds)
	}
	mir.mu.Lock()
	for _, d := range mir.downloads {
		ds := DatabaseStatus{Name: d.DB, Status: d.Status, Error: d.Error, BytesDone: d.Done, BytesTotal: d.Total}
		if d.Status == DBDownloading {
			ds.Progress = fmt.Sprintf("%s of %s from %s", units.Bytes(d.Done), units.Bytes(d.Total), d.Source)
		}
		out = append(out, ds)
	}
	mir.mu.Unlock()
	if cfg.Primary != mir.mgr.opts.Self {
		for _, name := range mir.mgr.store.Unregistered() {
			if containsFold(cfg.Databases, name) {
				out = append(out, DatabaseStatus{Name: name, Status: DBNeedsActivation})
			}
		}
	}
	lag := dejournalLag(djs)
	for i := range rows {
		if rows[i].Name != mir.mgr.opts.Self || rows[i].Name == cfg.Primary {
			continue
		}
		switch {
		case stopped || djs.Stopped:
			rows[i].Dejournaling = DejournalStopped
		case attention:
			rows[i].Dejournaling = DejournalNeedsAttention
		case lag > 0:
			rows[i].Dejournaling = behind(lag)
		default:
			rows[i].Dejournaling = CaughtUp
		}
		rows[i].Applied = lowest(byName).String()
	}
	return out, rows
}

func lowest(m map[string]dejournal.DBStatus) journal.Position {
	var low journal.Position
	first := true
	for _, d := range m {
		if first || d.Applied.Less(low) {
			low, first = d.Applied, false
		}
	}
	return low
}

// Merge builds the Mirror Monitor from the primary's view and each member's own view: journal transfer as the primary sees
// it, dejournaling and databases as each member reports them. A member that did not answer keeps the primary's row.
func Merge(primary Status, locals map[string]Status) Status {
	out := primary
	out.Members = append([]MemberStatus(nil), primary.Members...)
	for i, row := range out.Members {
		local, ok := locals[row.Name]
		if !ok {
			continue
		}
		for _, own := range local.Members {
			if own.Name == row.Name {
				if row.Dejournaling == "" {
					out.Members[i].Dejournaling = own.Dejournaling
				}
				if row.Status == StatusDown {
					out.Members[i].Status = own.Status
				}
				if row.JournalTransfer == "" || row.JournalTransfer == "Disconnected" {
					out.Members[i].JournalTransfer = own.JournalTransfer
				}
			}
		}
	}
	return out
}
