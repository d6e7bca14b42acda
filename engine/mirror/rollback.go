package mirror

import (
	"bufio"
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"time"
	"unicode/utf8"

	"github.com/mirrorkit/mirrorkit/engine/globals"
	"github.com/mirrorkit/mirrorkit/engine/journal"
)

// DefaultRollbackLimit is the largest divergent tail, in journal bytes, a member rolls back by itself.
const DefaultRollbackLimit = 64 << 20

// RollbackRecord is one line of a rollback file: a record of a divergent tail that was undone.
type RollbackRecord struct {
	Database string `json:"database"`
	Key      string `json:"key"`      // the global reference, e.g. ^orders(42,"x")
	Position string `json:"position"` // where the record was in this member's journal
	Op       string `json:"op"`       // set or kill
	Time     string `json:"time"`     // when it was written
	// RolledBack is the value the record had set (absent for a kill); Restored the before-image put back (absent when the
	// key did not exist before). Values that are not UTF-8 text are given in hex in the *_hex fields instead.
	RolledBack    *string `json:"rolled_back,omitempty"`
	RolledBackHex *string `json:"rolled_back_hex,omitempty"`
	Restored      *string `json:"restored,omitempty"`
	RestoredHex   *string `json:"restored_hex,omitempty"`
}

// requestRollback records that this member must cut its journal back to pos (the primary's fork point) and restarts the
// role, which does it before anything reads the journal again.
func (mir *Mirror) requestRollback(pos journal.Position, primary string) error {
	already := false
	if err := mir.update(func(st *localState) error {
		already = st.RollbackTo != nil
		st.RollbackTo = &pos
		return nil
	}); err != nil {
		return err
	}
	if already {
		// The role is already restarting for it.
		return fmt.Errorf("rolling back to %s before streaming from %s", pos, primary)
	}
	mir.log.Warn().Str("primary", primary).Str("fork", pos.String()).Str("end", mir.jrn.AppendedEnd().String()).
		Msg("this member's journal holds records the primary does not; rolling them back")
	go func() {
		mir.stop()
		mir.start()
	}()
	return fmt.Errorf("rolling back to %s before streaming from %s", pos, primary)
}

// rollBack cuts the divergent tail: it reads the records after RollbackTo, writes them to a rollback file, restores their
// before-images in the databases (flushed), then truncates the journal and clears RollbackTo. Each step can be repeated
// after a crash: the before-images restore the same values and the truncation finishes where it stopped.
func (mir *Mirror) rollBack(ctx context.Context) error {
	st := mir.state()
	to := *st.RollbackTo
	end := mir.jrn.AppendedEnd()
	if err := mir.jrn.WaitDurable(ctx, end); err != nil {
		return err
	}
	limit := mir.mgr.opts.RollbackLimit
	if limit <= 0 {
		limit = DefaultRollbackLimit
	}
	segSize := mir.mgr.opts.SegmentSize
	if segSize == 0 {
		segSize = journal.DefaultSegmentSize
	}
	if size := byteDistance(to, end, segSize); size > float64(limit) {
		why := fmt.Sprintf("the divergent journal tail from %s to %s holds about %.0f bytes, more than the rollback limit of %d bytes: rebuild this member from a backup (or raise rollback_limit)", to, end, size, limit)
		_ = mir.update(func(st *localState) error {
			st.RollbackRefused = why
			return nil
		})
		return fmt.Errorf("%s", why)
	}
	recs, err := mir.readTail(ctx, to, end)
	if err != nil {
		return err
	}
	file, err := mir.writeRollbackFile(st.Config.Epoch, recs)
	if err != nil {
		return err
	}
	byDB := map[string][]journal.Record{}
	for _, rec := range recs {
		if rec.DB != "" {
			byDB[rec.DB] = append(byDB[rec.DB], rec)
		}
	}
	for db, list := range byDB {
		d, err := mir.mgr.store.Database(db)
		if err != nil {
			mir.log.Warn().Str("database", db).Err(err).Msg("rolled-back records of a database not on this member")
			continue
		}
		if err := d.RollBack(list, to); err != nil {
			return err
		}
	}
	removed, err := mir.jrn.TruncateAfter(to)
	if err != nil {
		return err
	}
	if err := mir.update(func(st *localState) error {
		st.RollbackTo, st.RollbackRefused = nil, ""
		return nil
	}); err != nil {
		return err
	}
	mir.log.Warn().Str("to", to.String()).Int("records", len(recs)).Int("truncated", len(removed)).Str("file", file).Msg("rolled back the divergent journal tail")
	return nil
}

// readTail reads the records between from and end.
func (mir *Mirror) readTail(ctx context.Context, from, end journal.Position) ([]journal.Record, error) {
	rd, err := mir.jrn.NewReader(from)
	if err != nil {
		return nil, fmt.Errorf("read the divergent tail from %s: %w", from, err)
	}
	defer rd.Close()
	var out []journal.Record
	for rd.Position().Less(end) {
		rec, err := rd.Next(ctx)
		if err != nil {
			return nil, fmt.Errorf("read the divergent tail from %s: %w", from, err)
		}
		if rec.Type == journal.RecordSet || rec.Type == journal.RecordKill {
			out = append(out, rec)
		}
	}
	return out, nil
}

// writeRollbackFile writes recs to DIR/rollback/<epoch>-<time>.jsonl, synced, and returns its path.
func (mir *Mirror) writeRollbackFile(epoch uint64, recs []journal.Record) (string, error) {
	dir := filepath.Join(mir.dir, "rollback")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	path := filepath.Join(dir, fmt.Sprintf("%d-%s.jsonl", epoch, mir.mgr.opts.Now().UTC().Format("20060102T150405.000000000Z")))
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
	if err != nil {
		return "", err
	}
	w := bufio.NewWriter(f)
	enc := json.NewEncoder(w)
	for _, rec := range recs {
		line := RollbackRecord{Database: rec.DB, Key: keyText(rec.Key), Position: rec.Pos.String(), Op: "set",
			Time: time.Unix(0, rec.Time).UTC().Format(time.RFC3339Nano)}
		if rec.Type == journal.RecordKill {
			line.Op = "kill"
		}
		if rec.HasValue && rec.Type == journal.RecordSet {
			line.RolledBack, line.RolledBackHex = valueText(rec.Value)
		}
		if rec.HasBefore {
			line.Restored, line.RestoredHex = valueText(rec.Before)
		}
		if err := enc.Encode(&line); err != nil {
			f.Close()
			return "", err
		}
	}
	if err := w.Flush(); err != nil {
		f.Close()
		return "", err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return "", err
	}
	if err := f.Close(); err != nil {
		return "", err
	}
	return path, syncDir(dir)
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

func keyText(key []byte) string {
	ref, err := globals.Decode(key)
	if err != nil {
		return hex.EncodeToString(key)
	}
	return ref.String()
}

func valueText(v []byte) (text, hexText *string) {
	if utf8.Valid(v) {
		s := string(v)
		return &s, nil
	}
	h := hex.EncodeToString(v)
	return nil, &h
}
