package mirrorresult

// SystemDuring names the result of a command run under commit load.
const SystemDuring = "during"

// Pause is one gap between consecutive acknowledgements, across all clients, longer than the stall threshold. Times are
// in milliseconds; AtMs is when it began, from the command's start (negative when it began before).
type Pause struct {
	AtMs float64 `json:"at_ms"`
	Ms   float64 `json:"ms"`
}

// During is a command (a rolling upgrade, say) run while clients write through one mirror-aware client: what the
// clients saw from the command's start until a settling time after it ended.
type During struct {
	System  string   `json:"system"`
	Command []string `json:"command"`
	// CommandStarted is when the command started (RFC 3339, UTC), to line the pauses up with the command's own times.
	CommandStarted string  `json:"command_started"`
	CommandMs      float64 `json:"command_ms"` // wall time, from start to exit
	// ExitStatus is the command's exit status; -1 when it could not be started or was ended by a signal.
	ExitStatus   int    `json:"exit_status"`
	CommandError string `json:"command_error,omitempty"`

	Clients  int     `json:"clients"`
	WarmupMs float64 `json:"warmup_ms"` // load time before the command started
	SettleMs float64 `json:"settle_ms"` // load time after it ended, still measured
	StallMs  float64 `json:"stall_ms"`  // a gap longer than this is a pause

	// UnavailableMs is the total length of the pauses, each clipped to [command start, command end + settle]: the time
	// the application could not commit.
	UnavailableMs  float64 `json:"unavailable_ms"`
	LongestPauseMs float64 `json:"longest_pause_ms"`
	Pauses         int     `json:"pauses"`
	PauseList      []Pause `json:"pause_list,omitempty"`

	Commits       int      `json:"commits"`        // acknowledged over the whole run, warmup included
	CommitsDuring int      `json:"commits_during"` // acknowledged from the command's start until the settling time ended
	Seconds       float64  `json:"seconds"`        // length of the whole run under load
	Errors        int      `json:"errors"`         // failed client calls over the whole run
	ErrorSamples  []string `json:"error_samples,omitempty"`
	// ReadFrom is the member the acknowledged commits were read back from at the end: the primary by then.
	ReadFrom string `json:"read_from"`
	// Missing counts acknowledged commits ReadFrom does not hold; -1 when they could not be checked.
	Missing int `json:"missing"`
	// Failure says what makes the run a failure: the command failed, a client call failed or a commit is missing.
	Failure string `json:"failure,omitempty"`
}
