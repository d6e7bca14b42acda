package journal

import (
	"context"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/rs/zerolog"
)

// Options configure a Journal. The zero value is usable.
type Options struct {
	SegmentSize int64            // roll size of segments; default DefaultSegmentSize
	FS          vfs.FS           // default vfs.Default
	Epoch       uint64           // epoch stamped on appended records (default 1); see SetEpoch
	Now         func() time.Time // clock for record times and segment ages; default time.Now
	Logger      zerolog.Logger
	OnSync      func(SyncInfo) // called after each group-commit sync (metrics)
}

func (o Options) withDefaults() Options {
	if o.SegmentSize <= 0 {
		o.SegmentSize = DefaultSegmentSize
	}
	if o.FS == nil {
		o.FS = vfs.Default
	}
	if o.Epoch == 0 {
		o.Epoch = 1
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return o
}

// SyncInfo describes one group-commit sync.
type SyncInfo struct {
	Records      int
	Transactions int
	Bytes        int
	Duration     time.Duration
}

// Stats are counters since Open.
type Stats struct {
	Appends       uint64 // Append calls that added records
	Records       uint64 // records appended
	Bytes         uint64 // bytes appended (frames)
	Transactions  uint64 // records appended with TxnEnd
	Syncs         uint64 // group-commit syncs
	SyncedRecords uint64 // records made durable
	SyncedBytes   uint64 // bytes made durable
}

// RecoveryInfo is what Open found and did.
type RecoveryInfo struct {
	Created      bool // the directory held no segment; journal.000001 was created
	Segments     int
	Records      int
	Transactions int
	Bytes        int64 // frame bytes of the records kept
	First, End   Position
	TornTail     *TornTail // what was cut off the last segment, nil if nothing
}

// SegmentInfo describes one segment file.
type SegmentInfo struct {
	Number     uint64
	Name       string
	Size       int64 // bytes in use: header and durable records (the file may be preallocated beyond)
	First, End Position
	ModTime    time.Time // last write
}

type journalState int

const (
	stateOpen journalState = iota
	stateClosing
	stateClosed
)

// segmentState is what the journal keeps about each segment present.
type segmentState struct {
	num      uint64
	epoch    uint64 // header epoch
	end      int64  // end of records once sealed (set when the next segment begins)
	endEpoch uint64
	modTime  time.Time
}

// Journal is an open journal directory. All methods are safe for concurrent use.
type Journal struct {
	dir      string
	fs       vfs.FS
	opts     Options
	log      zerolog.Logger
	lock     io.Closer
	recovery RecoveryInfo

	mu        sync.Mutex
	state     journalState
	failed    error // sticky: set once a write or sync fails
	epoch     uint64
	nextTxnID uint64
	curTxnID  uint64 // id given to TxnID==0 records until the next TxnEnd
	txnOpen   bool   // the last appended record did not end its transaction
	appended  Position
	written   Position // written to the segment files (possibly not yet synced): what a stream may ship
	durable   Position
	fill      *batch // records appended since the last leader took its batch
	spare     *batch // empty buffer swapped in by the next leader (nil while one writes)
	syncing   bool   // a leader is writing and syncing
	durableCh chan struct{}
	writtenCh chan struct{}  // closed and replaced whenever written advances (or durable, truncation, failure)
	segs      []segmentState // oldest first; the last is the one being appended to
	purgedEnd Position       // end of the newest purged segment, zero if unknown (see purgedend.go)
	retained  map[string]Position
	stats     Stats

	// w is used only by the goroutine holding the leader role (syncing), and
	// by Open and Close when no leader can run.
	w segmentWriter

	purgeMu sync.Mutex

	format atomic.Pointer[recordFormat] // what Append stamps on records that name no version; nil: RecordV1
}

// recordFormat is the record version and origin Append writes.
type recordFormat struct {
	version uint8
	origin  string
}

// SetRecordFormat makes Append write records of the given version (RecordV1 or RecordV2) from now on; origin is the
// member name a RecordV2 record carries. A mirror switches its journal to RecordV2 only once every member reads it
// (after the upgrade is finalized). A version this process does not read is refused.
func (j *Journal) SetRecordFormat(version uint8, origin string) error {
	if !readableVersion(version) {
		return fmt.Errorf("%w: record version %d (this build writes versions 1..%d)", ErrInvalidRecord, version, MaxRecordVersion())
	}
	j.format.Store(&recordFormat{version: version, origin: origin})
	return nil
}

// RecordFormat is the record version Append writes.
func (j *Journal) RecordFormat() uint8 {
	if f := j.format.Load(); f != nil {
		return f.version
	}
	return RecordV1
}

// Open opens or creates the journal in dir and recovers it. Every segment is
// read and checked: segments must be consecutive (a gap is ErrMissingSegment),
// and every failed check is ErrCorrupt naming file and offset, except at the
// end of the last segment: a torn frame, garbage after the last record, or the
// records of a transaction whose TxnEnd record never reached the disk (never
// acknowledged, since acknowledgement waits for a sync covering the whole
// transaction) are cut off, as long as no valid record follows them. A last
// segment whose header never reached the disk is re-initialised, and a
// segment copy left by an interrupted TruncateAfter is removed.
func Open(dir string, opts Options) (*Journal, error) {
	opts = opts.withDefaults()
	j := &Journal{
		dir:       dir,
		fs:        opts.FS,
		opts:      opts,
		log:       opts.Logger.With().Str("component", "journal").Str("dir", dir).Logger(),
		fill:      &batch{},
		spare:     &batch{},
		durableCh: make(chan struct{}),
		writtenCh: make(chan struct{}),
		retained:  make(map[string]Position),
	}
	j.w = segmentWriter{fs: j.fs, dir: dir, segmentSize: opts.SegmentSize}
	if err := createDir(j.fs, dir); err != nil {
		return nil, err
	}
	lock, err := j.fs.Lock(j.fs.PathJoin(dir, lockFileName))
	if err != nil {
		return nil, fmt.Errorf("lock journal %s: %w", dir, err)
	}
	j.lock = lock
	if err := j.recover(); err != nil {
		_ = j.w.close()
		_ = lock.Close()
		return nil, fmt.Errorf("open journal %s: %w", dir, err)
	}
	return j, nil
}

// createDir creates dir if needed and makes its entry durable: a journal
// whose directory vanishes in a crash loses acknowledged commits.
func createDir(fs vfs.FS, dir string) error {
	var missing []string
	for d := dir; ; d = fs.PathDir(d) {
		if _, err := fs.Stat(d); err == nil {
			break
		}
		missing = append(missing, d)
		if fs.PathDir(d) == d {
			break
		}
	}
	if len(missing) == 0 {
		return nil
	}
	if err := fs.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("create journal directory %s: %w", dir, err)
	}
	for i := len(missing) - 1; i >= 0; i-- {
		if err := syncDir(fs, fs.PathDir(missing[i])); err != nil {
			return err
		}
	}
	return nil
}

