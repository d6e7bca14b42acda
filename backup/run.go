package backup

import (
	"bytes"
	"context"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/klauspost/compress/zstd"
	"golang.org/x/sync/errgroup"

	"github.com/mirrorkit/mirrorkit/engine/store"
	"github.com/mirrorkit/mirrorkit/engine/version"
)

// Defaults of Options.
const (
	DefaultLevel     = 3
	DefaultChunkSize = 4 << 20
	DefaultParallel  = 4
)

// progressEvery is how many uploaded chunks may go unrecorded in progress.json: what a resume re-uploads at most.
const progressEvery = 8

// ErrAlreadyComplete: Run was asked to resume a backup whose manifest is already stored.
var ErrAlreadyComplete = errors.New("backup already complete")

// Options tune Run.
type Options struct {
	// Level is the zstd level, 1 to 22 (default 3).
	Level int
	// ChunkSize is the plaintext size of a chunk (default 4 MiB). Memory use is about ChunkSize × (2 × Parallel + 2).
	ChunkSize int64
	// Parallel is how many chunks are compressed and uploaded at once (default 4).
	Parallel int
	// Key is the key file's key (LoadKeyFile); nil stores chunks unencrypted.
	Key []byte
	// ID resumes that backup (or starts one with that ID). "" resumes the newest unfinished backup of the database that is
	// newer than its newest complete one, else starts a new backup. A resumed backup keeps its level, chunk size and data key.
	ID string
	// Progress, when set, is called with the plaintext bytes handled so far and the total.
	Progress func(done, total int64)
	// Now is the clock (default time.Now).
	Now func() time.Time
}

