// Package backup stores a consistent snapshot of a database — a Pebble checkpoint and the journal position it reflects — in
// a staging target (a directory or an S3 prefix, see Target) and manages what is stored there: listing, pruning and checking.
//
// Layout under the target, per backup:
//
//	<DB>/<ID>/chunks/<sha256>   one object per distinct plaintext chunk: zstd-compressed, optionally AES-256-GCM sealed
//	<DB>/<ID>/progress.json     resume state while the backup runs; removed once the manifest is stored
//	<DB>/<ID>/manifest.json     the commit point, written last: a backup without it is incomplete
//
// IDs are a UTC time and a random suffix (20261126T173000Z-4f2a), so they sort by start time.
//
// Pipeline. One sequential reader per file cuts it into chunks (and computes the file's SHA-256) and hands them to a pool of
// workers that hash, compress, seal and upload them. Chunk buffers come from a fixed pool, so memory stays near
// ChunkSize × (Parallel + 2) for the plaintext plus one compressed buffer per worker. The source's logical hash is computed
// while the upload runs.
//
// Encryption. A key file holds a 256-bit key; each backup gets a random data key, stored in the manifest wrapped under the
// key file's key with the backup ID as associated data. Each chunk is nonce || GCM-seal(compressed chunk) with the backup ID
// and the chunk's plaintext SHA-256 as associated data, so a chunk cannot be swapped for another. A missing or wrong key is
// detected before anything is written.
//
// Reading a backup back (package restore) goes through ChunkReader, which checks every chunk's stored checksum, tag,
// decompressed size and plaintext checksum. The package does not write database directories.
package backup
