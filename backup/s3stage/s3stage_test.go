package s3stage

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"

	"github.com/mirrorkit/mirrorkit/backup"
	"github.com/mirrorkit/mirrorkit/backup/stagetest"
	"github.com/mirrorkit/mirrorkit/internal/miniotest"
)

func TestMain(m *testing.M) {
	code := m.Run()
	miniotest.StopShared()
	os.Exit(code)
}

var bucketCount atomic.Int64

// newBucket creates an empty bucket on srv with a name unique in the test process.
func newBucket(tb testing.TB, srv *miniotest.Server) string {
	tb.Helper()
	name := fmt.Sprintf("test-%d", bucketCount.Add(1))
	srv.Bucket(tb, name)
	return name
}

func serverOptions(srv *miniotest.Server) Options {
	// The smallest part size S3 allows, so the suite's large objects go multipart.
	return Options{Endpoint: srv.Endpoint, AccessKey: srv.AccessKey, SecretKey: srv.SecretKey, PartSize: MinPartSize, Parallel: 3}
}

func newTarget(tb testing.TB, srv *miniotest.Server, bucket, prefix string) *Target {
	tb.Helper()
	target, err := New(tb.Context(), bucket, prefix, serverOptions(srv))
	if err != nil {
		tb.Fatal(err)
	}
	return target
}

func TestConformance(t *testing.T) {
	srv := miniotest.Shared(t)
	stagetest.Run(t, func(t *testing.T) backup.Target {
		return newTarget(t, srv, newBucket(t, srv), "stage/area")
	})
}

// TestObjectNames checks where keys land in the bucket, with and without a prefix.
func TestObjectNames(t *testing.T) {
	srv := miniotest.Shared(t)
	bucket := newBucket(t, srv)
	stagetest.Put(t, newTarget(t, srv, bucket, ""), "a/b", []byte("root"))
	stagetest.Put(t, newTarget(t, srv, bucket, "/staged/here/"), "a/b", []byte("prefixed"))
	for name, size := range map[string]int64{"a/b": 4, "staged/here/a/b": 8} {
		info, err := srv.Client(t).StatObject(t.Context(), bucket, name, minio.StatObjectOptions{})
		if err != nil || info.Size != size {
			t.Fatalf("object %s: %v, size %d, want %d", name, err, info.Size, size)
		}
	}
}

// TestMultipartParts checks that objects above the part size are uploaded in parts of that size: a multipart ETag ends
// in the number of parts.
func TestMultipartParts(t *testing.T) {
	srv := miniotest.Shared(t)
	bucket := newBucket(t, srv)
	target := newTarget(t, srv, bucket, "")
	tests := []struct {
		size      int
		announced int64
		wantETag  string
	}{
		{MinPartSize, MinPartSize, ""},
		{stagetest.MultipartSize, stagetest.MultipartSize, "-3"},
		{stagetest.MultipartSize, -1, "-3"},
	}
	for i, tt := range tests {
		key := fmt.Sprintf("object%d", i)
		if err := target.Put(t.Context(), key, bytes.NewReader(stagetest.Data(tt.size, 1)), tt.announced); err != nil {
			t.Fatal(err)
		}
		info, err := srv.Client(t).StatObject(t.Context(), bucket, key, minio.StatObjectOptions{})
		if err != nil {
			t.Fatal(err)
		}
		parts := strings.LastIndex(info.ETag, "-")
		if (tt.wantETag == "" && parts >= 0) || (tt.wantETag != "" && !strings.HasSuffix(info.ETag, tt.wantETag)) {
			t.Errorf("%d bytes announced as %d: ETag %s, want parts %q", tt.size, tt.announced, info.ETag, tt.wantETag)
		}
	}
}

// TestPrefixesAreSeparate checks that a target sees only its own prefix, even beside a prefix that extends it.
func TestPrefixesAreSeparate(t *testing.T) {
	srv := miniotest.Shared(t)
	bucket := newBucket(t, srv)
	p := newTarget(t, srv, bucket, "p")
	pq := newTarget(t, srv, bucket, "/pq/")
	stagetest.Put(t, p, "x", []byte("in p"))
	stagetest.Put(t, pq, "x", []byte("in pq!"))
	for _, tt := range []struct {
		target *Target
		want   string
	}{{p, "in p"}, {pq, "in pq!"}} {
		objects, err := tt.target.List(t.Context(), "")
		if err != nil {
			t.Fatal(err)
		}
		if len(objects) != 1 || objects[0].Key != "x" || objects[0].Size != int64(len(tt.want)) {
			t.Fatalf("list under %s: %v", tt.target.root, objects)
		}
		if got := stagetest.GetAll(t, tt.target, "x", 0, -1); string(got) != tt.want {
			t.Fatalf("get x under %s: %q, want %q", tt.target.root, got, tt.want)
		}
	}
	if err := p.Delete(t.Context(), "x"); err != nil {
		t.Fatal(err)
	}
	if got := stagetest.GetAll(t, pq, "x", 0, -1); string(got) != "in pq!" {
		t.Fatalf("delete under p removed pq's object: %q", got)
	}
}

func TestBucketCreation(t *testing.T) {
	srv := miniotest.Shared(t)
	o := serverOptions(srv)
	_, err := New(t.Context(), "not-there", "", o)
	if !errors.Is(err, ErrBucketNotFound) || !strings.Contains(err.Error(), "not-there") {
		t.Fatalf("New on a missing bucket: %v, want ErrBucketNotFound naming it", err)
	}
	o.CreateBucket = true
	target, err := New(t.Context(), "made-by-new", "", o)
	if err != nil {
		t.Fatalf("New with CreateBucket: %v", err)
	}
	stagetest.Put(t, target, "k", []byte("v"))
	if _, err := New(t.Context(), "made-by-new", "", o); err != nil {
		t.Fatalf("New with CreateBucket on an existing bucket: %v", err)
	}
}

