package server

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

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
		s.metrics.snapshotBytes.Add(float64(serveRange(w, r, f, fi.Size())))
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

// serveRange answers a read of a snapshot file: the whole file, or the one byte range "bytes=FIRST-[LAST]" the copiers ask
// for. The bytes go from the file to the socket with sendfile (a seek and a limited copy of the *os.File), which
// http.ServeContent's ranged path would copy through user space. Anything else goes to http.ServeContent. It returns the
// bytes sent (for a request http.ServeContent answers, the file's size at most).
func serveRange(w http.ResponseWriter, r *http.Request, f *os.File, size int64) int64 {
	first, last, ok := parseRange(r.Header.Get("Range"), size)
	if !ok {
		http.ServeContent(w, r, "", time.Time{}, f)
		return size
	}
	if _, err := f.Seek(first, io.SeekStart); err != nil {
		writeError(w, err)
		return 0
	}
	n := last - first + 1
	w.Header().Set("Content-Length", strconv.FormatInt(n, 10))
	status := http.StatusOK
	if r.Header.Get("Range") != "" {
		w.Header().Set("Content-Range", fmt.Sprintf("bytes %d-%d/%d", first, last, size))
		status = http.StatusPartialContent
	}
	w.WriteHeader(status)
	sent, _ := io.CopyN(w, f, n)
	return sent
}

// parseRange understands no Range header (the whole file) and a single "bytes=FIRST-" or "bytes=FIRST-LAST" within the
// file; ok is false for anything else.
func parseRange(h string, size int64) (first, last int64, ok bool) {
	if h == "" {
		return 0, size - 1, size > 0
	}
	spec, found := strings.CutPrefix(h, "bytes=")
	if !found || strings.Contains(spec, ",") {
		return 0, 0, false
	}
	a, b, found := strings.Cut(spec, "-")
	if !found || a == "" {
		return 0, 0, false
	}
	first, err := strconv.ParseInt(a, 10, 64)
	if err != nil || first < 0 || first >= size {
		return 0, 0, false
	}
	last = size - 1
	if b != "" {
		if last, err = strconv.ParseInt(b, 10, 64); err != nil || last < first {
			return 0, 0, false
		}
		last = min(last, size-1)
	}
	return first, last, true
}
