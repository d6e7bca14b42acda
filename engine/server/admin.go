package server

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/mirrorkit/mirrorkit/engine/journal"
	"github.com/mirrorkit/mirrorkit/engine/mirror"
	"github.com/mirrorkit/mirrorkit/engine/server/monitor"
	"github.com/mirrorkit/mirrorkit/engine/shadow"
	"github.com/mirrorkit/mirrorkit/engine/store"
	"github.com/mirrorkit/mirrorkit/engine/version"
	"github.com/mirrorkit/mirrorkit/engine/wire"
)

// Status is the member's state as served by GET /api/v1/status and printed by `member status`.
type Status struct {
	Member    string        `json:"member"`
	Version   version.Info  `json:"version"`
	DataAddr  string        `json:"data_addr"`
	AdminAddr string        `json:"admin_addr"`
	Started   time.Time     `json:"started"`
	Uptime    string        `json:"uptime"`
	Journal   JournalStatus `json:"journal"`
	Databases []store.Info  `json:"databases"`
	// Shadows are the shadows configured on this member.
	Shadows []shadow.Status `json:"shadows,omitempty"`
}

// JournalStatus summarises the member's local journal.
type JournalStatus struct {
	Epoch    uint64           `json:"epoch"`
	First    journal.Position `json:"first"`
	Durable  journal.Position `json:"durable"`
	Segments int              `json:"segments"`
	Syncs    uint64           `json:"syncs"`
	Records  uint64           `json:"records"`
}

// ErrorBody is the JSON body of every admin error response.
type ErrorBody struct {
	Error string `json:"error"`
	Code  string `json:"code"`
}

// CreateDatabaseRequest is the body of POST /api/v1/databases.
type CreateDatabaseRequest struct {
	Name   string `json:"name"`
	Mirror string `json:"mirror,omitempty"`
}

func (s *Server) adminHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /api/v1/status", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, s.Status())
	})
	mux.HandleFunc("GET /api/v1/databases", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, s.store.List())
	})
	mux.HandleFunc("POST /api/v1/databases", func(w http.ResponseWriter, r *http.Request) {
		var req CreateDatabaseRequest
		if err := json.NewDecoder(io.LimitReader(r.Body, 1<<16)).Decode(&req); err != nil {
			writeError(w, fmt.Errorf("request body: %v: %w", err, wire.ErrBadRequest))
			return
		}
		create := s.store.Create
		if req.Mirror != "" {
			create = func(name string) (store.Info, error) { return s.mirrors.CreateDatabase(name, req.Mirror) }
		}
		info, err := create(req.Name)
		if isNeedsCopy(err) {
			// A database that joined the mirror with data: creating it on a backup or async downloads a copy.
			s.download(w, req.Name, CopyRequest{Mirror: req.Mirror})
			return
		}
		if err != nil {
			writeError(w, err)
			return
		}
		writeJSON(w, http.StatusCreated, info)
	})
	mux.HandleFunc("GET /api/v1/databases/{name}", func(w http.ResponseWriter, r *http.Request) {
		respond(w, func() (any, error) { return s.store.Get(r.PathValue("name")) })
	})
	mux.HandleFunc("GET /api/v1/databases/{name}/hash", func(w http.ResponseWriter, r *http.Request) {
		respond(w, func() (any, error) { return s.store.Hash(r.PathValue("name")) })
	})
	mux.HandleFunc("POST /api/v1/databases/{name}/remove-from-mirror", func(w http.ResponseWriter, r *http.Request) {
		respond(w, func() (any, error) {
			info, err := s.store.Get(r.PathValue("name"))
			if err != nil {
				return nil, err
			}
			if info.Mirror == "" || shadowed(info) {
				return nil, fmt.Errorf("database %s is not mirrored: %w", info.Name, wire.ErrBadRequest)
			}
			if err := s.mirrors.RemoveDatabase(info.Name, info.Mirror); err != nil {
				return nil, err
			}
			return s.store.Get(info.Name)
		})
	})
	mux.HandleFunc("POST /api/v1/databases/{name}/activate", func(w http.ResponseWriter, r *http.Request) {
		var req CreateDatabaseRequest
		if err := json.NewDecoder(io.LimitReader(r.Body, 1<<16)).Decode(&req); err != nil || req.Mirror == "" {
			writeError(w, fmt.Errorf("request body: give the mirror: %w", wire.ErrBadRequest))
			return
		}
		respond(w, func() (any, error) { return s.mirrors.Activate(r.PathValue("name"), req.Mirror) })
	})
	mux.HandleFunc("POST /api/v1/databases/{name}/catchup", func(w http.ResponseWriter, r *http.Request) {
		respond(w, func() (any, error) {
			info, err := s.store.Get(r.PathValue("name"))
			if err != nil {
				return nil, err
			}
			if info.Mirror == "" || shadowed(info) {
				return nil, fmt.Errorf("database %s is not mirrored: %w", info.Name, wire.ErrBadRequest)
			}
			mir, err := s.mirrors.Mirror(info.Mirror)
			if err != nil {
				return nil, err
			}
			if err := mir.Catchup(info.Name); err != nil {
				return nil, err
			}
			return s.store.Get(info.Name)
		})
	})
	mux.HandleFunc("POST /api/v1/databases/{name}/mount", func(w http.ResponseWriter, r *http.Request) {
		respond(w, func() (any, error) { return s.store.Mount(r.PathValue("name")) })
	})
	mux.HandleFunc("POST /api/v1/databases/{name}/dismount", func(w http.ResponseWriter, r *http.Request) {
		respond(w, func() (any, error) {
			if info, err := s.store.Get(r.PathValue("name")); err == nil && info.Mirror != "" && !shadowed(info) && info.Mounted {
				s.mirrors.ReleaseDatabase(info.Name, info.Mirror)
			}
			return s.store.Dismount(r.PathValue("name"))
		})
	})
	mux.HandleFunc("DELETE /api/v1/databases/{name}", func(w http.ResponseWriter, r *http.Request) {
		respond(w, func() (any, error) {
			return map[string]string{"deleted": r.PathValue("name")}, s.store.Delete(r.PathValue("name"))
		})
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(s.metrics.registry, promhttp.HandlerOpts{}))
	s.mirrorRoutes(mux)
	s.copyRoutes(mux)
	s.incomingRoutes(mux)
	s.shadowRoutes(mux)
	// The Mirror Monitor page; the bare admin address leads to it, so operators can open any member's admin port.
	mux.Handle("GET "+monitor.Path, monitor.Handler())
	mux.Handle("GET /{$}", http.RedirectHandler(monitor.Path, http.StatusFound))
	return mux
}

