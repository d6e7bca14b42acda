package mirrorresult

// SystemUnplanned names the unplanned failover result.
const SystemUnplanned = "unplanned-failover"

// Fault kinds of the unplanned failover benchmark, each done to the current primary.
const (
	FaultKill    = "kill"    // SIGKILL; restarted afterwards
	FaultStop    = "stop"    // SIGSTOP; SIGCONT afterwards
	FaultIsolate = "isolate" // its links to the backup and to the arbiter black-holed, both ways; healed afterwards
)

// UnplannedRound is one fault done to the primary while clients write. Times are in milliseconds from the fault.
type UnplannedRound struct {
	Fault     string `json:"fault"`
	Round     int    `json:"round"`
	From      string `json:"from"` // primary before the fault
	To        string `json:"to"`   // primary after it
	FromEpoch uint64 `json:"from_epoch"`
	ToEpoch   uint64 `json:"to_epoch"`
	// UnavailableMs is how long the application could not write: from the fault until the first acknowledgement of a
	// write sent after it, across all clients.
	UnavailableMs float64 `json:"unavailable_ms"`
	// TakeoverMs is when the other member was first seen primary in a higher epoch (its own view, polled).
	TakeoverMs float64 `json:"takeover_ms"`
	HealMs     float64 `json:"heal_ms"` // when the faulted member was restarted, continued or reconnected
	// HealthyMs is when the mirror was healthy again: the old primary an Active backup, both in Arbiter Controlled mode.
	HealthyMs float64 `json:"healthy_ms"`
	// Errors counts the client calls that failed from this fault until the next one, each a failure of the mirror;
	// UnknownOutcomes the writes in flight that failed with an unknown outcome meanwhile (allowed: such a write is not
	// counted as acknowledged).
	Errors          int `json:"errors"`
	UnknownOutcomes int `json:"unknown_outcomes"`
}

// UnplannedFault sums up the rounds of one fault kind.
type UnplannedFault struct {
	Fault     string `json:"fault"`
	Requested int    `json:"requested_rounds"`
	Rounds    int    `json:"rounds"` // completed
	// Unavailability over the completed rounds (zero when none completed); nearest-rank percentiles, so with 20 rounds
	// p99 is the max.
	P50Ms           float64 `json:"p50_ms"`
	P99Ms           float64 `json:"p99_ms"`
	MaxMs           float64 `json:"max_ms"`
	MinMs           float64 `json:"min_ms"`
	TakeoverP50Ms   float64 `json:"takeover_p50_ms"`
	TakeoverMaxMs   float64 `json:"takeover_max_ms"`
	Commits         int     `json:"commits"` // acknowledged while this fault kind ran
	Errors          int     `json:"errors"`  // failed client calls other than unknown outcomes: each is a failure
	UnknownOutcomes int     `json:"unknown_outcomes"`
	// Missing counts this kind's acknowledged writes that the final primary does not hold; -1 when not checked.
	Missing int `json:"missing"`
}

// Unplanned is a run of unplanned failovers: for each fault kind, rounds of that fault done to the current primary of a
// two-member mirror with an arbiter, while clients write through one mirror-aware client.
type Unplanned struct {
	System           string  `json:"system"`
	QoSMs            float64 `json:"qos_ms"`
	Clients          int     `json:"clients"`
	Conns            int     `json:"conns"`
	AttemptTimeoutMs float64 `json:"attempt_timeout_ms"` // the client's wait for one response
	DialTimeoutMs    float64 `json:"dial_timeout_ms"`
	SteadyMs         float64 `json:"steady_ms"` // load time with a healthy mirror before each fault

	Faults []UnplannedFault `json:"faults"`
	Rounds []UnplannedRound `json:"rounds"` // every completed round, in order

	Commits         int `json:"commits"`
	Errors          int `json:"errors"`
	UnknownOutcomes int `json:"unknown_outcomes"`
	// Missing counts acknowledged writes the final primary does not hold; -1 when they could not be checked.
	Missing      int      `json:"missing"`
	ErrorSamples []string `json:"error_samples,omitempty"`
	// Failure says why the run stopped early, or what else went wrong (a member that did not shut down cleanly).
	Failure string `json:"failure,omitempty"`
}
