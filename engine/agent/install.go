package agent

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/mirrorkit/mirrorkit/backup"
	"github.com/mirrorkit/mirrorkit/backup/s3stage"
	"github.com/mirrorkit/mirrorkit/backup/stage"
	"github.com/mirrorkit/mirrorkit/internal/atomicfile"
)

var (
	// ErrBadRequest means the agent refused a malformed request: a bad body, checksum or source.
	ErrBadRequest = errors.New("bad request to the agent")
	// ErrChecksumMismatch means the binary read from an install's source does not have the SHA-256 the caller gave;
	// nothing was installed.
	ErrChecksumMismatch = errors.New("binary checksum mismatch")
	// ErrNoPreviousBinary means a rollback was asked of a member for which the agent keeps no previous binary.
	ErrNoPreviousBinary = errors.New("no previous binary")
)

// installRecordVersion is the format of installed.json; a record of any other version is refused, not guessed at.
const installRecordVersion = 1

// installRecord is DATA_DIR/.agent/installed.json: the binary the agent runs the member with instead of the configured
// one, and the one it replaced. It is the commit point of an install or a rollback.
type installRecord struct {
	Version        int       `json:"version"`
	Binary         string    `json:"binary"`
	SHA256         string    `json:"sha256"`
	Previous       string    `json:"previous,omitempty"` // empty: the install found no binary to keep
	PreviousSHA256 string    `json:"previous_sha256,omitempty"`
	InstalledAt    time.Time `json:"installed_at"`
}

// InstallResult is the answer to an install or a rollback of a member's binary.
type InstallResult struct {
	Member         string `json:"member"`
	Binary         string `json:"binary"`
	SHA256         string `json:"sha256"`
	Previous       string `json:"previous"` // empty: no binary to roll back to
	PreviousSHA256 string `json:"previous_sha256"`
	// Restarted says the member was running and has been restarted with the new binary. False: it was not running (or
	// no restart was asked for) and runs the new binary from its next start.
	Restarted bool `json:"restarted"`
}

// BinaryInfo is the binary a member runs with.
type BinaryInfo struct {
	// Binary is the installed binary, or the configured one when nothing was installed through the agent.
	Binary string `json:"binary"`
	// SHA256 is the binary's checksum as recorded at install; for the configured binary it is computed on each call,
	// and empty when that file does not exist.
	SHA256         string    `json:"sha256"`
	Previous       string    `json:"previous"`
	PreviousSHA256 string    `json:"previous_sha256"`
	InstalledAt    time.Time `json:"installed_at,omitzero"` // zero: nothing installed
	Configured     string    `json:"configured"`            // the binary of the configuration file
	// FreeBytes is the space free to unprivileged users in the member's data directory, where binaries are installed.
	FreeBytes uint64 `json:"free_bytes"`
}

// maxInstallRequest bounds the body of an install or rollback request.
const maxInstallRequest = 64 << 10

// installRequest is the body of POST /v1/members/{name}/install; a rollback takes only Restart, and no body at all.
type installRequest struct {
	Source  string `json:"source,omitempty"`
	SHA256  string `json:"sha256,omitempty"`
	Restart *bool  `json:"restart,omitempty"` // absent: true
}

func (a *Agent) serveInstall(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	req, err := decodeInstallRequest(w, r, false)
	if err != nil {
		respond(w, nil, err)
		return
	}
	a.log.Info().Str("member", name).Str("action", "install").Str("source", req.Source).Str("sha256", req.SHA256).
		Str("remote", r.RemoteAddr).Msg("member action requested")
	res, err := a.Install(r.Context(), name, req.Source, req.SHA256, req.Restart == nil || *req.Restart)
	respond(w, res, err)
}

func (a *Agent) serveRollbackBinary(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	req, err := decodeInstallRequest(w, r, true)
	if err == nil && (req.Source != "" || req.SHA256 != "") {
		err = fmt.Errorf("%w: a rollback takes no source or sha256, only restart", ErrBadRequest)
	}
	if err != nil {
		respond(w, nil, err)
		return
	}
	a.log.Info().Str("member", name).Str("action", "rollback-binary").Str("remote", r.RemoteAddr).Msg("member action requested")
	res, err := a.RollbackBinary(r.Context(), name, req.Restart == nil || *req.Restart)
	respond(w, res, err)
}

