package agent

import (
	"context"
	"crypto/subtle"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	stdlog "log"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/mirrorkit/mirrorkit/engine/journal"
)

// Headers of a journal response.
const (
	HeaderJournalFirst = "X-Journal-First" // the oldest position still on disk
	HeaderJournalEnd   = "X-Journal-End"   // the position after the last record returned
)

var (
	// ErrNotFound means the member is not supervised by the agent, or has no such mirror, or an install's source does not
	// exist.
	ErrNotFound = errors.New("not found on the agent")
	// ErrUnauthorized means the agent refused the caller: no token, a wrong token, or no client certificate.
	ErrUnauthorized = errors.New("not authorized by the agent")
	// ErrClosed is returned after Close.
	ErrClosed = errors.New("agent closed")
)

// MemberStatus is what the agent knows of one member: its process, and the role each of its mirrors gives it as persisted
// in its data directory.
type MemberStatus struct {
	Name    string    `json:"name"`
	Running bool      `json:"running"`
	PID     int       `json:"pid,omitempty"`    // while running
	Started time.Time `json:"started,omitzero"` // when the current (or last) run started
	// ExitStatus is how the last run ended ("exit status 1", "signal: killed"); empty if none has.
	ExitStatus string `json:"exit_status,omitempty"`
	// StoppedByAgent is set by a stop or kill through the agent and cleared by a start: while set, the agent does not
	// restart the member.
	StoppedByAgent bool         `json:"stopped_by_agent"`
	Error          string       `json:"error,omitempty"` // why the agent's last restart of the member failed
	Mirrors        []MirrorRole `json:"mirrors"`
}

// Options configure an Agent beyond its configuration file.
type Options struct {
	Logger zerolog.Logger
	// RestartDelay is the first wait before an autostarted member that exited is started again (default 1s); it
	// doubles with each quick exit, up to 30s.
	RestartDelay time.Duration
}

// Agent supervises the members of its configuration and serves the API.
type Agent struct {
	cfg  Config
	log  zerolog.Logger
	tls  *tls.Config // nil: callers present the token
	sup  *supervisor
	http *http.Server
	// installs serializes the installs and rollbacks of each member's binary.
	installs map[string]*sync.Mutex

	mu      sync.Mutex
	serving bool
	closed  bool
}

// New validates cfg (after Defaults) and prepares an agent; it starts nothing. A member's binary installed through the
// agent (DATA_DIR/.agent/installed.json) replaces its configured one; New finishes an install or rollback that a crash
// interrupted, and fails, naming the file, on an install record it cannot read or an installed binary that is not the
// recorded one.
func New(cfg Config, opts Options) (*Agent, error) {
	cfg.Defaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("agent configuration: %w", err)
	}
	if opts.RestartDelay <= 0 {
		opts.RestartDelay = defaultRestartDelay
	}
	a := &Agent{cfg: cfg, log: opts.Logger.With().Str("component", "agent").Logger()}
	if cfg.TLS.Enabled() {
		conf, err := cfg.TLS.ServerConfig()
		if err != nil {
			return nil, fmt.Errorf("agent tls: %w", err)
		}
		a.tls = conf
	}
	a.sup = newSupervisor(cfg.Members, opts.RestartDelay, a.log)
	a.installs = map[string]*sync.Mutex{}
	for _, m := range cfg.Members {
		a.installs[m.Name] = &sync.Mutex{}
		rec, installed, err := loadInstall(layoutOf(m.DataDir))
		if err != nil {
			return nil, fmt.Errorf("member %s: %w", m.Name, err)
		}
		if installed {
			if err := a.sup.setBinary(m.Name, rec.Binary); err != nil {
				return nil, err
			}
		}
	}
	a.http = &http.Server{Handler: a.Handler(), ReadHeaderTimeout: 10 * time.Second,
		ErrorLog: stdlog.New(a.log, "", 0)}
	return a, nil
}

