package backup

// The tests of package backup_test check results against these internals. They are external tests because they use
// backuptest, which imports this package.

var (
	NewID        = newID
	BackupPrefix = backupPrefix
	ManifestKey  = manifestKey
	ProgressKey  = progressKey
	ChunkPrefix  = chunkPrefix
	ChunkKey     = chunkKey
	LoadProgress = loadProgress
	GetAll       = getAll
)

const WrappedKeyLen = wrappedKeyLen

// ChunkRef is one distinct chunk object of a backup and the first file that uses it.
type ChunkRef struct {
	File  *File
	Chunk *Chunk
}

// DistinctChunks lists each chunk object of m once, in the order the verifier checks them.
func DistinctChunks(m *Manifest) []ChunkRef {
	refs := distinctChunks(m)
	out := make([]ChunkRef, len(refs))
	for i, r := range refs {
		out[i] = ChunkRef{File: r.file, Chunk: r.chunk}
	}
	return out
}
