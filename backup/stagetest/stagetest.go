// Package stagetest is the one conformance suite for backup.Target implementations: every staging backend runs Run
// against a fresh target, so the directory and the S3 targets behave the same to the backup and restore code. It is test
// support only; no production code imports it.
package stagetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/mirrorkit/mirrorkit/backup"
)

// MultipartSize is the size of the suite's large objects: above a 5 MiB part size, so an S3 target configured with that
// part size uploads them in several parts.
const MultipartSize = 12<<20 + 12345

// Run runs the conformance suite; newTarget returns an empty target for one sub-test.
func Run(t *testing.T, newTarget func(t *testing.T) backup.Target) {
	t.Run("RoundTrip", func(t *testing.T) { testRoundTrip(t, newTarget(t)) })
	t.Run("RangedGet", func(t *testing.T) { testRangedGet(t, newTarget(t)) })
	t.Run("Overwrite", func(t *testing.T) { testOverwrite(t, newTarget(t)) })
	t.Run("Missing", func(t *testing.T) { testMissing(t, newTarget(t)) })
	t.Run("List", func(t *testing.T) { testList(t, newTarget(t)) })
	t.Run("Delete", func(t *testing.T) { testDelete(t, newTarget(t)) })
	t.Run("FailedPut", func(t *testing.T) { testFailedPut(t, newTarget(t)) })
	t.Run("SizeMismatch", func(t *testing.T) { testSizeMismatch(t, newTarget(t)) })
	t.Run("CancelledContext", func(t *testing.T) { testCancelled(t, newTarget(t)) })
	t.Run("ConcurrentPuts", func(t *testing.T) { testConcurrentPuts(t, newTarget(t)) })
	t.Run("InvalidKeys", func(t *testing.T) { testInvalidKeys(t, newTarget(t)) })
}

func testRoundTrip(t *testing.T, target backup.Target) {
	for _, size := range []int{0, 1, 1000, MultipartSize} {
		for _, known := range []bool{true, false} {
			name := fmt.Sprintf("size%d-known%v", size, known)
			t.Run(name, func(t *testing.T) {
				data := Data(size, uint64(size))
				key := "round/" + name
				announced := int64(size)
				if !known {
					announced = -1
				}
				// A plain reader, so no backend can take a shortcut through io.ReaderAt or io.Seeker.
				if err := target.Put(t.Context(), key, plainReader{bytes.NewReader(data)}, announced); err != nil {
					t.Fatalf("put %s: %v", key, err)
				}
				if got := GetAll(t, target, key, 0, -1); !bytes.Equal(got, data) {
					t.Fatalf("get %s: %s", key, diff(got, data))
				}
				wantListing(t, target, key, []backup.Object{{Key: key, Size: int64(size)}})
			})
		}
	}
}

func testRangedGet(t *testing.T, target backup.Target) {
	data := Data(1000, 1)
	Put(t, target, "ranged", data)
	tests := []struct {
		name           string
		offset, length int64
		want           []byte
	}{
		{"whole", 0, -1, data},
		{"middle", 100, 50, data[100:150]},
		{"first byte", 0, 1, data[:1]},
		{"last byte", 999, 1, data[999:]},
		{"to the end", 900, -1, data[900:]},
		{"length beyond the end", 990, 100, data[990:]},
		{"zero length", 10, 0, nil},
		{"offset at the end", 1000, 10, nil},
		{"offset at the end to the end", 1000, -1, nil},
		{"offset past the end", 5000, -1, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := GetAll(t, target, "ranged", tt.offset, tt.length)
			if !bytes.Equal(got, tt.want) {
				t.Fatalf("get(%d, %d): %s", tt.offset, tt.length, diff(got, tt.want))
			}
		})
	}
	t.Run("large object section", func(t *testing.T) {
		big := Data(MultipartSize, 2)
		Put(t, target, "big", big)
		offset := int64(5<<20 - 7)
		if got := GetAll(t, target, "big", offset, 3<<20); !bytes.Equal(got, big[offset:offset+3<<20]) {
			t.Fatalf("get across a part boundary: %s", diff(got, big[offset:offset+3<<20]))
		}
	})
	t.Run("empty object", func(t *testing.T) {
		Put(t, target, "empty", nil)
		for _, r := range [][2]int64{{0, -1}, {0, 10}, {3, -1}} {
			if got := GetAll(t, target, "empty", r[0], r[1]); len(got) != 0 {
				t.Fatalf("get(%d, %d) of an empty object gave %d bytes", r[0], r[1], len(got))
			}
		}
	})
	t.Run("negative offset", func(t *testing.T) {
		rc, err := target.Get(t.Context(), "ranged", -1, 10)
		if err == nil {
			rc.Close()
			t.Fatal("get with a negative offset: no error")
		}
	})
}

