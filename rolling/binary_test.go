package rolling

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mirrorkit/mirrorkit/backup/s3stage"
	"github.com/mirrorkit/mirrorkit/internal/miniotest"
)

// fakeMember is a script that answers `version --json` as a member binary of release 9.9.9, format level 2, does.
var fakeMember = []byte("#!/bin/sh\n[ \"$1 $2\" = 'version --json' ] || exit 2\n" +
	`echo '{"software":"9.9.9","format_level":2,"go":"go1.26","journal_format":1,"journal_record_format":2,"wire_protocol":1,"wire_min_protocol":1,"database_format":1}'` + "\n")

func TestInspect(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	path := filepath.Join(dir, "member")
	if err := os.WriteFile(path, fakeMember, 0o755); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(fakeMember)
	want := hex.EncodeToString(sum[:])
	check := func(source string) {
		t.Helper()
		got, err := Inspect(ctx, source)
		if err != nil {
			t.Fatalf("Inspect(%s): %v", source, err)
		}
		if got.SHA256 != want || got.Size != int64(len(fakeMember)) || got.Version.Software != "9.9.9" || got.Version.Level != 2 ||
			got.Describe() != "9.9.9 (format level 2)" {
			t.Fatalf("Inspect(%s) = %+v", source, got)
		}
	}
	check(path)
	check("file://" + path)

	// Not a member binary, or no file at all: refused, saying so.
	other := filepath.Join(dir, "other")
	os.WriteFile(other, []byte("#!/bin/sh\necho '{}'\n"), 0o755)
	if _, err := Inspect(ctx, other); !errors.Is(err, ErrNotMemberBinary) {
		t.Fatalf("Inspect of a script that is no member: %v", err)
	}
	if _, err := Inspect(ctx, filepath.Join(dir, "missing")); err == nil || !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("Inspect of a missing file: %v", err)
	}
	if _, err := Inspect(ctx, "bin/member"); err == nil || !strings.Contains(err.Error(), "absolute path") {
		t.Fatalf("Inspect of a relative path: %v", err)
	}
	if _, err := Inspect(ctx, "s3://"); err == nil {
		t.Fatal("Inspect of s3:// with no bucket succeeded")
	}

	if testing.Short() {
		return
	}
	// From S3: downloaded, checked and run the same way.
	s3 := miniotest.Start(t)
	s3.Bucket(t, "releases")
	t.Setenv("AWS_ENDPOINT_URL", "http://"+s3.Endpoint)
	t.Setenv("AWS_ACCESS_KEY_ID", s3.AccessKey)
	t.Setenv("AWS_SECRET_ACCESS_KEY", s3.SecretKey)
	t.Setenv("AWS_REGION", "us-east-1")
	stage, err := s3stage.New(ctx, "releases", "mirrorkit/9.9.9", s3stage.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := stage.Put(ctx, "member", bytes.NewReader(fakeMember), int64(len(fakeMember))); err != nil {
		t.Fatal(err)
	}
	check("s3://releases/mirrorkit/9.9.9/member")
	if _, err := Inspect(ctx, "s3://releases/mirrorkit/9.9.9/none"); err == nil {
		t.Fatal("Inspect of a missing S3 object succeeded")
	}
}