// decodeInstallRequest reads the JSON body of an install or rollback; with optional, an empty body is no error.
func decodeInstallRequest(w http.ResponseWriter, r *http.Request, optional bool) (installRequest, error) {
	var req installRequest
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxInstallRequest))
	dec.DisallowUnknownFields()
	err := dec.Decode(&req)
	switch {
	case errors.Is(err, io.EOF) && optional:
		return req, nil
	case errors.Is(err, io.EOF):
		return req, fmt.Errorf(`%w: no body; want {"source": ..., "sha256": ..., "restart": true}`, ErrBadRequest)
	case err != nil:
		return req, fmt.Errorf("%w: request body: %w", ErrBadRequest, err)
	}
	return req, nil
}

// installLayout is where the agent keeps a member's installed binaries, inside the member's data directory.
type installLayout struct {
	dir      string // DATA_DIR/.agent
	bin      string // DATA_DIR/.agent/bin
	current  string // the installed binary the member runs
	previous string // the binary it replaced, for a rollback
	// staged holds the next binary from before installed.json names it until it is renamed to current, so that a crash
	// in between is finished (or undone) by the next settle.
	staged string
	record string // installed.json
}

func layoutOf(dataDir string) installLayout {
	dir := filepath.Join(dataDir, ".agent")
	bin := filepath.Join(dir, "bin")
	return installLayout{
		dir:      dir,
		bin:      bin,
		current:  filepath.Join(bin, "member"),
		previous: filepath.Join(bin, "member.previous"),
		staged:   filepath.Join(bin, "member.next"),
		record:   filepath.Join(dir, "installed.json"),
	}
}

// Install installs the binary at source as the member's, once its SHA-256 is checked against sum, keeping the binary
// in use as the previous one for RollbackBinary; with restart, a running member is stopped and started again with it.
// source is an absolute path, or an object of a staging target: s3://bucket/prefix/object, file:///dir/object.
func (a *Agent) Install(ctx context.Context, name, source, sum string, restart bool) (InstallResult, error) {
	if err := checkSHA256(sum); err != nil {
		return InstallResult{}, fmt.Errorf("install on member %s: %w", name, err)
	}
	_, cfg, err := a.sup.status(name)
	if err != nil {
		return InstallResult{}, err
	}
	unlock := a.lockInstall(name)
	defer unlock()
	l := layoutOf(cfg.DataDir)
	rec, installed, err := loadInstall(l)
	if err != nil {
		return InstallResult{}, fmt.Errorf("install on member %s: %w", name, err)
	}
	src, err := openSource(ctx, source)
	if err != nil {
		return InstallResult{}, fmt.Errorf("install on member %s: %w", name, err)
	}
	defer src.Close()
	undoDirs, err := makeInstallDirs(l)
	if err != nil {
		return InstallResult{}, fmt.Errorf("install on member %s: %w", name, err)
	}
	tmp, got, err := writeBinary(l.bin, sourceReader{src})
	if err != nil {
		undoDirs()
		return InstallResult{}, fmt.Errorf("install %s on member %s: %w", source, name, err)
	}
	if got != sum {
		os.Remove(tmp)
		undoDirs()
		return InstallResult{}, fmt.Errorf("install %s on member %s: %w: the source has sha256 %s, the request says %s; nothing was changed",
			source, name, ErrChecksumMismatch, got, sum)
	}
	next := installRecord{Version: installRecordVersion, Binary: l.current, SHA256: sum, InstalledAt: time.Now().UTC()}
	if installed {
		next.Previous, next.PreviousSHA256 = l.previous, rec.SHA256
	} else if next.Previous, next.PreviousSHA256, err = keepConfigured(l, cfg.Binary); err != nil {
		os.Remove(tmp)
		undoDirs()
		return InstallResult{}, fmt.Errorf("install on member %s: keep its configured binary as the previous one: %w", name, err)
	}
	if err := os.Rename(tmp, l.staged); err != nil {
		os.Remove(tmp)
		return InstallResult{}, fmt.Errorf("install on member %s: %w", name, err)
	}
	if err := atomicfile.SyncDir(l.bin); err != nil {
		return InstallResult{}, fmt.Errorf("install on member %s: %w", name, err)
	}
	return a.commitInstall(ctx, name, l, next, restart)
}