func testOverwrite(t *testing.T, target backup.Target) {
	Put(t, target, "k", Data(3000, 1))
	second := Data(10, 2)
	Put(t, target, "k", second)
	if got := GetAll(t, target, "k", 0, -1); !bytes.Equal(got, second) {
		t.Fatalf("after overwrite: %s", diff(got, second))
	}
	wantListing(t, target, "", []backup.Object{{Key: "k", Size: 10}})
}

func testMissing(t *testing.T, target backup.Target) {
	Put(t, target, "present/object", []byte("x"))
	for _, key := range []string{"missing", "present/missing", "present", "present/object/below"} {
		for _, r := range [][2]int64{{0, -1}, {5, 10}, {0, 0}} {
			rc, err := target.Get(t.Context(), key, r[0], r[1])
			if err == nil {
				rc.Close()
				t.Fatalf("get %s (%d, %d): no error", key, r[0], r[1])
			}
			if !errors.Is(err, backup.ErrNotFound) {
				t.Fatalf("get %s: %v, want ErrNotFound", key, err)
			}
			if !strings.Contains(err.Error(), key) {
				t.Fatalf("get %s: error %q does not name the key", key, err)
			}
		}
	}
}

func testList(t *testing.T, target backup.Target) {
	start := time.Now().Add(-time.Minute)
	keys := []string{"b", "a/bd", "a/b/d/e", "ab", "a/b.txt", "a/bc/x", "a/b/c"}
	for i, key := range keys {
		Put(t, target, key, Data(10*(i+1), uint64(i)))
	}
	size := func(key string) int64 { return int64(10 * (slices.Index(keys, key) + 1)) }
	tests := []struct {
		prefix string
		want   []string
	}{
		{"", []string{"a/b.txt", "a/b/c", "a/b/d/e", "a/bc/x", "a/bd", "ab", "b"}},
		{"a", []string{"a/b.txt", "a/b/c", "a/b/d/e", "a/bc/x", "a/bd", "ab"}},
		{"a/", []string{"a/b.txt", "a/b/c", "a/b/d/e", "a/bc/x", "a/bd"}},
		{"a/b", []string{"a/b.txt", "a/b/c", "a/b/d/e", "a/bc/x", "a/bd"}},
		{"a/b/", []string{"a/b/c", "a/b/d/e"}},
		{"a/bc", []string{"a/bc/x"}},
		{"a/b/d/e", []string{"a/b/d/e"}},
		{"a/b/d/e/", nil},
		{"b", []string{"b"}},
		{"c", nil},
		{"nothing/here/", nil},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("prefix %q", tt.prefix), func(t *testing.T) {
			got, err := target.List(t.Context(), tt.prefix)
			if err != nil {
				t.Fatalf("list %q: %v", tt.prefix, err)
			}
			if gotKeys := objectKeys(got); !slices.Equal(gotKeys, tt.want) {
				t.Fatalf("list %q = %q, want %q", tt.prefix, gotKeys, tt.want)
			}
			for _, o := range got {
				if o.Size != size(o.Key) {
					t.Errorf("list %q: %s has size %d, want %d", tt.prefix, o.Key, o.Size, size(o.Key))
				}
				if o.Modified.Before(start) || o.Modified.After(time.Now().Add(time.Minute)) {
					t.Errorf("list %q: %s modified at %v, not around now", tt.prefix, o.Key, o.Modified)
				}
			}
		})
	}
}

