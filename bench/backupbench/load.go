package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/mirrorkit/mirrorkit/engine/client"
)

type loadCmd struct {
	Member  string  `required:"" help:"Data address (host:port) of the member that holds the database (its primary, if mirrored)."`
	DB      string  `name:"db" default:"BIG" help:"Database to fill; it must exist and should be empty."`
	GiB     float64 `name:"gib" default:"2" help:"Logical size to load (keys and values), in GiB."`
	Batch   int     `default:"32" help:"Rows per transaction."`
	Writers int     `default:"4" help:"Transactions in flight."`
}

// globalName is the global the rows are stored under: row i is ^big("k…i").
const globalName = "big"

// LoadResult is what load prints: the logical input every system is measured against.
type LoadResult struct {
	Kind         string  `json:"kind"` // kindLoad
	Rows         int64   `json:"rows"`
	LogicalBytes int64   `json:"logical_bytes"`
	ValueSize    int     `json:"value_size"`
	Seconds      float64 `json:"seconds"`
}

func (c *loadCmd) Run(ctx context.Context) error {
	rows, err := RowsFor(c.GiB)
	if err != nil {
		return err
	}
	if c.Batch < 1 || c.Writers < 1 {
		return fmt.Errorf("--batch %d and --writers %d: both must be at least 1", c.Batch, c.Writers)
	}
	cl, err := client.DialMirror(ctx, []string{c.Member}, client.Options{Conns: min(c.Writers, 4), Name: "backupbench"})
	if err != nil {
		return fmt.Errorf("connect to member %s: %w", c.Member, err)
	}
	defer cl.Close()
	start := time.Now()
	if err := loadRows(ctx, cl, c.DB, rows, c.Batch, c.Writers, os.Stderr); err != nil {
		return err
	}
	return json.NewEncoder(os.Stdout).Encode(LoadResult{
		Kind: kindLoad, Rows: rows, LogicalBytes: rows * RowSize, ValueSize: ValueSize, Seconds: time.Since(start).Seconds(),
	})
}

// loadRows writes rows 0 to rows-1 into db, batch rows per transaction, writers transactions at a time, and notes each
// tenth of the way on progress.
func loadRows(ctx context.Context, cl *client.Client, db string, rows int64, batch, writers int, progress io.Writer) error {
	gen := NewGenerator()
	var next atomic.Int64
	var progressMu sync.Mutex // guards done, so that the notes come in order
	var done int64
	g, ctx := errgroup.WithContext(ctx)
	for range writers {
		g.Go(func() error {
			values := make([]byte, 0, batch*ValueSize)
			for {
				first := next.Add(int64(batch)) - int64(batch)
				if first >= rows {
					return nil
				}
				last := min(first+int64(batch), rows)
				values = values[:0]
				txn := cl.Txn(db)
				for i := first; i < last; i++ {
					values = gen.AppendValue(values, i)
					txn.Set(fmt.Sprintf(`^%s("%s")`, globalName, KeyOf(i)), values[len(values)-ValueSize:])
				}
				if _, err := txn.Commit(ctx); err != nil {
					return fmt.Errorf("load rows %d to %d into %s: %w", first, last-1, db, err)
				}
				progressMu.Lock()
				before := done
				done += last - first
				if tenth := done * 10 / rows; tenth > before*10/rows {
					fmt.Fprintf(progress, "loaded %d%% (%d of %d rows)\n", tenth*10, done, rows)
				}
				progressMu.Unlock()
			}
		})
	}
	return g.Wait()
}

type rowsCmd struct {
	GiB float64 `name:"gib" default:"2" help:"Logical size (keys and values), in GiB, as given to load."`
}

// Run writes the rows load stores as PostgreSQL COPY text (key TAB value NEWLINE): the values hold only letters and
// spaces, so nothing needs escaping.
func (c *rowsCmd) Run() error {
	rows, err := RowsFor(c.GiB)
	if err != nil {
		return err
	}
	w := bufio.NewWriterSize(os.Stdout, 1<<20)
	if err := writeCopyRows(w, rows); err != nil {
		return err
	}
	return w.Flush()
}

func writeCopyRows(w io.Writer, rows int64) error {
	gen := NewGenerator()
	line := make([]byte, 0, RowSize+2)
	for i := range rows {
		line = append(line[:0], KeyOf(i)...)
		line = append(line, '\t')
		line = gen.AppendValue(line, i)
		line = append(line, '\n')
		if _, err := w.Write(line); err != nil {
			return fmt.Errorf("write row %d: %w", i, err)
		}
	}
	return nil
}