// RollbackBinary swaps the member's installed binary with the previous one, so that a second rollback goes forward
// again; with restart, a running member is stopped and started again with it. Without a previous binary it fails with
// ErrNoPreviousBinary.
func (a *Agent) RollbackBinary(ctx context.Context, name string, restart bool) (InstallResult, error) {
	_, cfg, err := a.sup.status(name)
	if err != nil {
		return InstallResult{}, err
	}
	unlock := a.lockInstall(name)
	defer unlock()
	l := layoutOf(cfg.DataDir)
	rec, installed, err := loadInstall(l)
	switch {
	case err != nil:
		return InstallResult{}, fmt.Errorf("roll back the binary of member %s: %w", name, err)
	case !installed:
		return InstallResult{}, fmt.Errorf("roll back the binary of member %s: %w: nothing was installed through the agent; it runs its configured binary %s",
			name, ErrNoPreviousBinary, cfg.Binary)
	case rec.Previous == "":
		return InstallResult{}, fmt.Errorf("roll back the binary of member %s: %w: its install found no binary to keep (%s records none)",
			name, ErrNoPreviousBinary, l.record)
	}
	sum, err := fileSHA256(l.previous)
	if err != nil {
		return InstallResult{}, fmt.Errorf("roll back the binary of member %s: %w", name, err)
	}
	if sum != rec.PreviousSHA256 {
		return InstallResult{}, fmt.Errorf("roll back the binary of member %s: previous binary %s has sha256 %s, but %s records %s; install the binary wanted instead",
			name, l.previous, sum, l.record, rec.PreviousSHA256)
	}
	// A link stages the previous binary without copying it; settle then moves the current one to previous.
	if err := os.Link(l.previous, l.staged); err != nil {
		return InstallResult{}, fmt.Errorf("roll back the binary of member %s: %w", name, err)
	}
	if err := atomicfile.SyncDir(l.bin); err != nil {
		return InstallResult{}, fmt.Errorf("roll back the binary of member %s: %w", name, err)
	}
	next := installRecord{Version: installRecordVersion, Binary: l.current, SHA256: rec.PreviousSHA256, Previous: l.previous,
		PreviousSHA256: rec.SHA256, InstalledAt: time.Now().UTC()}
	return a.commitInstall(ctx, name, l, next, restart)
}

// commitInstall persists next, whose binary is staged, puts the files in place, has the supervisor run the member
// with the installed binary and, with restart, restarts a running member.
func (a *Agent) commitInstall(ctx context.Context, name string, l installLayout, next installRecord, restart bool) (InstallResult, error) {
	if err := atomicfile.WriteJSON(l.record, next); err != nil {
		return InstallResult{}, fmt.Errorf("member %s: commit the install of sha256 %s: %w", name, next.SHA256, err)
	}
	if err := settle(l, next); err != nil {
		return InstallResult{}, fmt.Errorf("member %s: %s records binary sha256 %s, but putting it in place failed (the next install, rollback or agent start finishes it): %w",
			name, l.record, next.SHA256, err)
	}
	if err := a.sup.setBinary(name, l.current); err != nil {
		return InstallResult{}, err
	}
	res := InstallResult{Member: name, Binary: next.Binary, SHA256: next.SHA256, Previous: next.Previous, PreviousSHA256: next.PreviousSHA256}
	a.log.Info().Str("member", name).Str("binary", res.Binary).Str("sha256", res.SHA256).Str("previous_sha256", res.PreviousSHA256).
		Msg("member binary installed")
	if !restart {
		return res, nil
	}
	restarted, err := a.sup.restart(ctx, name)
	if err != nil {
		return res, fmt.Errorf("member %s: binary sha256 %s is installed, but restarting the member failed: %w", name, res.SHA256, err)
	}
	res.Restarted = restarted
	return res, nil
}