// Serve starts the autostarted members, then serves the API on ln (a plain TCP listener: the agent speaks TLS itself
// when configured) until Close, when it returns nil. A member that cannot be started fails it, naming the member.
func (a *Agent) Serve(ln net.Listener) error {
	a.mu.Lock()
	if a.closed || a.serving {
		err := ErrClosed
		if a.serving {
			err = errors.New("agent already serving")
		}
		a.mu.Unlock()
		ln.Close()
		return err
	}
	a.serving = true
	a.mu.Unlock()
	if err := a.sup.autostart(); err != nil {
		ln.Close()
		return err
	}
	if a.tls != nil {
		ln = tls.NewListener(ln, a.tls)
	}
	a.log.Info().Str("listen", ln.Addr().String()).Bool("tls", a.tls != nil).Int("members", len(a.cfg.Members)).Msg("agent serving")
	if err := a.http.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("agent on %s: %w", ln.Addr(), err)
	}
	return nil
}

// Close stops serving and supervising. It does not stop the members: they run on without the agent.
func (a *Agent) Close() error {
	a.mu.Lock()
	if a.closed {
		a.mu.Unlock()
		return nil
	}
	a.closed = true
	a.mu.Unlock()
	a.sup.close()
	return a.http.Close()
}

// Members returns the status of every member, in configuration order.
func (a *Agent) Members() ([]MemberStatus, error) {
	names := a.sup.names()
	out := make([]MemberStatus, 0, len(names))
	for _, name := range names {
		st, err := a.Member(name)
		if err != nil {
			return nil, err
		}
		out = append(out, st)
	}
	return out, nil
}

// Member returns the status of one member.
func (a *Agent) Member(name string) (MemberStatus, error) {
	st, cfg, err := a.sup.status(name)
	if err != nil {
		return MemberStatus{}, err
	}
	if st.Mirrors, err = readMirrors(cfg.DataDir, name); err != nil {
		return MemberStatus{}, err
	}
	return st, nil
}

// Start starts the member unless it runs already; an autostarted member is restarted again when it exits.
func (a *Agent) Start(name string) error { return a.sup.start(name) }

// Stop sends the member SIGTERM and waits until it has exited or ctx is done.
func (a *Agent) Stop(ctx context.Context, name string) error { return a.sup.stop(ctx, name) }

// Kill sends the member SIGKILL and waits until it has exited: when it returns nil the process is gone.
func (a *Agent) Kill(ctx context.Context, name string) error { return a.sup.kill(ctx, name) }

// Handler is the API with its authentication, for serving on a listener of the caller's choice; with TLS configured it
// accepts only requests that arrived over TLS with a verified client certificate.
func (a *Agent) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/members", func(w http.ResponseWriter, r *http.Request) {
		sts, err := a.Members()
		respond(w, sts, err)
	})
	mux.HandleFunc("GET /v1/members/{name}", func(w http.ResponseWriter, r *http.Request) {
		st, err := a.Member(r.PathValue("name"))
		respond(w, st, err)
	})
	actions := map[string]func(ctx context.Context, name string) error{
		"start": func(_ context.Context, name string) error { return a.Start(name) },
		"stop":  a.Stop,
		"kill":  a.Kill,
	}
	for action, do := range actions {
		mux.HandleFunc("POST /v1/members/{name}/"+action, func(w http.ResponseWriter, r *http.Request) {
			name := r.PathValue("name")
			a.log.Info().Str("member", name).Str("action", action).Str("remote", r.RemoteAddr).Msg("member action requested")
			if err := do(r.Context(), name); err != nil {
				respond(w, nil, err)
				return
			}
			st, err := a.Member(name)
			respond(w, st, err)
		})
	}
	mux.HandleFunc("POST /v1/members/{name}/install", a.serveInstall)
	mux.HandleFunc("POST /v1/members/{name}/rollback-binary", a.serveRollbackBinary)
	mux.HandleFunc("GET /v1/members/{name}/binary", func(w http.ResponseWriter, r *http.Request) {
		info, err := a.Binary(r.PathValue("name"))
		respond(w, info, err)
	})
	mux.HandleFunc("GET /v1/members/{name}/mirrors/{mirror}/journal", a.serveJournal)
	return a.authenticate(mux)
}