func testDelete(t *testing.T, target backup.Target) {
	for _, key := range []string{"d/1", "d/2", "d/sub/3", "keep/4", "d/sub/deeper/5"} {
		Put(t, target, key, []byte(key))
	}
	if err := target.Delete(t.Context(), "d/1", "d/sub/3", "d/missing", "never/was", "d/sub/deeper/5"); err != nil {
		t.Fatalf("delete: %v", err)
	}
	wantListing(t, target, "", []backup.Object{{Key: "d/2", Size: 3}, {Key: "keep/4", Size: 6}})
	for _, key := range []string{"d/1", "d/sub/3", "d/sub/deeper/5"} {
		if _, err := target.Get(t.Context(), key, 0, -1); !errors.Is(err, backup.ErrNotFound) {
			t.Fatalf("get %s after delete: %v, want ErrNotFound", key, err)
		}
	}
	if err := target.Delete(t.Context()); err != nil {
		t.Fatalf("delete of nothing: %v", err)
	}
	if err := target.Delete(t.Context(), "d/2", "keep/4"); err != nil {
		t.Fatalf("delete: %v", err)
	}
	wantListing(t, target, "", nil)
	// A key can be written again where its parents were removed.
	Put(t, target, "d/sub/3", []byte("again"))
	wantListing(t, target, "", []backup.Object{{Key: "d/sub/3", Size: 5}})
}

// errReader is the error of a reader that fails half-way.
var errReader = errors.New("source failed half-way")

func testFailedPut(t *testing.T, target backup.Target) {
	old := []byte("the previous version")
	tests := []struct {
		name      string
		size      int
		failAfter int
		known     bool
	}{
		{"small", 2 << 20, 1 << 20, true},
		{"small unknown size", 2 << 20, 1 << 20, false},
		{"multipart", MultipartSize, 7 << 20, true},
		{"multipart unknown size", MultipartSize, 7 << 20, false},
		{"multipart failing at the last byte", MultipartSize, MultipartSize - 1, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, replace := range []bool{false, true} {
				key := fmt.Sprintf("failed/%s/%v", strings.ReplaceAll(tt.name, " ", "-"), replace)
				if replace {
					Put(t, target, key, old)
				}
				r := &failingReader{r: bytes.NewReader(Data(tt.size, 3)), left: tt.failAfter}
				announced := int64(tt.size)
				if !tt.known {
					announced = -1
				}
				err := target.Put(t.Context(), key, r, announced)
				if !errors.Is(err, errReader) {
					t.Fatalf("put %s with a failing reader: %v, want the reader's error", key, err)
				}
				if replace {
					if got := GetAll(t, target, key, 0, -1); !bytes.Equal(got, old) {
						t.Fatalf("a failed put changed %s: %s", key, diff(got, old))
					}
					wantListing(t, target, key, []backup.Object{{Key: key, Size: int64(len(old))}})
				} else {
					wantMissing(t, target, key)
				}
			}
		})
	}
}