func (j *Journal) recover() error {
	if err := removeCutCopies(j.fs, j.dir); err != nil {
		return err
	}
	scan, err := scanDir(j.fs, j.dir)
	if err != nil {
		return err
	}
	j.epoch = max(j.opts.Epoch, scan.maxEpoch)
	j.nextTxnID = scan.maxTxnID + 1
	j.recovery = RecoveryInfo{
		Segments:     len(scan.segs),
		Records:      scan.records,
		Transactions: scan.transactions,
		Bytes:        scan.bytes,
		TornTail:     scan.tornTail(),
	}
	now := j.opts.Now()
	if len(scan.segs) == 0 {
		if err := j.w.create(1, j.epoch); err != nil {
			return err
		}
		j.recovery.Created, j.recovery.Segments = true, 1
		j.segs = []segmentState{{num: 1, epoch: j.epoch, end: HeaderSize, endEpoch: j.epoch, modTime: now}}
	} else {
		for _, s := range scan.segs {
			j.segs = append(j.segs, segmentState{num: s.num, epoch: s.epoch, end: s.end, endEpoch: s.endEpoch, modTime: s.modTime})
		}
		if err := j.repairLast(&scan.segs[len(scan.segs)-1]); err != nil {
			return err
		}
	}
	last := j.segs[len(j.segs)-1]
	j.appended = Position{Epoch: last.endEpoch, Segment: last.num, Offset: uint64(last.end)}
	j.durable = j.appended
	j.written = j.appended
	j.recovery.First = j.firstLocked()
	if pe, err := readPurgedEnd(j.fs, j.dir); err != nil {
		j.log.Warn().Err(err).Msg("ignoring the recorded end of the purged journal")
	} else if pe.Segment+1 == j.recovery.First.Segment {
		j.purgedEnd = pe
	}
	j.recovery.End = j.appended
	return nil
}

