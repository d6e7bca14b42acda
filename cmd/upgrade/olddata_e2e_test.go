package main_test

import (
	"archive/tar"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mirrorkit/mirrorkit/engine/mirror"
	"github.com/mirrorkit/mirrorkit/internal/memberproc"
)

// level1DataDir is a data directory written by the format level 1 build (0.9.0): a member that was the primary of mirror
// OLD, with a mirrored database APP and a local database LOC, shut down cleanly. MIRRORKIT_WRITE_TESTDATA=1 writes it
// again.
const level1DataDir = "testdata/level1-datadir.tar.gz"

// level1Keys are what the old build wrote: ^K(i) = "v<i>" in APP and in LOC.
const level1Keys = 200

func TestDataDirectoryWrittenByTheOldBuild(t *testing.T) {
	if os.Getenv("MIRRORKIT_WRITE_TESTDATA") != "" {
		writeLevel1DataDir(t)
	}
	dir := t.TempDir()
	untar(t, level1DataDir, dir)

	// The new build opens it, serves its data, and keeps the old journal format until a finalize.
	m := memberproc.Start(t, memberproc.Config{Name: "OLDP", DataDir: dir})
	c := m.Client(t, 1)
	ctx := context.Background()
	for _, db := range []string{"APP", "LOC"} {
		for i := range level1Keys {
			v, ok, err := c.Get(ctx, db, fmt.Sprintf("^K(%d)", i))
			if err != nil || !ok || string(v) != fmt.Sprintf("v%d", i) {
				t.Fatalf("%s ^K(%d) written by 0.9.0: got %q %v %v", db, i, v, ok, err)
			}
		}
	}
	st := mustMirrorStatus(t, m)
	if st.Role != "primary" || st.RecordFormat != 1 || st.FinalizedLevel != 1 {
		t.Fatalf("mirror OLD under the new build: role %s, record format %d, finalized level %d", st.Role, st.RecordFormat, st.FinalizedLevel)
	}
	if err := c.Set(ctx, "APP", `^K("new")`, []byte("written by the new build")); err != nil {
		t.Fatal(err)
	}
	m.Stop()

	// Until a finalize, what the new build wrote stays readable by the old one (the rollback path).
	old := memberproc.Start(t, memberproc.Config{Name: "OLDP", DataDir: dir, Binary: memberproc.BuildVersion(t, "member", oldSoftware, oldLevel)})
	v, ok, err := old.Client(t, 1).Get(ctx, "APP", `^K("new")`)
	if err != nil || !ok || string(v) != "written by the new build" {
		t.Fatalf("the old build reading what the new one wrote: %q %v %v", v, ok, err)
	}
	old.Stop()
	r := memberproc.CLI(t, "journal", "check", dir)
	if r.ExitCode != 0 {
		t.Fatalf("journal check of the data directory: %s", r.Stderr)
	}
}

func mustMirrorStatus(t *testing.T, m *memberproc.Member) mirror.Status {
	t.Helper()
	var sts []mirror.Status
	if err := getJSON(m.AdminAddr, "/api/v1/mirror/local", &sts); err != nil || len(sts) != 1 {
		t.Fatalf("mirror status: %v (%d mirrors)", err, len(sts))
	}
	return sts[0]
}

// writeLevel1DataDir makes the data directory with the old build and stores it in testdata.
func getJSON(addr, path string, out any) error {
	resp, err := http.Get("http://" + addr + path)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", path, resp.Status)
	}
	return json.NewDecoder(resp.Body).Decode(out)
}

func writeLevel1DataDir(t *testing.T) {
	dir := t.TempDir()
	old := memberproc.BuildVersion(t, "member", oldSoftware, oldLevel)
	m := memberproc.Start(t, memberproc.Config{Name: "OLDP", DataDir: dir, Binary: old})
	cli := func(args ...string) {
		r := memberproc.CLI(t, append(args, "--member", m.Addr)...)
		if r.ExitCode != 0 {
			t.Fatalf("member %s: %s", strings.Join(args, " "), r.Stderr)
		}
	}
	cli("mirror", "create", "OLD", "--qos", "2s")
	cli("db", "create", "APP", "--mirror", "OLD")
	cli("db", "create", "LOC")
	c := m.Client(t, 1)
	for _, db := range []string{"APP", "LOC"} {
		for i := range level1Keys {
			if err := c.Set(context.Background(), db, fmt.Sprintf("^K(%d)", i), fmt.Appendf(nil, "v%d", i)); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := m.Terminate(); err != nil {
		t.Fatalf("stop the old member: %v", err)
	}
	if err := os.MkdirAll(filepath.Dir(level1DataDir), 0o755); err != nil {
		t.Fatal(err)
	}
	f, err := os.Create(level1DataDir)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zw := gzip.NewWriter(f)
	tw := tar.NewWriter(zw)
	// Fixed times and owners keep the archive the same when it is written again from the same data.
	err = filepath.Walk(dir, func(path string, info os.FileInfo, err error) error {
		if err != nil || path == dir {
			return err
		}
		rel, _ := filepath.Rel(dir, path)
		if strings.HasSuffix(rel, ".log") || strings.Contains(rel, "LOCK") {
			return nil
		}
		hdr, err := tar.FileInfoHeader(info, "")
		if err != nil {
			return err
		}
		hdr.Name, hdr.ModTime, hdr.Uid, hdr.Gid, hdr.Uname, hdr.Gname = rel, time.Unix(0, 0), 0, 0, "", ""
		if err := tw.WriteHeader(hdr); err != nil || info.IsDir() {
			return err
		}
		src, err := os.Open(path)
		if err != nil {
			return err
		}
		defer src.Close()
		_, err = io.Copy(tw, src)
		return err
	})
	if err == nil {
		err = errors.Join(tw.Close(), zw.Close())
	}
	if err != nil {
		t.Fatal(err)
	}
}

func untar(t *testing.T, archive, dir string) {
	t.Helper()
	f, err := os.Open(archive)
	if err != nil {
		t.Fatalf("%v (write it with MIRRORKIT_WRITE_TESTDATA=1)", err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(zr)
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return
		}
		if err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(dir, filepath.Clean("/"+hdr.Name))
		if hdr.Typeflag == tar.TypeDir {
			if err := os.MkdirAll(path, 0o755); err != nil {
				t.Fatal(err)
			}
			continue
		}
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		out, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, os.FileMode(hdr.Mode)&0o777)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := io.Copy(out, tr); err != nil {
			t.Fatal(err)
		}
		if err := out.Close(); err != nil {
			t.Fatal(err)
		}
	}
}