func (o *Options) setDefaults() error {
	if o.Level == 0 {
		o.Level = DefaultLevel
	}
	if o.ChunkSize == 0 {
		o.ChunkSize = DefaultChunkSize
	}
	if o.Parallel == 0 {
		o.Parallel = DefaultParallel
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	switch {
	case o.Level < 1 || o.Level > 22:
		return fmt.Errorf("backup: compression level %d: use 1 to 22", o.Level)
	case o.ChunkSize < MinChunkSize || o.ChunkSize > MaxChunkSize:
		return fmt.Errorf("backup: chunk size %d: use %d to %d bytes", o.ChunkSize, MinChunkSize, MaxChunkSize)
	case o.Parallel < 1 || o.Parallel > 256:
		return fmt.Errorf("backup: parallel %d: use 1 to 256", o.Parallel)
	case o.Key != nil && len(o.Key) != KeySize:
		return fmt.Errorf("backup: key of %d bytes, want %d: %w", len(o.Key), KeySize, ErrBadKeyFile)
	}
	return nil
}

// Run backs the source up into the target and returns the stored manifest. Chunks are uploaded first, progress.json
// records them as it goes (so an interrupted run can be resumed, see Options.ID), and the manifest is stored last: a
// failed run never leaves a manifest. Key problems (ErrKeyRequired, ErrWrongKey on resume) are found before anything is
// written.
func Run(ctx context.Context, src Source, tgt Target, opts Options) (*Manifest, error) {
	if err := opts.setDefaults(); err != nil {
		return nil, err
	}
	info, err := src.Info(ctx)
	if err != nil {
		return nil, fmt.Errorf("backup: source: %w", err)
	}
	db, err := store.CanonicalDatabaseName(info.Database)
	if err != nil {
		return nil, fmt.Errorf("backup: source: %w", err)
	}
	if err := checkSourceFiles(db, info.Files); err != nil {
		return nil, err
	}
	r, err := begin(ctx, tgt, db, opts)
	if err != nil {
		return nil, err
	}
	m, err := r.upload(ctx, src, info)
	if err != nil {
		return nil, err
	}
	return r.commit(ctx, m)
}

func checkSourceFiles(db string, files []SourceFile) error {
	if len(files) == 0 {
		return fmt.Errorf("backup %s: the source has no files", db)
	}
	seen := make(map[string]bool, len(files))
	for _, f := range files {
		if err := CheckFileName(f.Name); err != nil {
			return fmt.Errorf("backup %s: source: %w", db, err)
		}
		if seen[f.Name] || f.Size < 0 {
			return fmt.Errorf("backup %s: source lists file %s twice or with size %d", db, f.Name, f.Size)
		}
		seen[f.Name] = true
	}
	return nil
}

// runner is one run of a backup, new or resumed.
type runner struct {
	tgt  Target
	opts Options
	db   string
	id   string
	aead cipher.AEAD

	mu      sync.Mutex
	prog    progress               // persisted state; Chunks guarded by mu
	stored  map[string]storedChunk // by plaintext SHA-256: objects the target holds; guarded by mu
	claimed map[string]bool        // chunks a worker of this run took on; guarded by mu
	unsaved int                    // chunks stored since progress.json was last written; guarded by mu

	saveMu sync.Mutex // orders progress.json writes so a later one always holds more

	doneMu sync.Mutex
	done   int64
	total  int64
}

func (r *runner) name() string { return r.db + "/" + r.id }

// begin settles which backup this run writes: it resumes one (checking the key against its progress record) or starts
// one (storing its first progress record).
func begin(ctx context.Context, tgt Target, db string, opts Options) (*runner, error) {
	r := &runner{tgt: tgt, opts: opts, db: db, id: opts.ID, stored: map[string]storedChunk{}, claimed: map[string]bool{}}
	var prev *progress
	if r.id != "" {
		if err := checkID(r.id); err != nil {
			return nil, fmt.Errorf("backup %s: %w", db, err)
		}
		keys, err := listKeys(ctx, tgt, manifestKey(db, r.id))
		if err != nil {
			return nil, err
		}
		if slices.Contains(keys, manifestKey(db, r.id)) {
			return nil, fmt.Errorf("backup %s is already complete: list or restore it, or start a new backup without an ID: %w", r.name(), ErrAlreadyComplete)
		}
		if prev, err = loadProgress(ctx, tgt, db, r.id); err != nil {
			return nil, err
		}
	} else {
		var err error
		if prev, err = newestUnfinished(ctx, tgt, db); err != nil {
			return nil, err
		}
	}
	start := r.start
	if prev != nil {
		start = func(ctx context.Context) error { return r.resume(ctx, prev) }
	}
	if err := start(ctx); err != nil {
		return nil, err
	}
	return r, nil
}

// newestUnfinished finds the progress record of the newest backup of db that has none of its own manifest and is newer
// than the newest complete one (an older one would be listed before data older than it). A damaged record is skipped.
func newestUnfinished(ctx context.Context, tgt Target, db string) (*progress, error) {
	objs, err := tgt.List(ctx, db+"/")
	if err != nil {
		return nil, fmt.Errorf("backup %s: list %s/: %w", db, db, err)
	}
	complete, unfinished := "", ""
	for _, o := range objs {
		id, rest, ok := strings.Cut(strings.TrimPrefix(o.Key, db+"/"), "/")
		if !ok || checkID(id) != nil {
			continue
		}
		switch rest {
		case "manifest.json":
			complete = max(complete, id)
		case "progress.json":
			unfinished = max(unfinished, id)
		}
	}
	if unfinished == "" || unfinished <= complete {
		return nil, nil
	}
	p, err := loadProgress(ctx, tgt, db, unfinished)
	if errors.Is(err, errProgressDamaged) {
		return nil, nil
	}
	return p, err
}

// resume adopts a progress record: its settings, its data key and those of its chunks the target still holds in full.
func (r *runner) resume(ctx context.Context, p *progress) error {
	r.id = p.ID
	aead, err := openEncryption(r.db, r.id, p.Encryption, r.opts.Key)
	if err != nil {
		return err
	}
	if p.Encryption == nil && r.opts.Key != nil {
		return fmt.Errorf("backup %s was started without encryption and a key was given: resume it without the key, or start a new backup", r.name())
	}
	r.aead = aead
	r.opts.Level, r.opts.ChunkSize = p.Level, p.ChunkSize
	objs, err := r.tgt.List(ctx, chunkPrefix(r.db, r.id))
	if err != nil {
		return fmt.Errorf("backup %s: list %s: %w", r.name(), chunkPrefix(r.db, r.id), err)
	}
	sizes := make(map[string]int64, len(objs))
	for _, o := range objs {
		sizes[o.Key] = o.Size
	}
	r.prog = *p
	r.prog.Chunks = nil
	for _, c := range p.Chunks {
		if size, ok := sizes[chunkKey(r.db, r.id, c.SHA256)]; ok && size == c.Stored {
			r.prog.Chunks = append(r.prog.Chunks, c)
			r.stored[c.SHA256] = c
		}
	}
	return nil
}

// start makes a new backup: its ID, its data key, and its first progress record, so it is listed and resumable at once.
func (r *runner) start(ctx context.Context) error {
	now := r.opts.Now().UTC()
	for attempt := 0; r.id == ""; attempt++ {
		id, err := newID(now)
		if err != nil {
			return err
		}
		keys, err := listKeys(ctx, r.tgt, backupPrefix(r.db, id))
		if err != nil {
			return err
		}
		if len(keys) == 0 {
			r.id = id
		} else if attempt == 10 {
			return fmt.Errorf("backup %s: no free backup ID at %s", r.db, now.Format(time.RFC3339))
		}
	}
	r.prog = progress{Version: progressVersion, ID: r.id, Database: r.db, Started: now, Level: r.opts.Level, ChunkSize: r.opts.ChunkSize}
	if r.opts.Key != nil {
		enc, aead, err := newEncryption(r.id, r.opts.Key)
		if err != nil {
			return fmt.Errorf("backup %s: %w", r.name(), err)
		}
		r.prog.Encryption, r.aead = enc, aead
	}
	return r.saveProgress(ctx)
}

func listKeys(ctx context.Context, tgt Target, prefix string) ([]string, error) {
	objs, err := tgt.List(ctx, prefix)
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", prefix, err)
	}
	keys := make([]string, len(objs))
	for i, o := range objs {
		keys[i] = o.Key
	}
	return keys, nil
}

