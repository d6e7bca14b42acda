package server

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strconv"

	"github.com/mirrorkit/mirrorkit/backup"
	"github.com/mirrorkit/mirrorkit/engine/mirror"
	"github.com/mirrorkit/mirrorkit/engine/store"
	"github.com/mirrorkit/mirrorkit/engine/wire"
	"github.com/mirrorkit/mirrorkit/restore"
)

// IncomingCommit is the body of POST /api/v1/incoming/{db}/commit: the backup's manifest (checked again here) and the
// mirror the restored copy joins.
type IncomingCommit struct {
	Mirror   string          `json:"mirror"`
	Manifest json.RawMessage `json:"manifest"`
	Delta    bool            `json:"delta,omitempty"` // reuse matching files of a dismounted older copy
}

// maxIncomingWrite bounds one file piece a restore pushes (a backup chunk).
const maxIncomingWrite = 256 << 20

// incomingRoutes receive a database copy restored from a backup by a tool: the files arrive piece by piece into a
// temporary directory beside the database's place (kept across interruptions, so a restore resumes), and commit checks
// them against the backup's manifest, moves them into place and activates the copy in its mirror.
func (s *Server) incomingRoutes(mux *http.ServeMux) {
	mux.HandleFunc("GET /api/v1/incoming/{db}", func(w http.ResponseWriter, r *http.Request) {
		respond(w, func() (any, error) {
			chunk, err := strconv.ParseInt(r.URL.Query().Get("chunk"), 10, 64)
			if err != nil || chunk < backup.MinChunkSize || chunk > backup.MaxChunkSize {
				return nil, fmt.Errorf("chunk %q: want the backup's chunk size: %w", r.URL.Query().Get("chunk"), wire.ErrBadRequest)
			}
			sink, err := s.incomingSink(r.PathValue("db"), r.URL.Query().Get("delta") == "1")
			if err != nil {
				return nil, err
			}
			sums, err := sink.Existing(r.Context(), chunk)
			if sums == nil {
				sums = []restore.FileSum{}
			}
			return sums, err
		})
	})
	mux.HandleFunc("PUT /api/v1/incoming/{db}/files/{path...}", func(w http.ResponseWriter, r *http.Request) {
		respond(w, func() (any, error) {
			offset, err := strconv.ParseInt(r.URL.Query().Get("offset"), 10, 64)
			if err != nil || offset < 0 {
				return nil, fmt.Errorf("offset %q: want a byte offset: %w", r.URL.Query().Get("offset"), wire.ErrBadRequest)
			}
			if err := backup.CheckFileName(r.PathValue("path")); err != nil {
				return nil, fmt.Errorf("%v: %w", err, wire.ErrBadRequest)
			}
			data, err := io.ReadAll(io.LimitReader(r.Body, maxIncomingWrite+1))
			if err != nil {
				return nil, err
			}
			if len(data) > maxIncomingWrite {
				return nil, fmt.Errorf("a piece of %s is larger than %d bytes: %w", r.PathValue("path"), maxIncomingWrite, wire.ErrBadRequest)
			}
			sink, err := s.incomingSink(r.PathValue("db"), false)
			if err != nil {
				return nil, err
			}
			return map[string]int{"written": len(data)}, sink.WriteAt(r.Context(), r.PathValue("path"), offset, data, r.URL.Query().Get("sha256"))
		})
	})
	mux.HandleFunc("POST /api/v1/incoming/{db}/commit", func(w http.ResponseWriter, r *http.Request) {
		respond(w, func() (any, error) {
			var req IncomingCommit
			if err := json.NewDecoder(io.LimitReader(r.Body, 64<<20)).Decode(&req); err != nil || req.Mirror == "" {
				return nil, fmt.Errorf("request body: give the mirror and the manifest: %w", wire.ErrBadRequest)
			}
			m, err := backup.DecodeManifest(req.Manifest)
			if err != nil {
				return nil, fmt.Errorf("%v: %w", err, wire.ErrBadRequest)
			}
			return s.commitIncoming(r, m, req.Mirror, req.Delta)
		})
	})
	mux.HandleFunc("DELETE /api/v1/incoming/{db}", func(w http.ResponseWriter, r *http.Request) {
		respond(w, func() (any, error) {
			sink, err := s.incomingSink(r.PathValue("db"), false)
			if err != nil {
				return nil, err
			}
			s.dropIncoming(r.PathValue("db"))
			return map[string]string{"discarded": r.PathValue("db")}, sink.Discard()
		})
	})
}

