package backuptest

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/rs/zerolog"

	"github.com/mirrorkit/mirrorkit/backup"
	"github.com/mirrorkit/mirrorkit/engine/globals"
	"github.com/mirrorkit/mirrorkit/engine/journal"
	"github.com/mirrorkit/mirrorkit/engine/store"
	"github.com/mirrorkit/mirrorkit/engine/wire"
)

// Fixture is a checkpoint of a real database and what the store said about it.
type Fixture struct {
	Dir     string // the checkpoint directory
	DB      string // the database name as the store reports it
	Applied journal.Position
	Hash    store.LogicalHash
}

// CheckpointOptions shape the database Checkpoint writes.
type CheckpointOptions struct {
	// ValuesPerTable, when positive, flushes after every ValuesPerTable values, so the checkpoint holds several table
	// files: a restore then has files to skip and files to fetch. Zero leaves flushing to the store.
	ValuesPerTable int
}

// Checkpoint writes about size bytes of partly compressible values into a new database named db and checkpoints it. The
// same arguments write the same values.
func Checkpoint(tb testing.TB, db string, size int, opts CheckpointOptions) Fixture {
	tb.Helper()
	dir := tb.TempDir()
	log := zerolog.New(zerolog.NewTestWriter(tb)).Level(zerolog.WarnLevel)
	j, err := journal.Open(filepath.Join(dir, "journal"), journal.Options{Logger: log})
	if err != nil {
		tb.Fatal(err)
	}
	defer j.Close()
	s, err := store.Open(store.Options{Dir: dir, Journal: j, Logger: log})
	if err != nil {
		tb.Fatal(err)
	}
	defer s.Close()
	if _, err := s.Create(db); err != nil {
		tb.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(1, uint64(size)))
	const valueSize = 2000
	batch := 200
	if opts.ValuesPerTable > 0 {
		batch = opts.ValuesPerTable
	}
	for n := 0; n*valueSize < size; n += batch {
		ops := make([]wire.Op, batch)
		for i := range ops {
			key, err := globals.Encode(globals.MustParse(fmt.Sprintf(`^Data(%d,"k")`, n+i)))
			if err != nil {
				tb.Fatal(err)
			}
			var v strings.Builder
			for v.Len() < valueSize {
				fmt.Fprintf(&v, "word%d ", rng.IntN(500))
			}
			ops[i] = wire.Op{Kind: wire.OpSet, Key: key, Value: []byte(v.String())}
		}
		if _, _, err := s.Exec(context.Background(), db, ops); err != nil {
			tb.Fatal(err)
		}
		if opts.ValuesPerTable > 0 {
			if _, err := s.PurgeFloor("", j.AppendedEnd()); err != nil {
				tb.Fatal(err)
			}
		}
	}
	cp, err := s.Checkpoint(db, filepath.Join(dir, "checkpoint"))
	if err != nil {
		tb.Fatal(err)
	}
	h, err := s.Hash(db)
	if err != nil {
		tb.Fatal(err)
	}
	return Fixture{Dir: cp.Dir, DB: strings.ToUpper(db), Applied: cp.Applied, Hash: h}
}

// sharedRoot holds the directories of shared checkpoints; Main removes it when the tests end.
var sharedRoot string

// Main runs the tests of a package that uses Shared checkpoints, then removes their directories. Call it from TestMain.
func Main(m *testing.M) {
	root, err := os.MkdirTemp("", "backuptest-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	sharedRoot = root
	code := m.Run()
	os.RemoveAll(root)
	os.Exit(code)
}

// Shared is a checkpoint made once, by the first test that asks for it, for the tests that only read it. Making one
// checkpoint instead of one per test keeps the tests fast. Its package's TestMain must call Main.
type Shared struct {
	DB      string
	Size    int
	Options CheckpointOptions

	once    sync.Once
	fixture Fixture
}

// Fixture returns the shared checkpoint, making it on first use.
func (s *Shared) Fixture(tb testing.TB) Fixture {
	tb.Helper()
	s.once.Do(func() { s.fixture = Checkpoint(&sharedTB{TB: tb}, s.DB, s.Size, s.Options) })
	if s.fixture.Dir == "" {
		tb.Fatalf("shared checkpoint of %s failed", s.DB)
	}
	return s.fixture
}

// sharedTB lets a shared checkpoint outlive the test that made it: its temporary directories are removed by Main instead
// of at that test's end.
type sharedTB struct{ testing.TB }

func (s *sharedTB) TempDir() string {
	s.Helper()
	if sharedRoot == "" {
		s.Fatal("a shared checkpoint needs backuptest.Main called from TestMain")
	}
	dir, err := os.MkdirTemp(sharedRoot, "fixture-")
	if err != nil {
		s.Fatal(err)
	}
	return dir
}

func (s *sharedTB) Cleanup(func()) {}

// ReadFiles returns the content of every regular file under dir by slash-separated relative name, leaving out the files
// whose base name is one of except.
func ReadFiles(tb testing.TB, dir string, except ...string) map[string][]byte {
	tb.Helper()
	out := map[string][]byte{}
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() || slices.Contains(except, d.Name()) {
			return err
		}
		data, err := os.ReadFile(p)
		rel, _ := filepath.Rel(dir, p)
		out[filepath.ToSlash(rel)] = data
		return err
	})
	if err != nil {
		tb.Fatal(err)
	}
	return out
}

// Run backs the fixture up into tgt and fails the test on error.
func Run(tb testing.TB, fx Fixture, tgt backup.Target, opts backup.Options) *backup.Manifest {
	tb.Helper()
	m, err := backup.Run(context.Background(), backup.DirSource(fx.Dir), tgt, opts)
	if err != nil {
		tb.Fatal(err)
	}
	return m
}

// Backup backs the fixture up into a new MemTarget.
func Backup(tb testing.TB, fx Fixture, opts backup.Options) (*MemTarget, *backup.Manifest) {
	tb.Helper()
	tgt := NewMemTarget()
	return tgt, Run(tb, fx, tgt, opts)
}

// Key returns a backup key of backup.KeySize bytes b: different b give different keys.
func Key(b byte) []byte { return bytes.Repeat([]byte{b}, backup.KeySize) }
