// Package miniotest runs a real MinIO server on a loopback port for tests of the S3 staging target. The binary comes from
// $MIRRORKIT_MINIO, else <module root>/.tools/bin/minio (installed by `make tools`), else minio on PATH; a missing
// binary fails the test rather than skipping it. A server started by Start lives for one test; Shared starts one per test
// process. On Linux the server is started with a parent-death signal, so it cannot outlive the test binary even when the
// binary crashes. It is test support only; no production code imports it.
package miniotest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
)

const (
	accessKey = "mirrorkit"
	secretKey = "mirrorkit-secret"
	host      = "127.0.0.1"
	// startTimeout bounds the wait for the health endpoint; a cold MinIO start takes a second or two.
	startTimeout = 60 * time.Second
	pollInterval = 50 * time.Millisecond
)

// Server is a running (or stopped) MinIO server.
type Server struct {
	Endpoint  string // host:port, plain HTTP
	AccessKey string
	SecretKey string
	Dir       string // the server's data directory
	LogPath   string // the server's standard output and error

	mu     sync.Mutex
	proc   *os.Process
	exited chan struct{}
}

// Start runs a MinIO server for the calling test; cleanup kills it and waits for it.
func Start(tb testing.TB) *Server {
	tb.Helper()
	// Temporary directories first: cleanups run last-in first-out, so the server is killed before they are removed.
	s, err := start(filepath.Join(tb.TempDir(), "data"), filepath.Join(tb.TempDir(), "minio.log"))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		s.Kill()
		if tb.Failed() {
			tb.Logf("MinIO log (%s):\n%s", s.LogPath, s.Log())
		}
	})
	return s
}

var shared struct {
	once   sync.Once
	server *Server
	dir    string
	err    error
}

// Shared returns the test process's one MinIO server, starting it on first use. It registers no cleanup: the server dies
// with the test process (parent-death signal), and StopShared, called from TestMain after m.Run, also removes its data.
func Shared(tb testing.TB) *Server {
	tb.Helper()
	shared.once.Do(func() {
		shared.dir, shared.err = os.MkdirTemp("", "mirrorkit-minio-")
		if shared.err == nil {
			shared.server, shared.err = start(filepath.Join(shared.dir, "data"), filepath.Join(shared.dir, "minio.log"))
		}
	})
	if shared.err != nil {
		tb.Fatal(shared.err)
	}
	return shared.server
}

// StopShared kills the shared server, if one was started, and removes its directory.
func StopShared() {
	if shared.server != nil {
		shared.server.Kill()
	}
	if shared.dir != "" {
		os.RemoveAll(shared.dir)
	}
}

// start runs MinIO on fresh ports, retrying when another process took a port between choosing and binding it.
func start(dataDir, logPath string) (*Server, error) {
	bin, err := binary()
	if err != nil {
		return nil, err
	}
	for attempt := 0; ; attempt++ {
		s, err := startOnce(bin, dataDir, logPath)
		if err == nil || attempt == 4 || !strings.Contains(err.Error(), "already in use") {
			return s, err
		}
	}
}

func startOnce(bin, dataDir, logPath string) (*Server, error) {
	addr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	consoleAddr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	logFile, err := os.Create(logPath)
	if err != nil {
		return nil, fmt.Errorf("minio log: %w", err)
	}
	defer logFile.Close()
	cmd := exec.Command(bin, "server", "--address", addr, "--console-address", consoleAddr, dataDir)
	cmd.Env = append(os.Environ(),
		"MINIO_ROOT_USER="+accessKey,
		"MINIO_ROOT_PASSWORD="+secretKey,
		"MINIO_BROWSER=off",
		// Accept a data directory on the root disk and skip checks meant for production deployments.
		"MINIO_CI_CD=on",
	)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = sysProcAttr()
	s := &Server{Endpoint: addr, AccessKey: accessKey, SecretKey: secretKey, Dir: dataDir, LogPath: logPath}
	if err := s.run(cmd); err != nil {
		return nil, fmt.Errorf("start %s: %w", bin, err)
	}
	if err := s.waitLive(); err != nil {
		s.Kill()
		return nil, fmt.Errorf("minio at %s: %w\n%s", addr, err, s.Log())
	}
	return s, nil
}

// run starts cmd from a goroutine locked to its OS thread for the process's whole life: the parent-death signal fires
// when the thread that started the child exits, and the Go runtime may otherwise retire that thread at any time.
func (s *Server) run(cmd *exec.Cmd) error {
	started := make(chan error, 1)
	s.exited = make(chan struct{})
	go func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		if err := cmd.Start(); err != nil {
			started <- err
			return
		}
		s.proc = cmd.Process
		started <- nil
		cmd.Wait()
		close(s.exited)
	}()
	return <-started
}

// waitLive polls the liveness endpoint until it answers 200 or the process exits.
func (s *Server) waitLive() error {
	client := &http.Client{Timeout: time.Second}
	deadline := time.Now().Add(startTimeout)
	for time.Now().Before(deadline) {
		resp, err := client.Get("http://" + s.Endpoint + "/minio/health/live")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-s.exited:
			return errors.New("exited during start-up")
		case <-time.After(pollInterval):
		}
	}
	return fmt.Errorf("not live after %v", startTimeout)
}

// Kill sends SIGKILL and waits for the process to exit; it can stand for a target that vanishes mid-upload.
func (s *Server) Kill() { s.signal(syscall.SIGKILL) }

// Stop asks the server to shut down (SIGTERM) and waits for it to exit.
func (s *Server) Stop() { s.signal(syscall.SIGTERM) }

func (s *Server) signal(sig syscall.Signal) {
	s.mu.Lock()
	defer s.mu.Unlock()
	select {
	case <-s.exited:
		return
	default:
	}
	s.proc.Signal(sig)
	<-s.exited
}

// Log returns what the server has written so far.
func (s *Server) Log() string {
	data, err := os.ReadFile(s.LogPath)
	if err != nil {
		return fmt.Sprintf("(no log: %v)", err)
	}
	return string(data)
}

// Client returns a minio-go client for the server with its root credentials.
func (s *Server) Client(tb testing.TB) *minio.Client {
	tb.Helper()
	client, err := minio.New(s.Endpoint, &minio.Options{Creds: credentials.NewStaticV4(s.AccessKey, s.SecretKey, "")})
	if err != nil {
		tb.Fatalf("minio client for %s: %v", s.Endpoint, err)
	}
	return client
}

// Bucket creates a bucket.
func (s *Server) Bucket(tb testing.TB, name string) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := s.Client(tb).MakeBucket(ctx, name, minio.MakeBucketOptions{}); err != nil {
		tb.Fatalf("create bucket %s on minio at %s: %v", name, s.Endpoint, err)
	}
}

// binary finds the MinIO executable.
func binary() (string, error) {
	if p := os.Getenv("MIRRORKIT_MINIO"); p != "" {
		return p, nil
	}
	if root, err := moduleRoot(); err == nil {
		p := filepath.Join(root, ".tools", "bin", "minio")
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	if p, err := exec.LookPath("minio"); err == nil {
		return p, nil
	}
	return "", errors.New("minio not found: run make tools")
}

// moduleRoot walks up from the working directory to the directory holding go.mod.
func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("go.mod not found")
		}
		dir = parent
	}
}

// freeAddr returns a loopback host:port that was free a moment ago.
func freeAddr() (string, error) {
	ln, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		return "", fmt.Errorf("free port on %s: %w", host, err)
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}
