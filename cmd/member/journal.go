package main

import (
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"
	"unicode/utf8"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/mirrorkit/mirrorkit/engine/globals"
	"github.com/mirrorkit/mirrorkit/engine/journal"
)

type journalCmd struct {
	Check journalCheckCmd `cmd:"" help:"Verify every record of a journal (read-only)."`
	Dump  journalDumpCmd  `cmd:"" help:"Print journal records (read-only)."`
}

type journalDir struct {
	Dir  string `arg:"" type:"path" help:"A journal directory, or a member data directory containing journal/."`
	JSON bool   `name:"json" help:"Print JSON."`
}

func (d journalDir) resolve() (string, error) {
	if fi, err := os.Stat(filepath.Join(d.Dir, "journal")); err == nil && fi.IsDir() {
		return filepath.Join(d.Dir, "journal"), nil
	}
	fi, err := os.Stat(d.Dir)
	if err != nil {
		return "", usage("journal directory: %v", err)
	}
	if !fi.IsDir() {
		return "", usage("%s is not a directory", d.Dir)
	}
	return d.Dir, nil
}

type journalCheckCmd struct{ journalDir }

func (c *journalCheckCmd) Run() error {
	dir, err := c.resolve()
	if err != nil {
		return err
	}
	rep, err := journal.Check(vfs.Default, dir)
	if err != nil {
		return err
	}
	if c.JSON {
		return printJSON(rep)
	}
	fmt.Printf("journal %s: %d segments, %d records in %d transactions, %d bytes, from %s to %s\n",
		dir, rep.Segments, rep.Records, rep.Transactions, rep.Bytes, rep.First, rep.End)
	if rep.TornTail != nil {
		fmt.Printf("torn tail: %+v (recovery truncates it; it was never acknowledged)\n", *rep.TornTail)
	} else {
		fmt.Println("ok")
	}
	return nil
}

type journalDumpCmd struct {
	journalDir
	From  string `help:"Start at this position (epoch:segment:offset)."`
	Limit int    `help:"Print at most this many records (0: all)."`
}

// dumpRecord is the JSON form of a record: keys shown as global references, values as text when they are valid UTF-8.
type dumpRecord struct {
	Pos    string `json:"pos"`
	Type   string `json:"type"`
	Txn    uint64 `json:"txn"`
	End    bool   `json:"txn_end"`
	Time   string `json:"time"`
	DB     string `json:"db,omitempty"`
	Ref    string `json:"ref,omitempty"`
	Value  string `json:"value,omitempty"`
	Before string `json:"before,omitempty"`
}

var errLimit = errors.New("limit reached")

func (c *journalDumpCmd) Run() error {
	dir, err := c.resolve()
	if err != nil {
		return err
	}
	var from journal.Position
	if c.From != "" {
		if from, err = journal.ParsePosition(c.From); err != nil {
			return usageError{Err: err}
		}
	}
	n := 0
	err = journal.Dump(vfs.Default, dir, from, func(r journal.Record) error {
		if c.Limit > 0 && n >= c.Limit {
			return errLimit
		}
		n++
		d := dumpRecord{Pos: r.Pos.String(), Type: r.Type.String(), Txn: r.TxnID, End: r.TxnEnd,
			Time: time.Unix(0, r.Time).UTC().Format(time.RFC3339Nano), DB: r.DB}
		if len(r.Key) > 0 {
			d.Ref = refOrHex(r.Key)
		}
		if r.HasValue {
			d.Value = textOrHex(r.Value)
		}
		if r.HasBefore {
			d.Before = textOrHex(r.Before)
		}
		if c.JSON {
			return printJSONLine(d)
		}
		fmt.Printf("%s %-6s txn=%d%s db=%s %s", d.Pos, d.Type, d.Txn, endMark(d.End), d.DB, d.Ref)
		if r.HasValue {
			fmt.Printf(" value=%q", d.Value)
		}
		if r.HasBefore {
			fmt.Printf(" before=%q", d.Before)
		}
		fmt.Println()
		return nil
	})
	if errors.Is(err, errLimit) {
		return nil
	}
	return err
}

func endMark(end bool) string {
	if end {
		return " end"
	}
	return ""
}

func refOrHex(key []byte) string {
	if ref, err := globals.Decode(key); err == nil {
		return ref.String()
	}
	return "0x" + hex.EncodeToString(key)
}

func textOrHex(v []byte) string {
	if utf8.Valid(v) {
		return string(v)
	}
	return "0x" + hex.EncodeToString(v)
}