func TestWrongCredentials(t *testing.T) {
	srv := miniotest.Shared(t)
	o := serverOptions(srv)
	o.SecretKey = "wrong-secret"
	_, err := New(t.Context(), newBucket(t, srv), "", o)
	if err == nil || !strings.Contains(err.Error(), "secret key") {
		t.Fatalf("New with a wrong secret key: %v, want an error about the keys", err)
	}
}

func TestUnreachableEndpointFailsFast(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	start := time.Now()
	_, err = New(t.Context(), "bucket", "", Options{Endpoint: "http://" + addr, AccessKey: "k", SecretKey: "s", Region: "us-east-1"})
	if !errors.Is(err, ErrUnreachable) || !strings.Contains(err.Error(), addr) {
		t.Fatalf("New on a closed port: %v, want ErrUnreachable naming %s", err, addr)
	}
	if elapsed := time.Since(start); elapsed > 10*time.Second {
		t.Fatalf("New on a closed port took %v", elapsed)
	}
}

// TestServerKilledMidUpload kills MinIO while a large object is being uploaded: Put must fail promptly, naming the key.
func TestServerKilledMidUpload(t *testing.T) {
	srv := miniotest.Start(t)
	bucket := "killed"
	srv.Bucket(t, bucket)
	target := newTarget(t, srv, bucket, "")
	const size = 40 << 20
	r := &killingReader{r: bytes.NewReader(stagetest.Data(size, 9)), left: 12 << 20, kill: srv.Kill}
	start := time.Now()
	err := target.Put(t.Context(), "big/object", r, size)
	if err == nil || !strings.Contains(err.Error(), "s3://killed/big/object") {
		t.Fatalf("put while the server dies: %v, want an error naming the object", err)
	}
	if !r.killed {
		t.Fatal("the server was never killed: the reader was not read far enough")
	}
	if elapsed := time.Since(start); elapsed > 20*time.Second {
		t.Fatalf("put against a dead server took %v to fail", elapsed)
	}
}

// killingReader kills the server once left bytes were read, then keeps giving data.
type killingReader struct {
	r      io.Reader
	left   int
	kill   func()
	once   sync.Once
	killed bool
}

func (k *killingReader) Read(p []byte) (int, error) {
	if k.left <= 0 {
		k.once.Do(func() { k.kill(); k.killed = true })
	}
	n, err := k.r.Read(p)
	k.left -= n
	return n, err
}

func TestPartSizeFor(t *testing.T) {
	target := &Target{partSize: 8 << 20}
	tests := []struct {
		size, want int64
	}{
		{-1, 8 << 20},
		{0, 8 << 20},
		{8 << 20 * maxParts, 8 << 20},
		{8<<20*maxParts + 1, 9 << 20},
		{100 << 30, 11 << 20},
	}
	for _, tt := range tests {
		got := target.partSizeFor(tt.size)
		if got != tt.want {
			t.Errorf("partSizeFor(%d) = %d, want %d", tt.size, got, tt.want)
		}
		if tt.size > 0 && got*maxParts < tt.size {
			t.Errorf("partSizeFor(%d) = %d: %d parts cannot hold the object", tt.size, got, maxParts)
		}
	}
}

func TestExactReader(t *testing.T) {
	tests := []struct {
		data    string
		size    int64
		wantErr string
	}{
		{"hello", 5, ""},
		{"", 0, ""},
		{"hell", 5, "ended 1 bytes before"},
		{"hello!", 5, "more than"},
	}
	for _, tt := range tests {
		got, err := io.ReadAll(&exactReader{r: strings.NewReader(tt.data), left: tt.size})
		switch {
		case tt.wantErr == "" && (err != nil || string(got) != tt.data):
			t.Errorf("%q as %d: %q, %v", tt.data, tt.size, got, err)
		case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
			t.Errorf("%q as %d: %v, want an error saying %q", tt.data, tt.size, err, tt.wantErr)
		}
	}
}

// TestCancelledGet checks that a Get made under a cancelled context fails instead of returning a body.
func TestCancelledGet(t *testing.T) {
	srv := miniotest.Shared(t)
	target := newTarget(t, srv, newBucket(t, srv), "")
	stagetest.Put(t, target, "k", []byte("value"))
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := target.Get(ctx, "k", 0, -1); !errors.Is(err, context.Canceled) {
		t.Fatalf("get with a cancelled context: %v, want context.Canceled", err)
	}
}

// TestDeleteNamesFailedObjects removes the bucket under a target: every object of a batch delete is named in the error.
func TestDeleteNamesFailedObjects(t *testing.T) {
	srv := miniotest.Shared(t)
	bucket := newBucket(t, srv)
	target := newTarget(t, srv, bucket, "pre")
	if err := srv.Client(t).RemoveBucket(t.Context(), bucket); err != nil {
		t.Fatal(err)
	}
	err := target.Delete(t.Context(), "one", "dir/two")
	if !errors.Is(err, ErrBucketNotFound) {
		t.Fatalf("delete in a removed bucket: %v, want ErrBucketNotFound", err)
	}
	for _, name := range []string{"s3://" + bucket + "/pre/one", "s3://" + bucket + "/pre/dir/two"} {
		if !strings.Contains(err.Error(), name) {
			t.Errorf("error %q does not name %s", err, name)
		}
	}
}
