package server

import (
	"net/http"
	"strings"

	"github.com/mirrorkit/mirrorkit/engine/journal"
	"github.com/mirrorkit/mirrorkit/engine/mirror"
	"github.com/mirrorkit/mirrorkit/engine/shadow"
	"github.com/mirrorkit/mirrorkit/engine/store"
	"github.com/mirrorkit/mirrorkit/engine/wire"
)

// ShadowsStatus is the body of GET /api/v1/shadows: the shadows configured on this member (as a destination) and the
// streams it serves to shadows elsewhere (as a source).
type ShadowsStatus struct {
	Shadows []shadow.Status `json:"shadows"`
	Serving []shadow.Served `json:"serving"`
}

// ShadowStartRequest is the optional body of POST /api/v1/shadows/{name}/start.
type ShadowStartRequest struct {
	Start string `json:"start,omitempty"` // a new start position (only while stopped)
}

// ShadowJoinRequest is the body of POST /api/v1/shadows/{name}/join: the shadowed copy of DB joins the mirror, in place.
type ShadowJoinRequest struct {
	DB     string `json:"db"`
	Mirror string `json:"mirror"`
}

func (s *Server) shadowRoutes(mux *http.ServeMux) {
	mux.HandleFunc("GET /api/v1/shadows", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, ShadowsStatus{Shadows: s.shadows.List(), Serving: s.shadows.Serving()})
	})
	mux.HandleFunc("POST /api/v1/shadows", func(w http.ResponseWriter, r *http.Request) {
		var req shadow.CreateRequest
		if err := decodeBody(r, &req); err != nil {
			writeError(w, err)
			return
		}
		respond(w, func() (any, error) { return s.shadows.Create(r.Context(), req) })
	})
	mux.HandleFunc("GET /api/v1/shadows/{name}", func(w http.ResponseWriter, r *http.Request) {
		respond(w, func() (any, error) { return s.shadows.Status(r.PathValue("name")) })
	})
	mux.HandleFunc("DELETE /api/v1/shadows/{name}", func(w http.ResponseWriter, r *http.Request) {
		respond(w, func() (any, error) {
			return map[string]string{"removed": r.PathValue("name")}, s.shadows.Remove(r.PathValue("name"))
		})
	})
	mux.HandleFunc("POST /api/v1/shadows/{name}/{action}", func(w http.ResponseWriter, r *http.Request) {
		name := r.PathValue("name")
		switch action := r.PathValue("action"); action {
		case "start":
			var req ShadowStartRequest
			if r.ContentLength != 0 {
				if err := decodeBody(r, &req); err != nil {
					writeError(w, err)
					return
				}
			}
			respond(w, func() (any, error) {
				if req.Start == "" {
					return s.shadows.StartShadow(name, nil)
				}
				pos, err := journal.ParsePosition(strings.TrimSpace(req.Start))
				if err != nil || pos.IsZero() {
					return nil, &wire.Error{Code: wire.CodeBadRequest, Message: "start " + req.Start + ": want a position of the source's local journal (EPOCH:SEGMENT:OFFSET)"}
				}
				return s.shadows.StartShadow(name, &pos)
			})
		case "suspend":
			respond(w, func() (any, error) { return s.shadows.Suspend(name) })
		case "resume":
			respond(w, func() (any, error) { return s.shadows.Resume(name) })
		case "stop":
			respond(w, func() (any, error) { return s.shadows.Stop(name) })
		case "restart":
			respond(w, func() (any, error) { return s.shadows.Restart(name) })
		case "join":
			var req ShadowJoinRequest
			if err := decodeBody(r, &req); err != nil {
				writeError(w, err)
				return
			}
			respond(w, func() (any, error) {
				return s.mirrors.JoinInPlace(req.DB, req.Mirror, func(pos journal.Position, expect *store.LogicalHash) (mirror.JoinResult, error) {
					h, err := s.shadows.JoinMirror(name, req.DB, req.Mirror, pos, expect)
					return mirror.JoinResult{Hash: h, Verified: expect != nil}, err
				})
			})
		default:
			writeError(w, &wire.Error{Code: wire.CodeBadRequest, Message: "unknown shadow action " + action + ": want start, suspend, resume, stop, restart or join"})
		}
	})
}

// shadowed reports whether a database's journal is a shadow's (it belongs to no mirror).
func shadowed(info store.Info) bool {
	_, ok := store.ShadowOf(info.Mirror)
	return ok
}
