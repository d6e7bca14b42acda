package mirrorctl

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strconv"

	"github.com/mirrorkit/mirrorkit/backup"
	"github.com/mirrorkit/mirrorkit/engine/store"
	"github.com/mirrorkit/mirrorkit/internal/adminapi"
	"github.com/mirrorkit/mirrorkit/restore"
)

// IncomingSink restores a database onto a member: the member keeps the pieces in a temporary directory beside the
// database's place until Commit, which checks them against the manifest and activates the copy in the mirror.
type IncomingSink struct {
	member *Member
	db     string
	delta  bool
	Info   store.Info // what Commit activated
}

var _ restore.Sink = (*IncomingSink)(nil)

// Incoming returns a restore sink on the member for db; with delta, files of a dismounted older copy there that match
// the backup are kept instead of sent again.
func (m *Member) Incoming(db string, delta bool) *IncomingSink {
	return &IncomingSink{member: m, db: db, delta: delta}
}

func (s *IncomingSink) path() string { return "/api/v1/incoming/" + url.PathEscape(s.db) }

// Existing lists the files the member already holds for this restore.
func (s *IncomingSink) Existing(ctx context.Context, chunkSize int64) ([]restore.FileSum, error) {
	var sums []restore.FileSum
	q := "?chunk=" + strconv.FormatInt(chunkSize, 10)
	if s.delta {
		q += "&delta=1"
	}
	// Hashing what is there takes a while on a large database: the caller's context decides.
	if err := adminapi.Call(ctx, s.member.fleet.stream, http.MethodGet, s.member.AdminURL+s.path()+q, nil, &sums); err != nil {
		return nil, fmt.Errorf("member %s: restore of %s: %w", s.member.Name, s.db, err)
	}
	return sums, nil
}

// WriteAt sends one piece of a file with its checksum, which the member checks before writing it.
func (s *IncomingSink) WriteAt(ctx context.Context, name string, offset int64, data []byte, sum string) error {
	u := s.member.AdminURL + s.path() + "/files/" + name + "?offset=" + strconv.FormatInt(offset, 10) + "&sha256=" + sum
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, u, bytes.NewReader(data))
	if err != nil {
		return err
	}
	req.ContentLength = int64(len(data))
	resp, err := s.member.fleet.stream.Do(req)
	if err != nil {
		return fmt.Errorf("member %s: restore %s file %s: %w", s.member.Name, s.db, name, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 300 {
		return fmt.Errorf("member %s: restore %s file %s: %w", s.member.Name, s.db, name, adminapi.ReadError(resp))
	}
	return nil
}

// Commit has the member check the files against the manifest, move them into place and activate the copy.
func (s *IncomingSink) Commit(ctx context.Context, m *backup.Manifest) error {
	data, err := m.Marshal()
	if err != nil {
		return err
	}
	body := map[string]any{"mirror": s.member.fleet.Mirror, "manifest": json.RawMessage(data), "delta": s.delta}
	if err := adminapi.Call(ctx, s.member.fleet.stream, http.MethodPost, s.member.AdminURL+s.path()+"/commit", body, &s.Info); err != nil {
		return fmt.Errorf("member %s: restore of %s: %w", s.member.Name, s.db, err)
	}
	return nil
}

// Discard abandons a restore on the member.
func (s *IncomingSink) Discard(ctx context.Context) error {
	return s.member.call(ctx, http.MethodDelete, s.path(), nil, nil)
}