// Binary returns the binary the member runs with, the previous one kept for a rollback, and the configured one.
func (a *Agent) Binary(name string) (BinaryInfo, error) {
	_, cfg, err := a.sup.status(name)
	if err != nil {
		return BinaryInfo{}, err
	}
	info := BinaryInfo{Configured: cfg.Binary}
	var fsst syscall.Statfs_t
	if err := syscall.Statfs(cfg.DataDir, &fsst); err != nil {
		return BinaryInfo{}, fmt.Errorf("data directory of member %s: %w", name, err)
	}
	info.FreeBytes = fsst.Bavail * uint64(fsst.Bsize)
	rec, installed, err := readInstallRecord(layoutOf(cfg.DataDir))
	if err != nil {
		return BinaryInfo{}, fmt.Errorf("binary of member %s: %w", name, err)
	}
	if installed {
		info.Binary, info.SHA256, info.Previous, info.PreviousSHA256, info.InstalledAt = rec.Binary, rec.SHA256, rec.Previous, rec.PreviousSHA256, rec.InstalledAt
		return info, nil
	}
	info.Binary = cfg.Binary
	path, err := exec.LookPath(cfg.Binary)
	if errors.Is(err, fs.ErrNotExist) || errors.Is(err, exec.ErrNotFound) {
		return info, nil
	}
	if err != nil {
		return BinaryInfo{}, fmt.Errorf("configured binary of member %s: %w", name, err)
	}
	if info.SHA256, err = fileSHA256(path); err != nil {
		return BinaryInfo{}, fmt.Errorf("configured binary of member %s: %w", name, err)
	}
	return info, nil
}

// lockInstall serializes the installs and rollbacks of one member; name must be a supervised member.
func (a *Agent) lockInstall(name string) (unlock func()) {
	mu := a.installs[name]
	mu.Lock()
	return mu.Unlock
}

// loadInstall reads the member's install record and finishes what an interrupted install or rollback left: it removes
// temporary files, settles a staged binary and checks that the installed binary is the one recorded. installed is
// false when nothing was installed through the agent.
func loadInstall(l installLayout) (rec installRecord, installed bool, err error) {
	for _, dir := range []string{l.dir, l.bin} {
		if err := removeTemps(dir); err != nil {
			return installRecord{}, false, err
		}
	}
	if rec, installed, err = readInstallRecord(l); err != nil || !installed {
		return rec, installed, err
	}
	if err := settle(l, rec); err != nil {
		return installRecord{}, false, fmt.Errorf("finish the install %s records: %w", l.record, err)
	}
	sum, err := fileSHA256(l.current)
	if err != nil {
		return installRecord{}, false, fmt.Errorf("installed binary: %w; install a binary again, or remove %s to run the configured one", err, l.record)
	}
	if sum != rec.SHA256 {
		return installRecord{}, false, fmt.Errorf("installed binary %s has sha256 %s, but %s records %s; install a binary again, or remove %[3]s to run the configured one",
			l.current, sum, l.record, rec.SHA256)
	}
	return rec, true, nil
}

// readInstallRecord reads installed.json, which must name this layout's files.
func readInstallRecord(l installLayout) (installRecord, bool, error) {
	data, err := os.ReadFile(l.record)
	if errors.Is(err, fs.ErrNotExist) {
		return installRecord{}, false, nil
	}
	if err != nil {
		return installRecord{}, false, err
	}
	var rec installRecord
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&rec); err != nil {
		return installRecord{}, false, fmt.Errorf("install record %s is corrupt (%v); remove it to run the configured binary, then install again", l.record, err)
	}
	bad := func(why string) (installRecord, bool, error) {
		return installRecord{}, false, fmt.Errorf("install record %s: %s; remove it to run the configured binary, then install again", l.record, why)
	}
	switch {
	case rec.Version != installRecordVersion:
		return bad(fmt.Sprintf("format version %d, this agent reads version %d", rec.Version, installRecordVersion))
	case rec.Binary != l.current:
		return bad(fmt.Sprintf("binary %q, want %s (was the data directory moved?)", rec.Binary, l.current))
	case checkSHA256(rec.SHA256) != nil:
		return bad(fmt.Sprintf("sha256 %q is not 64 lower-case hex digits", rec.SHA256))
	case rec.Previous == "" && rec.PreviousSHA256 != "":
		return bad("a previous sha256 without a previous binary")
	case rec.Previous != "" && rec.Previous != l.previous:
		return bad(fmt.Sprintf("previous binary %q, want %s (was the data directory moved?)", rec.Previous, l.previous))
	case rec.Previous != "" && checkSHA256(rec.PreviousSHA256) != nil:
		return bad(fmt.Sprintf("previous sha256 %q is not 64 lower-case hex digits", rec.PreviousSHA256))
	}
	return rec, true, nil
}

