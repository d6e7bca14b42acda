package server

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"

	"github.com/mirrorkit/mirrorkit/engine/mirror"
	"github.com/mirrorkit/mirrorkit/engine/wire"
)

// CopyRequest is the body of the routes that put a database into a mirror or fetch a copy of one.
type CopyRequest struct {
	Mirror string `json:"mirror"`
	From   string `json:"from,omitempty"` // download: the member to copy from ("" lets the member choose)
}

func decodeCopyRequest(r *http.Request) (CopyRequest, error) {
	var req CopyRequest
	if err := json.NewDecoder(io.LimitReader(r.Body, 1<<16)).Decode(&req); err != nil || req.Mirror == "" {
		return req, fmt.Errorf("request body: give the mirror: %w", wire.ErrBadRequest)
	}
	return req, nil
}

// copyRoutes serve existing databases joining a mirror: adding one on the primary, snapshots that other members and tools
// copy, and downloads of copies on backups and asyncs.
func (s *Server) copyRoutes(mux *http.ServeMux) {
	mux.HandleFunc("POST /api/v1/databases/{name}/add-to-mirror", func(w http.ResponseWriter, r *http.Request) {
		req, err := decodeCopyRequest(r)
		if err != nil {
			writeError(w, err)
			return
		}
		respond(w, func() (any, error) { return s.mirrors.AddExistingDatabase(r.PathValue("name"), req.Mirror) })
	})
	mux.HandleFunc("POST /api/v1/databases/{name}/download", func(w http.ResponseWriter, r *http.Request) {
		req, err := decodeCopyRequest(r)
		if err != nil {
			writeError(w, err)
			return
		}
		s.download(w, r.PathValue("name"), req)
	})
	mux.HandleFunc("POST /api/v1/databases/{name}/snapshots", func(w http.ResponseWriter, r *http.Request) {
		info, err := s.mirrors.CreateSnapshot(r.PathValue("name"))
		if err != nil {
			writeError(w, err)
			return
		}
		writeJSON(w, http.StatusCreated, info)
	})
	mux.HandleFunc("GET /api/v1/snapshots/{id}", func(w http.ResponseWriter, r *http.Request) {
		respond(w, func() (any, error) { return s.mirrors.Snapshot(r.PathValue("id")) })
	})
	mux.HandleFunc("GET /api/v1/snapshots/{id}/hash", func(w http.ResponseWriter, r *http.Request) {
		respond(w, func() (any, error) { return s.mirrors.SnapshotHash(r.PathValue("id")) })
	})
	mux.HandleFunc("GET /api/v1/snapshots/{id}/files/{path...}", func(w http.ResponseWriter, r *http.Request) {
		f, err := s.mirrors.OpenSnapshotFile(r.PathValue("id"), r.PathValue("path"))
		if err != nil {
			writeError(w, err)
			return
		}
		defer f.Close()
		fi, err := f.Stat()
		if err != nil {
			writeError(w, err)
			return
		}
		w.Header().Set("Content-Type", "application/octet-stream")
		// ServeContent answers Range requests, so an interrupted copy resumes where it stopped.
		http.ServeContent(w, r, "", fi.ModTime(), f)
	})
	mux.HandleFunc("DELETE /api/v1/snapshots/{id}", func(w http.ResponseWriter, r *http.Request) {
		respond(w, func() (any, error) {
			return map[string]string{"dropped": r.PathValue("id")}, s.mirrors.DropSnapshot(r.PathValue("id"))
		})
	})
}

// download starts fetching a copy of a mirrored database from another member; the answer is its first status.
func (s *Server) download(w http.ResponseWriter, db string, req CopyRequest) {
	mir, err := s.mirrors.Mirror(req.Mirror)
	if err != nil {
		writeError(w, err)
		return
	}
	st, err := mir.Download(db, req.From)
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusAccepted, st)
}

// isNeedsCopy reports whether creating a mirrored database here must fetch a copy instead.
func isNeedsCopy(err error) bool { return errors.Is(err, mirror.ErrNeedsCopy) }
