package server

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"

	"github.com/mirrorkit/mirrorkit/engine/mirror"
	"github.com/mirrorkit/mirrorkit/engine/wire"
)

// CreateMirrorRequest is the body of POST /api/v1/mirrors.
type CreateMirrorRequest struct {
	Name                string `json:"name"`
	QoS                 string `json:"qos,omitempty"`
	CompressionFailover string `json:"compression_failover,omitempty"`
	CompressionAsync    string `json:"compression_async,omitempty"`
	RequireTLS          bool   `json:"require_tls,omitempty"`
	AsyncHoldback       string `json:"async_holdback,omitempty"`
	Arbiter             string `json:"arbiter,omitempty"`
}

// PromoteRequest is the body of POST /api/v1/mirrors/{name}/promote.
type PromoteRequest struct {
	// NoPrimary promotes this DR async to primary although no primary runs (MIRRORING.md §7); it answers a
	// mirror.TakeoverReport instead of the mirror status.
	NoPrimary bool `json:"no_primary,omitempty"`
}

// JoinMirrorRequest is the body of POST /api/v1/mirrors/join.
type JoinMirrorRequest struct {
	Mirror  string `json:"mirror"`
	Primary string `json:"primary"` // the primary's data address
	As      string `json:"as"`      // failover, dr, reporting-ro, reporting-rw
}

// MirrorActionRequest is the body of the per-mirror operator actions.
type MirrorActionRequest struct {
	On bool   `json:"on"`           // no-failover: set or clear; dejournal: pause or resume; mirroring: start or stop
	DB string `json:"db,omitempty"` // dejournal: one database, or "" for the whole mirror
}

// AllowLevelRequest is the body of allow-level: the format level failover and DR members need from now on.
type AllowLevelRequest struct {
	Level int `json:"format_level"`
}

func decodeBody(r *http.Request, v any) error {
	if err := json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(v); err != nil {
		return fmt.Errorf("request body: %v: %w", err, wire.ErrBadRequest)
	}
	return nil
}

