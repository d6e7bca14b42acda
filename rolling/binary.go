package rolling

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strings"
	"time"

	"github.com/mirrorkit/mirrorkit/backup/s3stage"
	"github.com/mirrorkit/mirrorkit/backup/stage"
	"github.com/mirrorkit/mirrorkit/engine/version"
)

// ErrNotMemberBinary means the file to upgrade to is not a member binary this toolkit can run.
var ErrNotMemberBinary = errors.New("not a member binary")

// Target is the binary a mirror is upgraded to.
type Target struct {
	Source  string       `json:"source"` // a path, file:///path, or s3://bucket/prefix/object
	SHA256  string       `json:"sha256"`
	Size    int64        `json:"size"`
	Version version.Info `json:"version"`
}

// Describe names the target's version as refusals and plans print it.
func (t Target) Describe() string { return version.Describe(t.Version.Software, t.Version.Level) }

// Inspect reads the binary at source, computes its SHA-256 and asks it its version (`member version --json`), so the
// plan knows what it installs. An S3 or staged object is downloaded to a temporary file first.
func Inspect(ctx context.Context, source string) (Target, error) {
	local, cleanup, err := fetch(ctx, source)
	if err != nil {
		return Target{}, err
	}
	defer cleanup()
	f, err := os.Open(local)
	if err != nil {
		return Target{}, fmt.Errorf("binary %s: %w", source, err)
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return Target{}, fmt.Errorf("binary %s: %w", source, err)
	}
	t := Target{Source: source, SHA256: hex.EncodeToString(h.Sum(nil)), Size: n}
	vctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(vctx, local, "version", "--json")
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return Target{}, fmt.Errorf("%w: %s: `version --json` failed: %v %s", ErrNotMemberBinary, source, err, strings.TrimSpace(stderr.String()))
	}
	dec := json.NewDecoder(&stdout)
	if err := dec.Decode(&t.Version); err != nil || t.Version.Software == "" || t.Version.Level < 1 {
		return Target{}, fmt.Errorf("%w: %s: its `version --json` output is not a member's version (%v)", ErrNotMemberBinary, source, err)
	}
	return t, nil
}

// fetch returns a local path holding the binary at source.
func fetch(ctx context.Context, source string) (string, func(), error) {
	none := func() {}
	if !strings.HasPrefix(source, "s3://") {
		p := strings.TrimPrefix(source, "file://")
		if !filepath.IsAbs(p) {
			return "", none, fmt.Errorf("binary %s: give an absolute path (the members' agents read it, from their own working directories)", source)
		}
		if _, err := os.Stat(p); err != nil {
			return "", none, fmt.Errorf("binary %s: %w", source, err)
		}
		return p, none, nil
	}
	dir, object := path.Split(strings.TrimSuffix(source, "/"))
	if object == "" || dir == "s3://" {
		return "", none, fmt.Errorf("binary %s: want s3://bucket/prefix/object", source)
	}
	st, err := stage.Open(ctx, strings.TrimSuffix(dir, "/"), s3stage.Options{})
	if err != nil {
		return "", none, fmt.Errorf("binary %s: %w", source, err)
	}
	r, err := st.Get(ctx, object, 0, -1)
	if err != nil {
		return "", none, fmt.Errorf("binary %s: %w", source, err)
	}
	defer r.Close()
	f, err := os.CreateTemp("", "mirrorkit-upgrade-*")
	if err != nil {
		return "", none, err
	}
	cleanup := func() { os.Remove(f.Name()) }
	if _, err := io.Copy(f, r); err != nil {
		f.Close()
		cleanup()
		return "", none, fmt.Errorf("binary %s: %w", source, err)
	}
	if err := f.Chmod(0o755); err != nil {
		f.Close()
		cleanup()
		return "", none, err
	}
	if err := f.Close(); err != nil {
		cleanup()
		return "", none, err
	}
	return f.Name(), cleanup, nil
}
