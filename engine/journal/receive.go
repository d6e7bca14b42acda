package journal

import "fmt"

// received is what appending a record written by another member needs to
// know about it.
type received struct {
	pos    Position
	size   int // frame bytes
	at     int // offset of the frame in an encoded batch
	txnID  uint64
	txnEnd bool
}

// AppendReceived appends records that another member wrote, at the positions
// they carry, so that both copies of the journal hold the same records at the
// same positions. recs[0].Pos must equal AppendedEnd() (epochs aside), or be
// the first record position (HeaderSize) of segment AppendedEnd().Segment+1:
// the sender rolled to a new segment there, and so does this journal, with a
// header carrying the record's epoch. Each following record must start where
// the previous one ended, or again at the start of the next segment, and
// epochs must not decrease. TxnIDs and times are kept as received; the local
// TxnID counter and epoch move past them so that later local appends never
// go back. A gap, an overlap or a decreasing epoch is ErrBadPosition naming
// both positions, and then nothing of the batch is appended.
//
// Like Append it only buffers; WaitDurable and Sync make the records durable
// with the same group commit.
func (j *Journal) AppendReceived(recs []Record) (end Position, err error) {
	batch := make([]received, len(recs))
	for i := range recs {
		r := &recs[i]
		if err := checkAppendable(r); err != nil {
			return Position{}, fmt.Errorf("append received record %d of %d at %s: %w", i+1, len(recs), r.Pos, err)
		}
		batch[i] = received{pos: r.Pos, size: r.Size(), txnID: r.TxnID, txnEnd: r.TxnEnd}
	}
	return j.appendReceived(batch, func(dst []byte, i int) []byte { return AppendRecord(dst, &recs[i]) })
}

// AppendEncoded is AppendReceived for a batch that arrives already encoded:
// record frames back to back, exactly as AppendRecord writes them (and as
// ReadEncoded returns them). Every frame is checked (checksum, format,
// self-position and continuity as for AppendReceived) before any is appended;
// the bytes are then appended as they are, without re-encoding. A damaged
// frame is ErrCorrupt naming its place in the batch. It returns the end
// position and the number of records.
func (j *Journal) AppendEncoded(frames []byte) (end Position, records int, err error) {
	var batch []received
	for off := 0; off < len(frames); {
		rec, n, err := DecodeRecord(frames[off:])
		if err != nil {
			return Position{}, 0, fmt.Errorf("append received frames: frame %d at byte %d of the batch: %w", len(batch)+1, off, err)
		}
		batch = append(batch, received{pos: rec.Pos, size: n, at: off, txnID: rec.TxnID, txnEnd: rec.TxnEnd})
		off += n
	}
	end, err = j.appendReceived(batch, func(dst []byte, i int) []byte {
		r := &batch[i]
		return append(dst, frames[r.at:r.at+r.size]...)
	})
	if err != nil {
		return Position{}, 0, err
	}
	return end, len(batch), nil
}

// appendReceived checks batch against the end of the journal and appends
// it; encode appends the frame of record i to dst.
func (j *Journal) appendReceived(batch []received, encode func(dst []byte, i int) []byte) (Position, error) {
	j.mu.Lock()
	defer j.mu.Unlock()
	if err := j.usableLocked(); err != nil {
		return Position{}, err
	}
	if len(batch) == 0 {
		return j.appended, nil
	}
	if err := j.checkReceivedLocked(batch); err != nil {
		return Position{}, fmt.Errorf("append received records to journal %s ending at %s: %w", j.dir, j.appended, err)
	}
	var c *chunk
	bytes := 0
	for i, r := range batch {
		create := r.pos.Segment != j.appended.Segment
		if create {
			j.rollLocked(r.pos.Epoch)
		}
		if c == nil || create {
			c = j.fill.chunkFor(j.appended, r.pos.Epoch, create)
		}
		c.buf = encode(c.buf, i)
		j.appended = Position{Epoch: r.pos.Epoch, Segment: r.pos.Segment, Offset: r.pos.Offset + uint64(r.size)}
		j.nextTxnID = max(j.nextTxnID, r.txnID+1)
		bytes += r.size
		if r.txnEnd {
			j.fill.txns++
			j.stats.Transactions++
		}
	}
	j.txnOpen = !batch[len(batch)-1].txnEnd
	j.epoch = max(j.epoch, j.appended.Epoch)
	j.fill.end = j.appended
	j.fill.records += len(batch)
	j.fill.bytes += bytes
	j.stats.Appends++
	j.stats.Records += uint64(len(batch))
	j.stats.Bytes += uint64(bytes)
	return j.appended, nil
}

// checkReceivedLocked verifies that batch continues the journal: each record
// where the previous one ends or at the start of the next segment, with no
// epoch lower than the one before it.
func (j *Journal) checkReceivedLocked(batch []received) error {
	at, epoch := j.appended, j.lastEpochLocked()
	for i, r := range batch {
		sameSegment := r.pos.Segment == at.Segment && r.pos.Offset == at.Offset
		nextSegment := r.pos.Segment == at.Segment+1 && r.pos.Offset == HeaderSize
		if !sameSegment && !nextSegment {
			return fmt.Errorf("%w: record %d of %d is at %s, expected %s or the start of %s",
				ErrBadPosition, i+1, len(batch), r.pos, at, segmentName(at.Segment+1))
		}
		if r.pos.Epoch < epoch {
			return fmt.Errorf("%w: record %d of %d at %s goes back from epoch %d, that of the record before it",
				ErrBadPosition, i+1, len(batch), r.pos, epoch)
		}
		epoch = r.pos.Epoch
		at = Position{Epoch: epoch, Segment: r.pos.Segment, Offset: r.pos.Offset + uint64(r.size)}
	}
	return nil
}

// lastEpochLocked is the epoch of the last record in the journal, or 0 if it
// holds none. Segment header epochs do not count: a journal created locally
// stamps its own epoch there before receiving anything.
func (j *Journal) lastEpochLocked() uint64 {
	if j.appended.Offset > HeaderSize {
		return j.appended.Epoch
	}
	for i := len(j.segs) - 2; i >= 0; i-- {
		if j.segs[i].end > HeaderSize {
			return j.segs[i].endEpoch
		}
	}
	return 0
}