func testSizeMismatch(t *testing.T, target backup.Target) {
	tests := []struct {
		name            string
		actual          int
		announced       int64
		alreadyExisting bool
	}{
		{"shorter than announced", 50, 100, false},
		{"longer than announced", 100, 50, false},
		{"empty but announced", 0, 10, false},
		{"multipart shorter than announced", MultipartSize - 1000, MultipartSize, false},
		{"multipart longer than announced", MultipartSize + 1000, MultipartSize, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			key := "mismatch/" + strings.ReplaceAll(tt.name, " ", "-")
			old := []byte("old")
			if tt.alreadyExisting {
				Put(t, target, key, old)
			}
			err := target.Put(t.Context(), key, plainReader{bytes.NewReader(Data(tt.actual, 4))}, tt.announced)
			if err == nil {
				t.Fatalf("put of %d bytes announced as %d: no error", tt.actual, tt.announced)
			}
			if !strings.Contains(err.Error(), key) {
				t.Fatalf("put %s: error %q does not name the key", key, err)
			}
			if tt.alreadyExisting {
				if got := GetAll(t, target, key, 0, -1); !bytes.Equal(got, old) {
					t.Fatalf("a failed put changed %s: %s", key, diff(got, old))
				}
				return
			}
			wantMissing(t, target, key)
		})
	}
}

func testCancelled(t *testing.T, target backup.Target) {
	t.Run("before", func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		cancel()
		err := target.Put(ctx, "cancelled/before", bytes.NewReader([]byte("data")), 4)
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("put with a cancelled context: %v, want context.Canceled", err)
		}
		wantMissing(t, target, "cancelled/before")
	})
	t.Run("during", func(t *testing.T) {
		for _, announced := range []int64{MultipartSize, -1} {
			key := fmt.Sprintf("cancelled/during/%d", announced)
			ctx, cancel := context.WithCancel(t.Context())
			r := &cancellingReader{r: bytes.NewReader(Data(MultipartSize, 5)), left: 6 << 20, cancel: cancel}
			err := target.Put(ctx, key, r, announced)
			cancel()
			if err == nil {
				t.Fatalf("put %s cancelled half-way: no error", key)
			}
			wantMissing(t, target, key)
		}
	})
}

func testConcurrentPuts(t *testing.T, target backup.Target) {
	const n = 8
	keys := make([]string, n)
	for i := range keys {
		// Half in one shared directory, half in directories of their own, so directory creation races too.
		keys[i] = fmt.Sprintf("concurrent/shared/%d", i)
		if i%2 == 1 {
			keys[i] = fmt.Sprintf("concurrent/own%d/deep/%d", i, i)
		}
	}
	size := func(i int) int { return 100000 * (i + 1) }
	var g errgroup.Group
	for i, key := range keys {
		g.Go(func() error {
			return target.Put(t.Context(), key, plainReader{bytes.NewReader(Data(size(i), uint64(i)))}, int64(size(i)))
		})
	}
	if err := g.Wait(); err != nil {
		t.Fatalf("concurrent puts: %v", err)
	}
	for i, key := range keys {
		if got, want := GetAll(t, target, key, 0, -1), Data(size(i), uint64(i)); !bytes.Equal(got, want) {
			t.Fatalf("get %s: %s", key, diff(got, want))
		}
	}
	got, err := target.List(t.Context(), "concurrent/")
	if err != nil {
		t.Fatal(err)
	}
	if want := slices.Sorted(slices.Values(keys)); !slices.Equal(objectKeys(got), want) {
		t.Fatalf("list = %q, want %q", objectKeys(got), want)
	}
}

func testInvalidKeys(t *testing.T, target backup.Target) {
	for _, key := range []string{"", "/abs", "a//b", "a/../b", "..", "./a", "a/.", "a/", "../outside"} {
		t.Run(fmt.Sprintf("%q", key), func(t *testing.T) {
			if err := target.Put(t.Context(), key, bytes.NewReader([]byte("x")), 1); err == nil {
				t.Fatalf("put with key %q: no error", key)
			}
			rc, err := target.Get(t.Context(), key, 0, -1)
			if err == nil {
				rc.Close()
				t.Fatalf("get with key %q: no error", key)
			}
			if errors.Is(err, backup.ErrNotFound) {
				t.Fatalf("get with key %q: %v, want an invalid key error, not ErrNotFound", key, err)
			}
			if err := target.Delete(t.Context(), key); err == nil {
				t.Fatalf("delete with key %q: no error", key)
			}
		})
	}
	wantListing(t, target, "", nil)
}