// repairLast opens the last segment for appending, after re-initialising it
// or cutting its torn tail.
func (j *Journal) repairLast(s *segmentScan) error {
	last := &j.segs[len(j.segs)-1]
	if s.reinit {
		j.log.Warn().Str("file", s.path).Msg("re-initialising a segment whose header never reached the disk")
		if err := j.w.create(s.num, j.epoch); err != nil {
			return err
		}
		last.epoch, last.endEpoch = j.epoch, j.epoch
		return nil
	}
	if err := j.w.openExisting(s.num, s.fileSize); err != nil {
		return err
	}
	if s.torn == nil {
		return nil
	}
	j.log.Warn().Str("file", s.path).Int64("offset", s.torn.Offset).Int64("bytes", s.torn.Bytes).
		Str("reason", s.torn.Reason).Msg("cutting torn tail of the journal")
	starts := s.cuts
	if len(starts) == 0 {
		starts = []int64{s.torn.Offset}
	}
	return j.w.cut(starts, s.torn.Offset+s.torn.Bytes)
}

// Recovery reports what Open found.
func (j *Journal) Recovery() RecoveryInfo { return j.recovery }

// Dir returns the journal directory.
func (j *Journal) Dir() string { return j.dir }

// usableLocked returns why the journal cannot take appends, if it cannot.
func (j *Journal) usableLocked() error {
	if j.failed != nil {
		return j.failed
	}
	if j.state != stateOpen {
		return ErrClosed
	}
	return nil
}