// incomingSink is the restore sink for a database; a mounted database of that name is never overwritten. One sink serves
// a restore for the life of this process (it remembers what it wrote and checked); the one that asked for delta decides.
func (s *Server) incomingSink(db string, delta bool) (*restore.DirSink, error) {
	canon, err := store.CanonicalDatabaseName(db)
	if err != nil {
		return nil, err
	}
	if info, err := s.store.Get(canon); err == nil && info.Mounted {
		return nil, fmt.Errorf("database %s exists on member %s and is mounted: dismount (or delete) it before restoring over it: %w", canon, s.cfg.Name, wire.ErrExists)
	}
	s.incomingMu.Lock()
	defer s.incomingMu.Unlock()
	if sink, ok := s.incoming[canon]; ok && (!delta || sink.Delta()) {
		return sink, nil
	}
	sink, err := restore.NewDirSink(filepath.Join(s.cfg.DataDir, "db", canon), delta)
	if err != nil {
		return nil, err
	}
	sink.CheckArrivals() // the pieces crossed the network from the tool that checked them
	if s.incoming == nil {
		s.incoming = map[string]*restore.DirSink{}
	}
	s.incoming[canon] = sink
	return sink, nil
}

// dropIncoming forgets the sink of a restore that ended (committed or discarded).
func (s *Server) dropIncoming(db string) {
	s.incomingMu.Lock()
	defer s.incomingMu.Unlock()
	delete(s.incoming, db)
}

func (s *Server) commitIncoming(r *http.Request, m *backup.Manifest, mirrorName string, delta bool) (store.Info, error) {
	canon, err := store.CanonicalDatabaseName(r.PathValue("db"))
	if err != nil {
		return store.Info{}, err
	}
	if m.Database != canon {
		return store.Info{}, fmt.Errorf("backup %s is of database %s, not %s: %w", m.ID, m.Database, canon, wire.ErrBadRequest)
	}
	if m.Mirror != "" && !sameMirror(m.Mirror, mirrorName) {
		return store.Info{}, fmt.Errorf("backup %s was taken in mirror %s; it can only join that mirror, not %s: %w", m.ID, m.Mirror, mirrorName, wire.ErrBadRequest)
	}
	mir, err := s.mirrors.Mirror(mirrorName)
	if err != nil {
		return store.Info{}, err
	}
	if st := mir.LocalStatus(); st.Primary == s.cfg.Name {
		return store.Info{}, fmt.Errorf("member %s is the primary of mirror %s: its databases are the originals; restore copies on the other members: %w", s.cfg.Name, mirrorName, wire.ErrBadRequest)
	}
	sink, err := s.incomingSink(canon, delta)
	if err != nil {
		return store.Info{}, err
	}
	// A dismounted older copy gives way; with delta, its files that match the backup are reused, and the commit moves
	// its directory aside and removes it once the restored one checks.
	if err := s.store.Forget(canon); err != nil {
		return store.Info{}, err
	}
	if err := sink.Commit(r.Context(), m); err != nil {
		return store.Info{}, err
	}
	s.dropIncoming(canon)
	return s.mirrors.Activate(canon, mirrorName)
}

func sameMirror(a, b string) bool {
	ca, err1 := mirror.CanonicalMirrorName(a)
	cb, err2 := mirror.CanonicalMirrorName(b)
	return err1 == nil && err2 == nil && ca == cb
}