// saveProgress stores progress.json with every chunk recorded so far.
func (r *runner) saveProgress(ctx context.Context) error {
	r.saveMu.Lock()
	defer r.saveMu.Unlock()
	r.mu.Lock()
	p := r.prog
	p.Chunks = slices.Clone(r.prog.Chunks)
	r.mu.Unlock()
	data, err := json.Marshal(&p)
	if err != nil {
		return fmt.Errorf("backup %s: encode progress: %w", r.name(), err)
	}
	key := progressKey(r.db, r.id)
	if err := r.tgt.Put(ctx, key, bytes.NewReader(data), int64(len(data))); err != nil {
		return fmt.Errorf("backup %s: put %s: %w", r.name(), key, err)
	}
	return nil
}

// chunkJob is one chunk read from a file, waiting for a worker. buf is the pool buffer that data lives in.
type chunkJob struct {
	file, chunk int
	offset      int64
	data, buf   []byte
}

// upload reads every file, stores every chunk the target does not hold yet and returns the manifest to commit.
func (r *runner) upload(ctx context.Context, src Source, info SourceInfo) (*Manifest, error) {
	cs := r.opts.ChunkSize
	files := make([]File, len(info.Files))
	for i, sf := range info.Files {
		files[i] = File{Name: sf.Name, Size: sf.Size, Chunks: make([]Chunk, (sf.Size+cs-1)/cs)}
		r.total += sf.Size
	}
	g, gctx := errgroup.WithContext(ctx)
	var hash store.LogicalHash
	g.Go(func() error {
		var err error
		if hash, err = src.LogicalHash(gctx); err != nil {
			return fmt.Errorf("backup %s: logical hash of the source: %w", r.name(), err)
		}
		return nil
	})
	// The pool of plaintext buffers bounds memory: the reader waits for a worker to give one back.
	free := make(chan []byte, r.opts.Parallel+2)
	for range cap(free) {
		free <- nil
	}
	jobs := make(chan chunkJob)
	g.Go(func() error {
		defer close(jobs)
		for i := range files {
			if err := r.readFile(gctx, src, i, &files[i], free, jobs); err != nil {
				return err
			}
		}
		return nil
	})
	for range r.opts.Parallel {
		g.Go(func() error { return r.work(gctx, files, free, jobs) })
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	if canon, err := store.CanonicalDatabaseName(hash.Database); hash.Database != "" && (err != nil || canon != r.db) {
		return nil, fmt.Errorf("backup %s: the source's logical hash is of database %s", r.name(), hash.Database)
	}
	m := &Manifest{
		Version: ManifestVersion, ID: r.id, Database: r.db, Mirror: info.Mirror, Member: info.Member,
		Created: r.prog.Started, Finished: r.opts.Now().UTC(), Position: info.Position, DatabaseFormat: info.Format,
		ToolVersion: version.Software, Compression: Compression{Algorithm: CompressionZstd, Level: r.opts.Level},
		ChunkSize: cs, Encryption: r.prog.Encryption, Files: files,
		LogicalHash: LogicalHash{Nodes: hash.Nodes, SHA256: hash.SHA256}, Bytes: r.total,
	}
	counted := map[string]bool{}
	for i := range files {
		digest, err := FileDigest(files[i].Chunks)
		if err != nil {
			return nil, fmt.Errorf("backup %s: file %s: %w", r.name(), files[i].Name, err)
		}
		files[i].SHA256 = digest
		for j := range files[i].Chunks {
			c := &files[i].Chunks[j]
			sc := r.stored[c.SHA256]
			c.Stored, c.StoredCRC32C = sc.Stored, sc.StoredCRC32C
			if !counted[c.SHA256] {
				counted[c.SHA256] = true
				m.StoredBytes += sc.Stored
			}
		}
	}
	return m, nil
}

// readFile reads one file sequentially into pool buffers and hands them to the workers (which hash them; the file's digest
// is derived from theirs).
func (r *runner) readFile(ctx context.Context, src Source, fi int, f *File, free chan []byte, jobs chan<- chunkJob) error {
	rc, err := src.Open(ctx, f.Name, 0, f.Size)
	if err != nil {
		return fmt.Errorf("backup %s: open source file %s: %w", r.name(), f.Name, err)
	}
	defer rc.Close()
	for ci := range f.Chunks {
		off := int64(ci) * r.opts.ChunkSize
		n := min(r.opts.ChunkSize, f.Size-off)
		var buf []byte
		select {
		case buf = <-free:
		case <-ctx.Done():
			return ctx.Err()
		}
		if int64(cap(buf)) < n {
			buf = make([]byte, n)
		}
		data := buf[:n]
		if _, err := io.ReadFull(rc, data); err != nil {
			free <- buf
			if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
				return fmt.Errorf("backup %s: source file %s ends before its listed size %d: it changed during the backup; back up a checkpoint", r.name(), f.Name, f.Size)
			}
			return fmt.Errorf("backup %s: read source file %s at offset %d: %w", r.name(), f.Name, off, err)
		}
		select {
		case jobs <- chunkJob{file: fi, chunk: ci, offset: off, data: data, buf: buf}:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

// work hashes, compresses, seals and stores chunks, with its own encoder and output buffer.
func (r *runner) work(ctx context.Context, files []File, free chan<- []byte, jobs <-chan chunkJob) error {
	// A window no larger than a chunk: a chunk is compressed on its own, so a larger one only costs memory and, at the
	// fastest level, time (its tables are sized by the window).
	window := zstd.MinWindowSize
	for int64(window) < r.opts.ChunkSize && window < zstd.MaxWindowSize {
		window <<= 1
	}
	enc, err := zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.EncoderLevelFromZstd(r.opts.Level)),
		zstd.WithEncoderConcurrency(1), zstd.WithEncoderCRC(false), zstd.WithWindowSize(window))
	if err != nil {
		return fmt.Errorf("backup %s: zstd encoder: %w", r.name(), err)
	}
	defer enc.Close()
	// Room for the largest chunk, its nonce and tag, so that compressing never grows the buffer.
	out := make([]byte, 0, enc.MaxEncodedSize(int(r.opts.ChunkSize))+nonceSize+tagSize)
	for job := range jobs {
		if err := ctx.Err(); err != nil {
			return err
		}
		sum := sha256.Sum256(job.data)
		sha := hex.EncodeToString(sum[:])
		size := int64(len(job.data))
		files[job.file].Chunks[job.chunk] = Chunk{Offset: job.offset, Size: size, SHA256: sha}
		if !r.claim(sha) {
			free <- job.buf
			r.advance(size)
			continue
		}
		out, err = r.seal(enc, job.data, sha, out)
		free <- job.buf
		if err != nil {
			return err
		}
		sc := storedChunk{SHA256: sha, Stored: int64(len(out)), StoredCRC32C: storedChecksum(out)}
		key := chunkKey(r.db, r.id, sha)
		if err := r.tgt.Put(ctx, key, bytes.NewReader(out), int64(len(out))); err != nil {
			return fmt.Errorf("backup %s: put %s: %w", r.name(), key, err)
		}
		if err := r.recordStored(ctx, sc); err != nil {
			return err
		}
		r.advance(size)
	}
	return nil
}

// claim reports whether this worker should store the chunk: not stored yet and not taken on by another worker. Equal
// chunks thus become one object, and with encryption exactly one sealing of it is ever described.
func (r *runner) claim(sha string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.stored[sha]; ok || r.claimed[sha] {
		return false
	}
	r.claimed[sha] = true
	return true
}

// seal compresses plain into dst's storage and, for an encrypted backup, seals it in place behind a random nonce.
func (r *runner) seal(enc *zstd.Encoder, plain []byte, sha string, dst []byte) ([]byte, error) {
	if r.aead == nil {
		return enc.EncodeAll(plain, dst[:0]), nil
	}
	var nonce [nonceSize]byte
	if _, err := rand.Read(nonce[:]); err != nil {
		return dst, fmt.Errorf("backup %s: nonce: %w", r.name(), err)
	}
	out := enc.EncodeAll(plain, append(dst[:0], nonce[:]...))
	out = slices.Grow(out, tagSize)
	sealed := r.aead.Seal(out[nonceSize:nonceSize], nonce[:], out[nonceSize:], chunkAAD(r.id, sha))
	return out[:nonceSize+len(sealed)], nil
}

// recordStored notes a stored chunk and writes progress.json every progressEvery chunks.
func (r *runner) recordStored(ctx context.Context, sc storedChunk) error {
	r.mu.Lock()
	r.stored[sc.SHA256] = sc
	r.prog.Chunks = append(r.prog.Chunks, sc)
	r.unsaved++
	save := r.unsaved >= progressEvery
	if save {
		r.unsaved = 0
	}
	r.mu.Unlock()
	if save {
		return r.saveProgress(ctx)
	}
	return nil
}

func (r *runner) advance(n int64) {
	r.doneMu.Lock()
	defer r.doneMu.Unlock()
	r.done += n
	if r.opts.Progress != nil {
		r.opts.Progress(r.done, r.total)
	}
}

// commit stores the manifest (after checking it decodes), then removes what the manifest does not need: chunk objects
// of an earlier source of a resumed backup, and progress.json.
func (r *runner) commit(ctx context.Context, m *Manifest) (*Manifest, error) {
	data, err := m.Marshal()
	if err != nil {
		return nil, err
	}
	if _, err := DecodeManifest(data); err != nil {
		return nil, fmt.Errorf("backup %s: the manifest built does not check, not storing it: %w", r.name(), err)
	}
	key := manifestKey(r.db, r.id)
	if err := r.tgt.Put(ctx, key, bytes.NewReader(data), int64(len(data))); err != nil {
		return nil, fmt.Errorf("backup %s: put %s: %w", r.name(), key, err)
	}
	keys, err := listKeys(ctx, r.tgt, chunkPrefix(r.db, r.id))
	if err != nil {
		return nil, fmt.Errorf("backup %s is stored, but cleaning up failed: %w", r.name(), err)
	}
	used := map[string]bool{}
	for _, f := range m.Files {
		for _, c := range f.Chunks {
			used[m.ChunkKey(c.SHA256)] = true
		}
	}
	keys = slices.DeleteFunc(keys, func(k string) bool { return used[k] })
	if err := r.tgt.Delete(ctx, append(keys, progressKey(r.db, r.id))...); err != nil {
		return nil, fmt.Errorf("backup %s is stored, but cleaning up failed: delete: %w", r.name(), err)
	}
	return m, nil
}