func (s *Server) mirrorRoutes(mux *http.ServeMux) {
	mux.HandleFunc("POST /api/v1/mirrors", func(w http.ResponseWriter, r *http.Request) {
		var req CreateMirrorRequest
		if err := decodeBody(r, &req); err != nil {
			writeError(w, err)
			return
		}
		o := mirror.CreateOptions{CompressionFailover: req.CompressionFailover, CompressionAsync: req.CompressionAsync, RequireTLS: req.RequireTLS, Arbiter: req.Arbiter}
		if req.QoS != "" {
			d, err := time.ParseDuration(req.QoS)
			if err != nil {
				writeError(w, fmt.Errorf("qos %q: %v: %w", req.QoS, err, wire.ErrBadRequest))
				return
			}
			o.QoS = d
		}
		if req.AsyncHoldback != "" {
			d, err := time.ParseDuration(req.AsyncHoldback)
			if err != nil {
				writeError(w, fmt.Errorf("async holdback %q: %v: %w", req.AsyncHoldback, err, wire.ErrBadRequest))
				return
			}
			o.AsyncHoldback = d
		}
		respond(w, func() (any, error) {
			mir, err := s.mirrors.Create(req.Name, o)
			if err != nil {
				return nil, err
			}
			return mir.LocalStatus(), nil
		})
	})
	mux.HandleFunc("POST /api/v1/mirrors/join", func(w http.ResponseWriter, r *http.Request) {
		var req JoinMirrorRequest
		if err := decodeBody(r, &req); err != nil {
			writeError(w, err)
			return
		}
		t, err := mirror.ParseMemberType(req.As)
		if err != nil {
			writeError(w, fmt.Errorf("%v: %w", err, wire.ErrBadRequest))
			return
		}
		respond(w, func() (any, error) {
			mir, err := s.mirrors.Join(r.Context(), req.Mirror, req.Primary, t)
			if err != nil {
				return nil, err
			}
			return mir.LocalStatus(), nil
		})
	})
	type memberType struct {
		Type string `json:"type"`
	}
	type dn struct {
		DN string `json:"dn"`
	}
	status := func(mir *mirror.Mirror, err error) (any, error) {
		if err != nil {
			return nil, err
		}
		return mir.LocalStatus(), nil
	}
	mirrorPost(s, mux, "members", func(r *http.Request, mir *mirror.Mirror, req mirror.JoinRequest) (any, error) {
		return mir.AddMember(req.Member, mirror.RequestDN(r))
	})
	mirrorPost(s, mux, "members/{member}/type", func(r *http.Request, mir *mirror.Mirror, req memberType) (any, error) {
		return mir.SetMemberType(r.PathValue("member"), mirror.MemberType(req.Type))
	})
	mirrorPost(s, mux, "members/{member}/remove", func(r *http.Request, mir *mirror.Mirror, _ struct{}) (any, error) {
		return mir.RemoveMember(r.PathValue("member"))
	})
	mirrorPost(s, mux, "failover", func(r *http.Request, mir *mirror.Mirror, _ struct{}) (any, error) {
		return status(mir, mir.Failover(r.Context()))
	})
	// promote and demote run on the member whose type changes; it asks the primary. Promoting with no_primary is the
	// disaster path: no primary runs, and this DR async becomes primary with the newest journal it can gather.
	mirrorPost(s, mux, "promote", func(r *http.Request, mir *mirror.Mirror, req PromoteRequest) (any, error) {
		if req.NoPrimary {
			return mir.PromoteWithoutPrimary(r.Context())
		}
		return status(mir, mir.RequestType(r.Context(), mirror.Failover))
	})
	mirrorPost(s, mux, "settings", func(r *http.Request, mir *mirror.Mirror, req mirror.Settings) (any, error) {
		return status(mir, mir.Set(req))
	})
	mirrorPost(s, mux, "force-primary", func(r *http.Request, mir *mirror.Mirror, _ struct{}) (any, error) {
		return mir.ForcePrimary(r.Context())
	})
	mirrorPost(s, mux, "demote", func(r *http.Request, mir *mirror.Mirror, _ struct{}) (any, error) {
		return status(mir, mir.RequestType(r.Context(), mirror.DR))
	})
	mirrorPost(s, mux, "leave", func(r *http.Request, mir *mirror.Mirror, _ struct{}) (any, error) {
		return map[string]string{"left": mir.Name()}, s.mirrors.Leave(r.Context(), mir.Name())
	})
	mirrorPost(s, mux, "remove", func(r *http.Request, mir *mirror.Mirror, _ struct{}) (any, error) {
		return map[string]string{"removed": mir.Name()}, s.mirrors.RemoveMirror(r.Context(), mir.Name())
	})
	mirrorPost(s, mux, "authorize", func(r *http.Request, mir *mirror.Mirror, req dn) (any, error) {
		_, err := mir.Authorize(req.DN)
		return status(mir, err)
	})
	mirrorPost(s, mux, "no-failover", func(r *http.Request, mir *mirror.Mirror, req MirrorActionRequest) (any, error) {
		return status(mir, mir.SetNoFailover(req.On))
	})
	mirrorPost(s, mux, "dejournal", func(r *http.Request, mir *mirror.Mirror, req MirrorActionRequest) (any, error) {
		return status(mir, mir.PauseDejournal(req.DB, !req.On))
	})
	mirrorPost(s, mux, "mirroring", func(r *http.Request, mir *mirror.Mirror, req MirrorActionRequest) (any, error) {
		return status(mir, mir.SetMirroring(req.On))
	})

	// Upgrades (MIRRORING.md §11), on the primary: finalize switches the mirror to this build's format level for good;
	// allow-level lowers the level failover and DR members need, so that an upgrade not yet finalized can be rolled back.
	mirrorPost(s, mux, "finalize", func(r *http.Request, mir *mirror.Mirror, _ struct{}) (any, error) {
		return mir.Finalize()
	})
	mirrorPost(s, mux, "allow-level", func(r *http.Request, mir *mirror.Mirror, req AllowLevelRequest) (any, error) {
		return mir.AllowLevel(req.Level)
	})

	mux.HandleFunc("GET /api/v1/mirror/local", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, s.localMirrorStatus())
	})
	mux.HandleFunc("GET /api/v1/mirror/status", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, s.mirrorMonitor(r.Context()))
	})
	mux.HandleFunc("GET /mirror/health", func(w http.ResponseWriter, r *http.Request) {
		want := mirror.RolePrimary
		if r.URL.Query().Get("role") == "backup" {
			want = mirror.RoleBackup
		}
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		for _, name := range s.mirrors.Names() {
			// A primary that is In Trouble or Waiting serves nothing: a load balancer must not send clients to it.
			if mir, err := s.mirrors.Mirror(name); err == nil && mir.Role() == want && (want != mirror.RolePrimary || mir.Serving()) {
				io.WriteString(w, "SUCCESS\n")
				return
			}
		}
		w.WriteHeader(http.StatusServiceUnavailable)
		io.WriteString(w, "FAILED\n")
	})
}

