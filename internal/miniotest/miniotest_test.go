package miniotest

import (
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/minio/minio-go/v7"
)

func TestMain(m *testing.M) {
	code := m.Run()
	StopShared()
	os.Exit(code)
}

func TestStartBucketKill(t *testing.T) {
	s := Start(t)
	s.Bucket(t, "first")
	buckets, err := s.Client(t).ListBuckets(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if !slices.ContainsFunc(buckets, func(b minio.BucketInfo) bool { return b.Name == "first" }) {
		t.Fatalf("buckets %v, want first", buckets)
	}
	if _, err := os.Stat(filepath.Join(s.Dir, "first")); err != nil {
		t.Fatalf("bucket not in the data directory: %v", err)
	}
	s.Kill()
	s.Kill()
	if conn, err := net.Dial("tcp", s.Endpoint); err == nil {
		conn.Close()
		t.Fatalf("%s still accepts connections after Kill", s.Endpoint)
	}
}

func TestStop(t *testing.T) {
	s := Start(t)
	s.Stop()
	if conn, err := net.Dial("tcp", s.Endpoint); err == nil {
		conn.Close()
		t.Fatalf("%s still accepts connections after Stop", s.Endpoint)
	}
}

func TestSharedIsStartedOnce(t *testing.T) {
	a, b := Shared(t), Shared(t)
	if a != b {
		t.Fatalf("two shared servers: %s and %s", a.Endpoint, b.Endpoint)
	}
	a.Bucket(t, "shared")
}

func TestMissingBinary(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "no-minio")
	t.Setenv("MIRRORKIT_MINIO", missing)
	_, err := start(filepath.Join(t.TempDir(), "data"), filepath.Join(t.TempDir(), "log"))
	if err == nil || !strings.Contains(err.Error(), missing) {
		t.Fatalf("start with a missing binary: %v, want an error naming it", err)
	}
}