// Data returns size deterministic pseudo-random bytes for seed.
func Data(size int, seed uint64) []byte {
	rng := rand.NewChaCha8([32]byte{byte(seed), byte(seed >> 8), byte(seed >> 16), byte(seed >> 24)})
	data := make([]byte, size)
	rng.Read(data)
	return data
}

// Put stores data under key and fails the test on error.
func Put(tb testing.TB, target backup.Target, key string, data []byte) {
	tb.Helper()
	if err := target.Put(tb.Context(), key, bytes.NewReader(data), int64(len(data))); err != nil {
		tb.Fatalf("put %s: %v", key, err)
	}
}

// GetAll reads a section of an object and fails the test on error.
func GetAll(tb testing.TB, target backup.Target, key string, offset, length int64) []byte {
	tb.Helper()
	rc, err := target.Get(tb.Context(), key, offset, length)
	if err != nil {
		tb.Fatalf("get %s (%d, %d): %v", key, offset, length, err)
	}
	defer rc.Close()
	data, err := io.ReadAll(rc)
	if err != nil {
		tb.Fatalf("read %s (%d, %d): %v", key, offset, length, err)
	}
	return data
}

// wantListing checks the keys and sizes listed under prefix.
func wantListing(tb testing.TB, target backup.Target, prefix string, want []backup.Object) {
	tb.Helper()
	got, err := target.List(tb.Context(), prefix)
	if err != nil {
		tb.Fatalf("list %q: %v", prefix, err)
	}
	same := slices.EqualFunc(got, want, func(a, b backup.Object) bool { return a.Key == b.Key && a.Size == b.Size })
	if !same {
		tb.Fatalf("list %q = %v, want %v", prefix, sizes(got), sizes(want))
	}
}

// wantMissing checks that key can neither be read nor is listed.
func wantMissing(tb testing.TB, target backup.Target, key string) {
	tb.Helper()
	rc, err := target.Get(tb.Context(), key, 0, -1)
	if err == nil {
		rc.Close()
		tb.Fatalf("get %s: the object exists", key)
	}
	if !errors.Is(err, backup.ErrNotFound) {
		tb.Fatalf("get %s: %v, want ErrNotFound", key, err)
	}
	wantListing(tb, target, key, nil)
}

func objectKeys(objects []backup.Object) []string {
	var keys []string
	for _, o := range objects {
		keys = append(keys, o.Key)
	}
	return keys
}

func sizes(objects []backup.Object) []string {
	var out []string
	for _, o := range objects {
		out = append(out, fmt.Sprintf("%s:%d", o.Key, o.Size))
	}
	return out
}

// diff describes how got differs from want without printing megabytes.
func diff(got, want []byte) string {
	if len(got) != len(want) {
		return fmt.Sprintf("got %d bytes, want %d", len(got), len(want))
	}
	for i := range got {
		if got[i] != want[i] {
			return fmt.Sprintf("first difference at byte %d", i)
		}
	}
	return "equal"
}

// plainReader hides every method but Read.
type plainReader struct{ r io.Reader }

func (p plainReader) Read(b []byte) (int, error) { return p.r.Read(b) }

// failingReader returns errReader after left bytes.
type failingReader struct {
	r    io.Reader
	left int
}

func (f *failingReader) Read(p []byte) (int, error) {
	if f.left == 0 {
		return 0, errReader
	}
	n, err := f.r.Read(p[:min(len(p), f.left)])
	f.left -= n
	return n, err
}

// cancellingReader cancels its context after left bytes and keeps giving data, as a caller giving up would.
type cancellingReader struct {
	r      io.Reader
	left   int
	cancel context.CancelFunc
}

func (c *cancellingReader) Read(p []byte) (int, error) {
	if c.left <= 0 {
		c.cancel()
	}
	n, err := c.r.Read(p)
	c.left -= n
	return n, err
}