// mirrorPost registers POST /api/v1/mirrors/{name}/<path>: it decodes the JSON body (if any) into a B, finds the mirror and
// answers with what f returns.
func mirrorPost[B any](s *Server, mux *http.ServeMux, path string, f func(r *http.Request, mir *mirror.Mirror, body B) (any, error)) {
	mux.HandleFunc("POST /api/v1/mirrors/{name}/"+path, func(w http.ResponseWriter, r *http.Request) {
		var body B
		if r.ContentLength != 0 {
			if err := decodeBody(r, &body); err != nil {
				writeError(w, err)
				return
			}
		}
		respond(w, func() (any, error) {
			mir, err := s.mirrors.Mirror(r.PathValue("name"))
			if err != nil {
				return nil, err
			}
			return f(r, mir, body)
		})
	})
}

func (s *Server) localMirrorStatus() []mirror.Status {
	out := []mirror.Status{}
	for _, name := range s.mirrors.Names() {
		if mir, err := s.mirrors.Mirror(name); err == nil {
			out = append(out, mir.LocalStatus())
		}
	}
	return out
}

// mirrorMonitor merges this member's view with the primary's and every other member's own, asking them over their admin APIs
// (a member that does not answer within a second is shown as the primary sees it).
func (s *Server) mirrorMonitor(ctx context.Context) []mirror.Status {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	out := []mirror.Status{}
	for _, local := range s.localMirrorStatus() {
		mir, err := s.mirrors.Mirror(local.Mirror)
		if err != nil {
			continue
		}
		cfg := mir.Config()
		views := map[string]mirror.Status{local.Member: local}
		var mu sync.Mutex
		var wg sync.WaitGroup
		for _, mc := range cfg.Members {
			if mc.Name == local.Member || mc.AdminAddr == "" {
				continue
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				var remote []mirror.Status
				if err := s.mirrors.GetJSON(ctx, mc.AdminAddr, "/api/v1/mirror/local", &remote); err != nil {
					return
				}
				for _, st := range remote {
					if st.Mirror == local.Mirror {
						mu.Lock()
						views[mc.Name] = st
						mu.Unlock()
					}
				}
			}()
		}
		wg.Wait()
		primary, ok := views[cfg.Primary]
		if !ok || primary.Role != mirror.RolePrimary.String() {
			primary = local
		}
		merged := mirror.Merge(primary, views)
		merged.Member, merged.Role, merged.Databases = local.Member, local.Role, local.Databases
		out = append(out, merged)
	}
	return out
}