// settle makes the files agree with the committed record rec. A staged binary with rec's checksum becomes the current
// one, the current one being linked to previous first when it is rec's previous binary; a staged binary of an install
// that never committed is removed. Every step can be repeated, so a crash anywhere is finished by the next settle, and
// current names a complete binary at every moment once an install has committed.
func settle(l installLayout, rec installRecord) error {
	staged, err := fileSHA256(l.staged)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if staged != rec.SHA256 {
		if err := os.Remove(l.staged); err != nil {
			return err
		}
		return atomicfile.SyncDir(l.bin)
	}
	if rec.Previous != "" {
		current, err := fileSHA256(l.current)
		switch {
		case err == nil && current == rec.PreviousSHA256:
			if err := replaceWithLink(l.current, l.previous); err != nil {
				return err
			}
		case err != nil && !errors.Is(err, fs.ErrNotExist):
			return err
		}
	}
	if err := os.Rename(l.staged, l.current); err != nil {
		return err
	}
	return atomicfile.SyncDir(l.bin)
}

// replaceWithLink makes dst another name of src's file, replacing dst atomically.
func replaceWithLink(src, dst string) error {
	tmp := filepath.Join(filepath.Dir(dst), "."+filepath.Base(dst)+".tmp-link")
	if err := os.Remove(tmp); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	if err := os.Link(src, tmp); err != nil {
		return err
	}
	if err := os.Rename(tmp, dst); err != nil {
		os.Remove(tmp)
		return err
	}
	return nil
}

// keepConfigured copies the configured binary to previous, so that a rollback has it even when the configured file is
// replaced later. A configured binary that does not exist leaves no previous binary.
func keepConfigured(l installLayout, configured string) (previous, sum string, err error) {
	path, err := exec.LookPath(configured)
	if errors.Is(err, fs.ErrNotExist) || errors.Is(err, exec.ErrNotFound) {
		return "", "", nil
	}
	if err != nil {
		return "", "", err
	}
	f, err := os.Open(path)
	if err != nil {
		return "", "", err
	}
	defer f.Close()
	tmp, sum, err := writeBinary(l.bin, f)
	if err != nil {
		return "", "", fmt.Errorf("copy %s: %w", path, err)
	}
	if err := os.Rename(tmp, l.previous); err != nil {
		os.Remove(tmp)
		return "", "", err
	}
	return l.previous, sum, nil
}

// makeInstallDirs creates DATA_DIR/.agent/bin and returns a function that removes the directories it created, for an
// install that fails before it changes anything else.
func makeInstallDirs(l installLayout) (undo func(), err error) {
	var created []string
	for _, dir := range []string{l.dir, l.bin} {
		err := os.Mkdir(dir, 0o755)
		if errors.Is(err, fs.ErrExist) {
			continue
		}
		if err != nil {
			for _, c := range created {
				os.Remove(c)
			}
			return nil, err
		}
		created = append([]string{dir}, created...)
	}
	return func() {
		for _, dir := range created {
			os.Remove(dir)
		}
	}, nil
}