// authenticate refuses, before anything else is done, a caller that presents neither a verified client certificate
// (with TLS) nor the token (without).
func (a *Agent) authenticate(next http.Handler) http.Handler {
	want := []byte("Bearer " + a.cfg.Token)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var refusal string
		switch {
		case a.tls != nil:
			if r.TLS == nil || len(r.TLS.PeerCertificates) == 0 {
				refusal = "the agent requires a client certificate"
			}
		case r.Header.Get("Authorization") == "":
			refusal = "the agent requires a token: Authorization: Bearer TOKEN"
		case subtle.ConstantTimeCompare([]byte(r.Header.Get("Authorization")), want) != 1:
			refusal = "the token presented is not the agent's token"
		}
		if refusal != "" {
			a.log.Warn().Str("remote", r.RemoteAddr).Str("path", r.URL.Path).Str("reason", refusal).Msg("agent refused a caller")
			w.Header().Set("WWW-Authenticate", "Bearer")
			writeError(w, http.StatusUnauthorized, codeUnauthorized, refusal)
			return
		}
		next.ServeHTTP(w, r)
	})
}

func (a *Agent) serveJournal(w http.ResponseWriter, r *http.Request) {
	name, mirror := r.PathValue("name"), r.PathValue("mirror")
	var from journal.Position
	if s := r.URL.Query().Get("from"); s != "" {
		var err error
		if from, err = journal.ParsePosition(s); err != nil {
			writeError(w, http.StatusBadRequest, codeBadRequest, err.Error())
			return
		}
	}
	_, cfg, err := a.sup.status(name)
	if err != nil {
		respond(w, nil, err)
		return
	}
	dir, err := mirrorJournalDir(cfg.DataDir, name, mirror)
	if err != nil {
		respond(w, nil, err)
		return
	}
	jr, err := readJournal(dir, from)
	if err != nil {
		respond(w, nil, fmt.Errorf("journal of mirror %s of member %s: %w", mirror, name, err))
		return
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Content-Length", strconv.Itoa(len(jr.Frames)))
	w.Header().Set(HeaderJournalFirst, jr.First.String())
	w.Header().Set(HeaderJournalEnd, jr.End.String())
	w.WriteHeader(http.StatusOK)
	// A write error means the caller went away; there is nobody left to tell.
	_, _ = w.Write(jr.Frames)
}

// Error codes of the JSON error body, which the Client turns back into sentinel errors.
const (
	codeBadRequest   = "bad_request"
	codeBadPosition  = "bad_position"
	codeUnauthorized = "unauthorized"
	codeNotFound     = "not_found"
	codePurged       = "purged"
	codeInternal     = "internal"
	// Codes of installs and rollbacks of member binaries.
	codeChecksumMismatch = "checksum_mismatch"
	codeNoPreviousBinary = "no_previous_binary"
)

type errorBody struct {
	Error string `json:"error"`
	Code  string `json:"code"`
}

// respond writes v as JSON, or err with the status its sentinel calls for.
func respond(w http.ResponseWriter, v any, err error) {
	if err != nil {
		switch {
		case errors.Is(err, ErrNotFound):
			writeError(w, http.StatusNotFound, codeNotFound, err.Error())
		case errors.Is(err, journal.ErrPurged):
			writeError(w, http.StatusGone, codePurged, err.Error())
		case errors.Is(err, journal.ErrBadPosition):
			writeError(w, http.StatusBadRequest, codeBadPosition, err.Error())
		case errors.Is(err, ErrChecksumMismatch):
			writeError(w, http.StatusBadRequest, codeChecksumMismatch, err.Error())
		case errors.Is(err, ErrBadRequest):
			writeError(w, http.StatusBadRequest, codeBadRequest, err.Error())
		case errors.Is(err, ErrNoPreviousBinary):
			writeError(w, http.StatusConflict, codeNoPreviousBinary, err.Error())
		default:
			writeError(w, http.StatusInternalServerError, codeInternal, err.Error())
		}
		return
	}
	writeJSON(w, http.StatusOK, v)
}

func writeError(w http.ResponseWriter, status int, code, msg string) {
	writeJSON(w, status, errorBody{Error: msg, Code: code})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	// A write error means the caller went away; there is nobody left to tell.
	_ = json.NewEncoder(w).Encode(v)
}