// Status reports the member's current state.
func (s *Server) Status() Status {
	st := s.jrn.Stats()
	return Status{
		Member:    s.cfg.Name,
		Version:   version.Get(),
		DataAddr:  s.DataAddr(),
		AdminAddr: s.AdminAddr(),
		Started:   s.started.UTC(),
		Uptime:    time.Since(s.started).Round(time.Second).String(),
		Journal: JournalStatus{
			Epoch:    s.jrn.Epoch(),
			First:    s.jrn.FirstPosition(),
			Durable:  s.jrn.DurableEnd(),
			Segments: len(s.jrn.Segments()),
			Syncs:    st.Syncs,
			Records:  st.Records,
		},
		Databases: s.store.List(),
		Shadows:   s.shadows.List(),
	}
}

func respond(w http.ResponseWriter, f func() (any, error)) {
	v, err := f()
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, v)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}

// HTTP statuses and stable code names for typed errors; anything untyped is a 500.
var errorStatus = map[wire.Code]struct {
	status int
	name   string
}{
	wire.CodeBadRequest:         {http.StatusBadRequest, "bad-request"},
	wire.CodeInvalidName:        {http.StatusBadRequest, "invalid-name"},
	wire.CodeNoSuchDatabase:     {http.StatusNotFound, "no-such-database"},
	wire.CodeExists:             {http.StatusConflict, "exists"},
	wire.CodeDatabaseDismounted: {http.StatusConflict, "dismounted"},
	wire.CodeShuttingDown:       {http.StatusServiceUnavailable, "shutting-down"},
}

func writeError(w http.ResponseWriter, err error) {
	status, name := http.StatusInternalServerError, "internal"
	var we *wire.Error
	if errors.Is(err, mirror.ErrNoMirror) {
		status, name = http.StatusNotFound, "no-such-mirror"
	} else if errors.Is(err, shadow.ErrNoSuchShadow) {
		status, name = http.StatusNotFound, "no-such-shadow"
	} else if errors.Is(err, mirror.ErrFinalized) {
		status, name = http.StatusConflict, "finalized"
	} else if errors.Is(err, mirror.ErrNotFinalizable) {
		status, name = http.StatusConflict, "not-finalizable"
	} else if errors.As(err, &we) {
		if e, ok := errorStatus[we.Code]; ok {
			status, name = e.status, e.name
		}
	}
	writeJSON(w, status, ErrorBody{Error: err.Error(), Code: name})
}