// Append encodes recs contiguously as one unit (normally one transaction, with
// TxnEnd set on the last record) and assigns each record its Position, its
// Time if zero, and its TxnID if zero: records with TxnID 0 share the
// journal's current transaction id, which advances after each TxnEnd record.
// It returns the end position (just after the last record) without waiting
// for I/O: WaitDurable makes it durable. Positions follow call order.
//
// A unit never spans segments, and a segment only rolls between
// transactions, so a transaction always lies in one segment.
func (j *Journal) Append(recs []Record) (end Position, err error) {
	var now int64
	format := j.format.Load()
	for i := range recs {
		r := &recs[i]
		if r.Version == 0 && format != nil && format.version >= RecordV2 {
			r.Version, r.Origin = format.version, format.origin
		}
		if err := checkAppendable(r); err != nil {
			return Position{}, fmt.Errorf("append record %d of %d: %w", i+1, len(recs), err)
		}
		if r.Time == 0 {
			if now == 0 {
				now = j.opts.Now().UnixNano()
			}
			r.Time = now
		}
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	if err := j.usableLocked(); err != nil {
		return Position{}, err
	}
	if len(recs) == 0 {
		return j.appended, nil
	}
	for i := range recs {
		r := &recs[i]
		switch {
		case r.TxnID == 0:
			if j.curTxnID == 0 {
				j.curTxnID = j.nextTxnID
				j.nextTxnID++
			}
			r.TxnID = j.curTxnID
		case r.TxnID >= j.nextTxnID:
			j.nextTxnID = r.TxnID + 1
		}
		if r.TxnEnd {
			j.curTxnID = 0
		}
	}
	// Sizing with the largest offset the unit can have if it fits gives an
	// upper bound, so a unit that fits by this measure really fits.
	var bound int64
	for i := range recs {
		recs[i].Pos = Position{Epoch: j.epoch, Segment: j.appended.Segment, Offset: uint64(j.opts.SegmentSize)}
		bound += int64(recs[i].Size())
	}
	create := false
	if !j.txnOpen && j.appended.Offset > HeaderSize && int64(j.appended.Offset)+bound > j.opts.SegmentSize {
		j.rollLocked(j.epoch)
		create = true
	}
	c := j.fill.chunkFor(j.appended, j.epoch, create)
	off := j.appended.Offset
	start := len(c.buf)
	for i := range recs {
		r := &recs[i]
		r.Pos = Position{Epoch: j.epoch, Segment: j.appended.Segment, Offset: off}
		n := len(c.buf)
		c.buf = AppendRecord(c.buf, r)
		off += uint64(len(c.buf) - n)
		if r.TxnEnd {
			j.fill.txns++
			j.stats.Transactions++
		}
	}
	bytes := len(c.buf) - start
	j.txnOpen = !recs[len(recs)-1].TxnEnd
	j.appended = Position{Epoch: j.epoch, Segment: j.appended.Segment, Offset: off}
	j.fill.end = j.appended
	j.fill.records += len(recs)
	j.fill.bytes += bytes
	j.stats.Appends++
	j.stats.Records += uint64(len(recs))
	j.stats.Bytes += uint64(bytes)
	return j.appended, nil
}

// rollLocked seals the current segment and starts the next one, whose header
// carries epoch, in memory; the leader creates the file before writing into it.
func (j *Journal) rollLocked(epoch uint64) {
	cur := &j.segs[len(j.segs)-1]
	cur.end, cur.endEpoch = int64(j.appended.Offset), j.appended.Epoch
	next := j.appended.Segment + 1
	j.segs = append(j.segs, segmentState{num: next, epoch: epoch, end: HeaderSize, endEpoch: epoch, modTime: j.opts.Now()})
	j.appended = Position{Epoch: epoch, Segment: next, Offset: HeaderSize}
}

// posBefore orders positions by place in the journal, ignoring epochs.
func posBefore(a, b Position) bool {
	if a.Segment != b.Segment {
		return a.Segment < b.Segment
	}
	return a.Offset < b.Offset
}

// WaitDurable blocks until everything before pos is written and synced. The
// first waiter becomes the leader: it takes every buffered byte, writes it
// (one write per segment) and syncs once, while appends continue into the
// other buffer; waiters that arrive meanwhile are served by the next leader.
// After a failed write or sync the journal is failed for good: the sticky
// error (ErrFailed, ErrClosed and the cause) is returned here and by every
// later append, and nothing more is acknowledged.
func (j *Journal) WaitDurable(ctx context.Context, pos Position) error {
	j.mu.Lock()
	for {
		if !posBefore(j.durable, pos) {
			j.mu.Unlock()
			return nil
		}
		if j.failed != nil {
			err := j.failed
			j.mu.Unlock()
			return err
		}
		if posBefore(j.appended, pos) {
			appended := j.appended
			j.mu.Unlock()
			return fmt.Errorf("wait for %s: %w: beyond the appended end %s", pos, ErrBadPosition, appended)
		}
		if !j.syncing {
			if j.state == stateClosed {
				j.mu.Unlock()
				return ErrClosed
			}
			j.leadLocked()
			continue
		}
		ch := j.durableCh
		j.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
		j.mu.Lock()
	}
}

// leadLocked writes and syncs the filled batch. It is entered and left with
// j.mu held, and releases it for the I/O.
func (j *Journal) leadLocked() {
	b := j.fill
	j.fill, j.spare = j.spare, nil
	j.syncing = true
	j.mu.Unlock()

	start := time.Now()
	err := j.writeChunks(b)
	if err == nil {
		// Streams may ship what is written while it syncs, so a backup's sync overlaps this one.
		j.mu.Lock()
		j.written = b.end
		j.notifyWrittenLocked()
		j.mu.Unlock()
		err = j.w.sync()
	}
	info := SyncInfo{Records: b.records, Transactions: b.txns, Bytes: b.bytes, Duration: time.Since(start)}
	if err == nil && j.opts.OnSync != nil {
		j.opts.OnSync(info)
	}
	now := j.opts.Now()

	j.mu.Lock()
	j.syncing = false
	if err != nil {
		j.failed = &failure{cause: err}
		j.log.Error().Err(err).Msg("journal write failed; refusing further writes")
	} else {
		j.durable = b.end
		j.stats.Syncs++
		j.stats.SyncedRecords += uint64(b.records)
		j.stats.SyncedBytes += uint64(b.bytes)
		for _, c := range b.chunks[:b.used] {
			if i := c.seg - j.segs[0].num; c.seg >= j.segs[0].num && i < uint64(len(j.segs)) {
				j.segs[i].modTime = now
			}
		}
	}
	b.reset()
	j.spare = b
	close(j.durableCh)
	j.durableCh = make(chan struct{})
	j.notifyWrittenLocked()
}

func (j *Journal) notifyWrittenLocked() {
	close(j.writtenCh)
	j.writtenCh = make(chan struct{})
}

// writeChunks writes the chunks of b, creating segments as it reaches them;
// the caller syncs the last file written.
func (j *Journal) writeChunks(b *batch) error {
	for i := range b.chunks[:b.used] {
		c := &b.chunks[i]
		if c.create {
			if err := j.w.roll(c.seg, c.epoch); err != nil {
				return err
			}
		}
		if err := j.w.write(c.buf, c.offset); err != nil {
			return err
		}
	}
	return nil
}

// Commit appends recs and waits until they are durable. If ctx ends first
// the records stay appended and may still become durable: the outcome of
// such a commit is unknown to the caller.
func (j *Journal) Commit(ctx context.Context, recs []Record) (Position, error) {
	end, err := j.Append(recs)
	if err != nil {
		return Position{}, err
	}
	if err := j.WaitDurable(ctx, end); err != nil {
		return Position{}, err
	}
	return end, nil
}

// Sync makes everything appended so far durable.
func (j *Journal) Sync() error {
	j.mu.Lock()
	err := j.usableLocked()
	end := j.appended
	j.mu.Unlock()
	if err != nil {
		return err
	}
	return j.WaitDurable(context.Background(), end)
}

// AppendedEnd is the end of what has been appended, durable or not.
func (j *Journal) AppendedEnd() Position {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.appended
}

// DurableEnd is the end of what is durable.
func (j *Journal) DurableEnd() Position {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.durable
}

// FirstPosition is the start (after the header) of the oldest segment present.
func (j *Journal) FirstPosition() Position {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.firstLocked()
}

func (j *Journal) firstLocked() Position {
	s := j.segs[0]
	return Position{Epoch: s.epoch, Segment: s.num, Offset: HeaderSize}
}

// Epoch is the epoch stamped on appended records.
func (j *Journal) Epoch() uint64 {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.epoch
}

// SetEpoch raises the epoch used for subsequent appends. Lowering it is an
// error: positions of one epoch must never follow those of a later one.
func (j *Journal) SetEpoch(e uint64) error {
	j.mu.Lock()
	defer j.mu.Unlock()
	if err := j.usableLocked(); err != nil {
		return err
	}
	if e < j.epoch {
		return fmt.Errorf("set journal epoch to %d: lower than the current epoch %d", e, j.epoch)
	}
	j.epoch = e
	return nil
}

// Segments describes the segments holding durable data, oldest first.
func (j *Journal) Segments() []SegmentInfo {
	j.mu.Lock()
	defer j.mu.Unlock()
	var out []SegmentInfo
	for _, s := range j.segs {
		if s.num > j.durable.Segment {
			break
		}
		end := Position{Epoch: s.endEpoch, Segment: s.num, Offset: uint64(s.end)}
		if s.num == j.durable.Segment {
			end = j.durable
		}
		out = append(out, SegmentInfo{
			Number:  s.num,
			Name:    segmentName(s.num),
			Size:    int64(end.Offset),
			First:   Position{Epoch: s.epoch, Segment: s.num, Offset: HeaderSize},
			End:     end,
			ModTime: s.modTime,
		})
	}
	return out
}

// Stats returns the counters since Open.
func (j *Journal) Stats() Stats {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.stats
}

// Close syncs what was appended, closes the files and wakes every waiter and
// reader; afterwards calls return ErrClosed. After a failure it returns the
// sticky error.
func (j *Journal) Close() error {
	j.mu.Lock()
	if j.state != stateOpen {
		j.mu.Unlock()
		return ErrClosed
	}
	j.state = stateClosing
	end := j.appended
	j.mu.Unlock()

	err := j.WaitDurable(context.Background(), end)

	j.mu.Lock()
	for j.syncing {
		ch := j.durableCh
		j.mu.Unlock()
		<-ch
		j.mu.Lock()
	}
	j.state = stateClosed
	close(j.durableCh)
	j.durableCh = make(chan struct{})
	j.notifyWrittenLocked()
	j.mu.Unlock()

	if cerr := j.w.close(); err == nil {
		err = cerr
	}
	if lerr := j.lock.Close(); err == nil && lerr != nil {
		err = fmt.Errorf("unlock journal %s: %w", j.dir, lerr)
	}
	return err
}