// writeBinary copies r into a new temporary file in dir, fsyncs it and makes it executable, and returns the file's
// name and the SHA-256 of what was written. On error it leaves nothing behind.
func writeBinary(dir string, r io.Reader) (name, sum string, err error) {
	f, err := os.CreateTemp(dir, ".member.tmp-*")
	if err != nil {
		return "", "", err
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	h := sha256.New()
	if _, err = io.Copy(io.MultiWriter(f, h), r); err != nil {
		return "", "", fmt.Errorf("copy to %s: %w", f.Name(), err)
	}
	if err = f.Chmod(0o755); err != nil {
		return "", "", err
	}
	if err = f.Sync(); err != nil {
		return "", "", fmt.Errorf("sync %s: %w", f.Name(), err)
	}
	if err = f.Close(); err != nil {
		return "", "", err
	}
	return f.Name(), hex.EncodeToString(h.Sum(nil)), nil
}

// removeTemps removes the temporary files an interrupted write left in dir, which need not exist.
func removeTemps(dir string) error {
	temps, err := filepath.Glob(filepath.Join(dir, ".*.tmp-*"))
	if err != nil {
		return err
	}
	for _, tmp := range temps {
		if err := os.Remove(tmp); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
	}
	return nil
}

func fileSHA256(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", fmt.Errorf("read %s: %w", path, err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// checkSHA256 accepts a SHA-256 as sha256sum prints it: 64 lower-case hex digits.
func checkSHA256(sum string) error {
	if sum == "" {
		return fmt.Errorf("%w: no sha256 given: an install needs the binary's SHA-256, 64 lower-case hex digits", ErrBadRequest)
	}
	notHex := func(c rune) bool { return !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') }
	if len(sum) != sha256.Size*2 || strings.IndexFunc(sum, notHex) >= 0 {
		return fmt.Errorf("%w: sha256 %q is not 64 lower-case hex digits", ErrBadRequest, sum)
	}
	return nil
}

// sourceAccepted names the forms of an install's source, for errors.
const sourceAccepted = "want an absolute path, s3://bucket/prefix/object or file:///dir/object"

// openSource opens the binary to install: an absolute path on the agent's host, or an object of a staging target
// (backup/stage) named by the target's URL followed by the object's name. A missing source wraps ErrNotFound, any other
// unusable one ErrBadRequest.
func openSource(ctx context.Context, source string) (io.ReadCloser, error) {
	if source == "" {
		return nil, fmt.Errorf("%w: no source given; %s", ErrBadRequest, sourceAccepted)
	}
	if !strings.Contains(source, "://") {
		if !filepath.IsAbs(source) {
			return nil, fmt.Errorf("%w: source %q is not an absolute path; %s", ErrBadRequest, source, sourceAccepted)
		}
		return openLocal(source, source)
	}
	u, err := url.Parse(source)
	if err != nil {
		return nil, fmt.Errorf("%w: source: %w; %s", ErrBadRequest, err, sourceAccepted)
	}
	if u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		return nil, fmt.Errorf("%w: source %s: user, query and fragment are not allowed; %s", ErrBadRequest, source, sourceAccepted)
	}
	dir, object := path.Split(u.Path)
	if object == "" {
		return nil, fmt.Errorf("%w: source %s names no object; %s", ErrBadRequest, source, sourceAccepted)
	}
	if u.Scheme == "file" {
		// Opening a directory stage creates the directory; a mistyped source must not, so a source whose directory is
		// missing (or no directory) gets the error of opening it as a file.
		if info, err := os.Stat(dir); err != nil || !info.IsDir() {
			return openLocal(source, u.Path)
		}
	}
	target, err := stage.Open(ctx, (&url.URL{Scheme: u.Scheme, Host: u.Host, Path: dir}).String(), s3stage.Options{})
	if err != nil {
		return nil, fmt.Errorf("%w: source %s: %w", ErrBadRequest, source, err)
	}
	rc, err := target.Get(ctx, object, 0, -1)
	if errors.Is(err, backup.ErrNotFound) {
		return nil, fmt.Errorf("source %s: %w: %w", source, err, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("%w: source %s: %w", ErrBadRequest, source, err)
	}
	return rc, nil
}

// openLocal opens the regular file at path, which source names.
func openLocal(source, path string) (io.ReadCloser, error) {
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("source %s does not exist on the agent's host: %w", source, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("%w: source %s: %w", ErrBadRequest, source, err)
	}
	info, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("%w: source %s: %w", ErrBadRequest, source, err)
	}
	if !info.Mode().IsRegular() {
		f.Close()
		return nil, fmt.Errorf("%w: source %s is not a regular file", ErrBadRequest, source)
	}
	return f, nil
}

// sourceReader marks the read errors of an install's source as the caller's, unlike write errors on the agent's disk.
type sourceReader struct{ r io.Reader }

func (s sourceReader) Read(p []byte) (int, error) {
	n, err := s.r.Read(p)
	if err != nil && err != io.EOF {
		err = fmt.Errorf("%w: read source: %w", ErrBadRequest, err)
	}
	return n, err
}
