package backuptest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/mirrorkit/mirrorkit/backup"
)

// MemTarget is an in-memory backup.Target that records the keys it was asked to store.
type MemTarget struct {
	mu      sync.Mutex
	objects map[string][]byte
	puts    []string
}

var _ backup.Target = (*MemTarget)(nil)

// NewMemTarget returns an empty target.
func NewMemTarget() *MemTarget { return &MemTarget{objects: map[string][]byte{}} }

// Put stores the object; a size other than the bytes read (when not negative) fails, as it would on a real target.
func (t *MemTarget) Put(ctx context.Context, key string, r io.Reader, size int64) error {
	var buf bytes.Buffer
	buf.Grow(int(max(size, 0)))
	if _, err := buf.ReadFrom(r); err != nil {
		return err
	}
	data := buf.Bytes()
	if size >= 0 && int64(len(data)) != size {
		return fmt.Errorf("put %s: got %d bytes, announced %d", key, len(data), size)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	t.objects[key] = data
	t.puts = append(t.puts, key)
	return nil
}

// Get returns a copy of length bytes (all when negative) of the object from offset.
func (t *MemTarget) Get(_ context.Context, key string, offset, length int64) (io.ReadCloser, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	data, ok := t.objects[key]
	if !ok {
		return nil, fmt.Errorf("get %s: %w", key, backup.ErrNotFound)
	}
	data = data[min(offset, int64(len(data))):]
	if length >= 0 && length < int64(len(data)) {
		data = data[:length]
	}
	return io.NopCloser(bytes.NewReader(slices.Clone(data))), nil
}

// List returns the objects under prefix in key order.
func (t *MemTarget) List(_ context.Context, prefix string) ([]backup.Object, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	var out []backup.Object
	for k, v := range t.objects {
		if strings.HasPrefix(k, prefix) {
			out = append(out, backup.Object{Key: k, Size: int64(len(v))})
		}
	}
	slices.SortFunc(out, func(a, b backup.Object) int { return strings.Compare(a.Key, b.Key) })
	return out, nil
}

// Delete removes the objects; missing keys are not an error.
func (t *MemTarget) Delete(_ context.Context, keys ...string) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, k := range keys {
		delete(t.objects, k)
	}
	return nil
}

// Puts returns the keys stored since the target was made or ResetPuts was called, in the order they were stored.
func (t *MemTarget) Puts() []string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return slices.Clone(t.puts)
}

// ChunkPuts counts the chunk objects among Puts.
func (t *MemTarget) ChunkPuts() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	n := 0
	for _, k := range t.puts {
		if strings.Contains(k, "/chunks/") {
			n++
		}
	}
	return n
}

// ResetPuts forgets the keys stored so far, so a test can count what one run stores.
func (t *MemTarget) ResetPuts() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.puts = nil
}

// Keys returns the keys under prefix in order.
func (t *MemTarget) Keys(tb testing.TB, prefix string) []string {
	tb.Helper()
	objs, err := t.List(context.Background(), prefix)
	if err != nil {
		tb.Fatal(err)
	}
	keys := make([]string, len(objs))
	for i, o := range objs {
		keys[i] = o.Key
	}
	return keys
}

// Edit replaces a stored object with what fn makes of a copy of it: an object damaged in place on the target.
func (t *MemTarget) Edit(tb testing.TB, key string, fn func([]byte) []byte) {
	tb.Helper()
	t.mu.Lock()
	defer t.mu.Unlock()
	data, ok := t.objects[key]
	if !ok {
		tb.Fatalf("no object %s to edit", key)
	}
	t.objects[key] = fn(slices.Clone(data))
}

// ErrUnreachable is what a FaultyTarget returns once it has failed.
var ErrUnreachable = errors.New("target unreachable")

// FaultyTarget passes calls through to the wrapped target until a put or get exceeds its allowance, then fails that call
// and every later one with ErrUnreachable: a target that became unreachable mid-backup or mid-restore. Make one with
// FailAfterPuts or FailAfterGets.
type FaultyTarget struct {
	backup.Target
	okPuts, okGets int64
	puts, gets     atomic.Int64
}

var _ backup.Target = (*FaultyTarget)(nil)

// FailAfterPuts wraps tgt so that it fails once n puts have succeeded; n < 0 fails from the first call.
func FailAfterPuts(tgt backup.Target, n int64) *FaultyTarget {
	return &FaultyTarget{Target: tgt, okPuts: n, okGets: math.MaxInt64}
}

// FailAfterGets wraps tgt so that it fails once n gets have succeeded; n < 0 fails from the first call.
func FailAfterGets(tgt backup.Target, n int64) *FaultyTarget {
	return &FaultyTarget{Target: tgt, okPuts: math.MaxInt64, okGets: n}
}

func (t *FaultyTarget) failed() bool { return t.puts.Load() > t.okPuts || t.gets.Load() > t.okGets }

// Put counts against the put allowance.
func (t *FaultyTarget) Put(ctx context.Context, key string, r io.Reader, size int64) error {
	t.puts.Add(1)
	if t.failed() {
		return ErrUnreachable
	}
	return t.Target.Put(ctx, key, r, size)
}

// Get counts against the get allowance.
func (t *FaultyTarget) Get(ctx context.Context, key string, offset, length int64) (io.ReadCloser, error) {
	t.gets.Add(1)
	if t.failed() {
		return nil, ErrUnreachable
	}
	return t.Target.Get(ctx, key, offset, length)
}

// List fails once the target has failed.
func (t *FaultyTarget) List(ctx context.Context, prefix string) ([]backup.Object, error) {
	if t.failed() {
		return nil, ErrUnreachable
	}
	return t.Target.List(ctx, prefix)
}

// Delete fails once the target has failed.
func (t *FaultyTarget) Delete(ctx context.Context, keys ...string) error {
	if t.failed() {
		return ErrUnreachable
	}
	return t.Target.Delete(ctx, keys...)
}
