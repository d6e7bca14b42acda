package restore

import (
	"context"
	"errors"
	"os"
	"sync"
	"testing"

	"github.com/mirrorkit/mirrorkit/backup/backuptest"
)

func TestMain(m *testing.M) { backuptest.Main(m) }

var errInjected = errors.New("injected failure")

// recordingSink counts the writes per file passed to the wrapped sink and fails every write after okWrites (< 0: never).
type recordingSink struct {
	Sink
	okWrites int
	mu       sync.Mutex
	calls    int
	writes   map[string]int
}

func newRecordingSink(s Sink, okWrites int) *recordingSink {
	return &recordingSink{Sink: s, okWrites: okWrites, writes: map[string]int{}}
}

func (s *recordingSink) WriteAt(ctx context.Context, name string, offset int64, data []byte, sum string) error {
	s.mu.Lock()
	s.calls++
	fail := s.okWrites >= 0 && s.calls > s.okWrites
	s.mu.Unlock()
	if fail {
		return errInjected
	}
	if err := s.Sink.WriteAt(ctx, name, offset, data, sum); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.writes[name]++
	return nil
}

func exists(path string) bool {
	_, err := os.Lstat(path)
	return err == nil
}
