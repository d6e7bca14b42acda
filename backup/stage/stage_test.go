package stage

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/minio/minio-go/v7"

	"github.com/mirrorkit/mirrorkit/backup/dirstage"
	"github.com/mirrorkit/mirrorkit/backup/s3stage"
	"github.com/mirrorkit/mirrorkit/backup/stagetest"
	"github.com/mirrorkit/mirrorkit/internal/miniotest"
)

func TestMain(m *testing.M) {
	code := m.Run()
	miniotest.StopShared()
	os.Exit(code)
}

func TestParse(t *testing.T) {
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		url     string
		want    location
		wantErr string
	}{
		{url: "s3://bucket", want: location{bucket: "bucket"}},
		{url: "s3://bucket/", want: location{bucket: "bucket"}},
		{url: "s3://bucket/a/b", want: location{bucket: "bucket", prefix: "a/b"}},
		{url: "s3://bucket/a/b/", want: location{bucket: "bucket", prefix: "a/b"}},
		{url: "file:///var/backups", want: location{dir: "/var/backups"}},
		{url: "file://localhost/var/backups/", want: location{dir: "/var/backups"}},
		{url: "/var/backups", want: location{dir: "/var/backups"}},
		{url: "/var/../var/backups/", want: location{dir: "/var/backups"}},
		{url: "backups", want: location{dir: filepath.Join(wd, "backups")}},
		{url: "./a/b", want: location{dir: filepath.Join(wd, "a", "b")}},
		{url: "", wantErr: "empty"},
		{url: "s3://", wantErr: "no bucket"},
		{url: "s3:///prefix", wantErr: "no bucket"},
		{url: "s3://bucket/a//b", wantErr: "empty path segment"},
		{url: "s3://bucket/a/../b", wantErr: `".." segment`},
		{url: "s3://bucket/p?versioning=1", wantErr: "query"},
		{url: "s3://user:secret@bucket/p", wantErr: "user"},
		{url: "file://host/var/backups", wantErr: "names no host"},
		{url: "file://relative/path", wantErr: "names no host"},
		{url: "file:", wantErr: "looks like a URL"},
		{url: "s3:bucket/prefix", wantErr: "looks like a URL"},
		{url: "./s3:bucket", want: location{dir: filepath.Join(wd, "s3:bucket")}},
		{url: "dir/with:colon", want: location{dir: filepath.Join(wd, "dir", "with:colon")}},
		{url: "gs://bucket/prefix", wantErr: `unknown scheme "gs"`},
		{url: "https://s3.amazonaws.com/bucket", wantErr: `unknown scheme "https"`},
		{url: "s3://bucket/%zz", wantErr: "invalid URL escape"},
	}
	for _, tt := range tests {
		got, err := parse(tt.url)
		if tt.wantErr != "" {
			if !errors.Is(err, ErrBadURL) || !strings.Contains(err.Error(), tt.wantErr) || !strings.Contains(err.Error(), "s3://bucket/prefix, file:///") {
				t.Errorf("parse(%q) = %+v, %v; want ErrBadURL saying %q and listing the accepted forms", tt.url, got, err, tt.wantErr)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("parse(%q) = %+v, %v; want %+v", tt.url, got, err, tt.want)
		}
	}
}

func TestDescribe(t *testing.T) {
	t.Setenv("AWS_ENDPOINT_URL", "http://minio.example:9000")
	tests := []struct {
		url, want string
	}{
		{"/var/backups", "directory /var/backups"},
		{"file:///srv/stage", "directory /srv/stage"},
		{"s3://b/p/q", "S3 bucket b prefix p/q at endpoint http://minio.example:9000"},
		{"s3://b", "S3 bucket b with no prefix at endpoint http://minio.example:9000"},
		{"ftp://x", `invalid staging URL "ftp://x"`},
	}
	for _, tt := range tests {
		if got := Describe(tt.url); !strings.HasPrefix(got, tt.want) {
			t.Errorf("Describe(%q) = %q, want %q", tt.url, got, tt.want)
		}
	}
	t.Setenv("AWS_ENDPOINT_URL", "")
	t.Setenv("MINIO_ENDPOINT", "")
	if got, want := Describe("s3://b"), "S3 bucket b with no prefix at endpoint https://s3.amazonaws.com"; got != want {
		t.Errorf("Describe without an endpoint in the environment = %q, want %q", got, want)
	}
}

func TestOpenDirectory(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "stage")
	for _, url := range []string{dir, "file://" + dir} {
		target, err := Open(t.Context(), url, s3stage.Options{})
		if err != nil {
			t.Fatalf("open %s: %v", url, err)
		}
		if _, ok := target.(*dirstage.Target); !ok {
			t.Fatalf("open %s: a %T, want a directory target", url, target)
		}
		stagetest.Put(t, target, "k", []byte(url))
		if got, err := os.ReadFile(filepath.Join(dir, "k")); err != nil || string(got) != url {
			t.Fatalf("file for key k: %q, %v", got, err)
		}
	}
}

func TestOpenS3(t *testing.T) {
	srv := miniotest.Shared(t)
	srv.Bucket(t, "staging")
	o := s3stage.Options{Endpoint: "http://" + srv.Endpoint, AccessKey: srv.AccessKey, SecretKey: srv.SecretKey}
	target, err := Open(t.Context(), "s3://staging/backups/nightly", o)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := target.(*s3stage.Target); !ok {
		t.Fatalf("a %T, want an S3 target", target)
	}
	stagetest.Put(t, target, "k", []byte("value"))
	info, err := srv.Client(t).StatObject(t.Context(), "staging", "backups/nightly/k", minio.StatObjectOptions{})
	if err != nil || info.Size != 5 {
		t.Fatalf("object backups/nightly/k: %v, size %d", err, info.Size)
	}
	if _, err := Open(t.Context(), "s3://missing-bucket/x", o); !errors.Is(err, s3stage.ErrBucketNotFound) {
		t.Fatalf("open of a missing bucket: %v, want ErrBucketNotFound", err)
	}
	if _, err := Open(t.Context(), "gs://staging/x", o); !errors.Is(err, ErrBadURL) {
		t.Fatalf("open of a gs:// URL: %v, want ErrBadURL", err)
	}
}

// FuzzParse checks that parse never panics and that whatever it accepts is a clean absolute directory or a bucket with
// a valid prefix.
func FuzzParse(f *testing.F) {
	for _, seed := range []string{"s3://b/p", "file:///x", "/x", "x", "s3:b", "file://h/x", "s3://b/a//c", "gs://b", "s3://b/%2e%2e"} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, url string) {
		loc, err := parse(url)
		if err != nil {
			if !errors.Is(err, ErrBadURL) {
				t.Fatalf("parse(%q): %v, not ErrBadURL", url, err)
			}
			return
		}
		switch {
		case loc.dir != "":
			if loc.bucket != "" || !filepath.IsAbs(loc.dir) || filepath.Clean(loc.dir) != loc.dir {
				t.Fatalf("parse(%q) = %+v", url, loc)
			}
		case loc.bucket == "":
			t.Fatalf("parse(%q) = %+v: neither a directory nor a bucket", url, loc)
		case loc.prefix != "":
			if err := dirstage.CheckKey(loc.prefix); err != nil {
				t.Fatalf("parse(%q) = %+v: prefix %v", url, loc, err)
			}
		}
	})
}
