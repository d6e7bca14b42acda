package backup

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/mirrorkit/mirrorkit/engine/journal"
)

func sha(c byte) string { return strings.Repeat(string([]byte{c}), 64) }

// sampleManifest is a small valid manifest: two files, one of them empty, a chunk shared by both ends.
func sampleManifest(encrypted bool) *Manifest {
	m := &Manifest{
		Version: ManifestVersion, ID: "20261126T173000Z-4f2a", Database: "ORDERS", Mirror: "MIR", Member: "m1",
		Created: time.Date(2026, 11, 26, 17, 30, 0, 0, time.UTC), Finished: time.Date(2026, 11, 26, 17, 31, 0, 0, time.UTC),
		Position: journal.Position{Epoch: 3, Segment: 42, Offset: 1837264}, DatabaseFormat: 1, ToolVersion: "1.2.3",
		Compression: Compression{Algorithm: CompressionZstd, Level: 3}, ChunkSize: 4096,
		Files: []File{
			{Name: "000005.sst", Size: 5000, SHA256: sha('1'), Chunks: []Chunk{
				{Offset: 0, Size: 4096, SHA256: sha('a'), Stored: 100, StoredCRC32C: "0000000b"},
				{Offset: 4096, Size: 904, SHA256: sha('c'), Stored: 50, StoredCRC32C: "0000000d"},
			}},
			{Name: "sub/MANIFEST-000001", Size: 904, SHA256: sha('2'), Chunks: []Chunk{
				{Offset: 0, Size: 904, SHA256: sha('c'), Stored: 50, StoredCRC32C: "0000000d"},
			}},
			{Name: "LOCK", Size: 0, SHA256: sha('e'), Chunks: []Chunk{}},
		},
		LogicalHash: LogicalHash{Nodes: 12, SHA256: sha('f')},
		Bytes:       5904, StoredBytes: 150,
	}
	if encrypted {
		m.Encryption = &Encryption{Algorithm: EncryptionAESGCM, KeyID: "0123456789abcdef", WrappedKey: bytes.Repeat([]byte{9}, wrappedKeyLen)}
	}
	return m
}

func marshal(tb testing.TB, m *Manifest) []byte {
	tb.Helper()
	data, err := m.Marshal()
	if err != nil {
		tb.Fatal(err)
	}
	return data
}

func TestDecodeManifest(t *testing.T) {
	for _, enc := range []bool{false, true} {
		m := sampleManifest(enc)
		got, err := DecodeManifest(marshal(t, m))
		if err != nil {
			t.Fatal(err)
		}
		if a, b := marshal(t, got), marshal(t, m); !bytes.Equal(a, b) {
			t.Fatalf("round trip changed the manifest:\n%s\n%s", a, b)
		}
	}

	// Each edit keeps a valid checksum, so only the content checks can refuse it.
	resealed := []struct {
		name, want string
		edit       func(m *Manifest)
	}{
		{"newer version", "version 2, this tool reads up to version 1", func(m *Manifest) { m.Version = 2 }},
		{"version zero", "version 0", func(m *Manifest) { m.Version = 0 }},
		{"gap between chunks", "does not continue", func(m *Manifest) { m.Files[0].Chunks[1].Offset = 4097 }},
		{"chunks short of the size", "cover 4096 bytes of 5000", func(m *Manifest) { m.Files[0].Chunks = m.Files[0].Chunks[:1] }},
		{"chunk above chunk size", "does not continue", func(m *Manifest) { m.ChunkSize = 2048 }},
		{"empty chunk", "does not continue", func(m *Manifest) { m.Files[0].Chunks[1].Size = 0 }},
		{"parent escape", "not a relative slash path", func(m *Manifest) { m.Files[2].Name = "../LOCK" }},
		{"absolute name", "not a relative slash path", func(m *Manifest) { m.Files[2].Name = "/etc/passwd" }},
		{"backslash name", "not a relative slash path", func(m *Manifest) { m.Files[2].Name = `a\b` }},
		{"file inside a file", "also a file", func(m *Manifest) { m.Files[2].Name = "000005.sst/x" }},
		{"bad file checksum", "bad size", func(m *Manifest) { m.Files[1].SHA256 = "ABC" }},
		{"shared chunk described twice", "described twice", func(m *Manifest) { m.Files[1].Chunks[0].Stored = 51 }},
		{"totals", "totals", func(m *Manifest) { m.Bytes++ }},
		{"stored totals", "totals", func(m *Manifest) { m.StoredBytes = 200 }},
		{"bad id", "backup id", func(m *Manifest) { m.ID = "x/../y" }},
		{"lower-case database", "canonical", func(m *Manifest) { m.Database = "orders" }},
		{"compression", "compression", func(m *Manifest) { m.Compression.Algorithm = "gzip" }},
		{"encryption", "encryption", func(m *Manifest) {
			m.Encryption = &Encryption{Algorithm: "ROT13", KeyID: "0123456789abcdef", WrappedKey: make([]byte, wrappedKeyLen)}
		}},
		{"no files", "no files", func(m *Manifest) { m.Files = nil; m.Bytes, m.StoredBytes = 0, 0 }},
		{"no logical hash", "logical hash", func(m *Manifest) { m.LogicalHash.SHA256 = "" }},
	}
	for _, tc := range resealed {
		t.Run(tc.name, func(t *testing.T) {
			m := sampleManifest(false)
			tc.edit(m)
			_, err := DecodeManifest(marshal(t, m))
			if !errors.Is(err, ErrManifestInvalid) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("DecodeManifest: %v, want %q", err, tc.want)
			}
		})
	}

	good := marshal(t, sampleManifest(false))
	raw := []struct {
		name, want string
		data       []byte
		sentinel   error
	}{
		{"edited value", "manifest of backup 20261126T173000Z-4f2a: checksum mismatch: it is damaged or was edited; do not restore it",
			bytes.Replace(good, []byte(`"size": 5000`), []byte(`"size": 5001`), 1), ErrManifestTampered},
		{"edited position", "checksum mismatch", bytes.Replace(good, []byte(`3:000042:1837264`), []byte(`3:000042:1837265`), 1), ErrManifestTampered},
		{"unknown field", "unknown field", bytes.Replace(good, []byte(`"version": 1,`), []byte(`"version": 1, "extra": true,`), 1), ErrManifestInvalid},
		{"truncated", "malformed", good[:len(good)/2], ErrManifestInvalid},
		{"trailing data", "malformed", append(bytes.Clone(good), []byte(`{}`)...), ErrManifestInvalid},
		{"not json", "malformed", []byte("manifest"), ErrManifestInvalid},
	}
	for _, tc := range raw {
		t.Run(tc.name, func(t *testing.T) {
			_, err := DecodeManifest(tc.data)
			if !errors.Is(err, tc.sentinel) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("DecodeManifest: %v, want %q", err, tc.want)
			}
		})
	}
}

func TestIDs(t *testing.T) {
	now := time.Date(2026, 11, 26, 17, 30, 0, 0, time.FixedZone("X", 3600))
	id, err := newID(now)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(id, "20261126T163000Z-") || checkID(id) != nil {
		t.Fatalf("newID = %q", id)
	}
	if got, _ := idTime(id); !got.Equal(now) {
		t.Fatalf("idTime(%s) = %s", id, got)
	}
	for _, bad := range []string{"", "20261126T163000Z", "20261126T163000Z-", "20261126T163000Z-4F2A", "20261126T163000Z-4f2a/x", "2026-11-26-4f2a", "../x"} {
		if checkID(bad) == nil {
			t.Errorf("checkID(%q) accepted", bad)
		}
	}
}

func FuzzDecodeManifest(f *testing.F) {
	f.Add(marshal(f, sampleManifest(false)))
	f.Add(marshal(f, sampleManifest(true)))
	compact, _ := json.Marshal(sampleManifest(false))
	f.Add(compact)
	f.Add([]byte(`{"version":1}`))
	f.Add([]byte(`{"version":99,"id":"x"}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		checkDecoded(t, data)
		// Most inputs fail the checksum; resealing them lets the content checks see them too.
		var m Manifest
		if json.Unmarshal(data, &m) == nil {
			if resealed, err := m.Marshal(); err == nil {
				checkDecoded(t, resealed)
			}
		}
	})
}

// checkDecoded decodes data and, if it is accepted, checks that it is consistent and re-encodes stably.
func checkDecoded(t *testing.T, data []byte) {
	m, err := DecodeManifest(data)
	if err != nil {
		if m != nil {
			t.Fatal("manifest returned with an error")
		}
		return
	}
	for _, file := range m.Files {
		var next int64
		for _, c := range file.Chunks {
			if c.Offset != next || c.Size < 1 || c.Size > m.ChunkSize {
				t.Fatalf("file %s: bad chunk %+v", file.Name, c)
			}
			next += c.Size
		}
		if next != file.Size || CheckFileName(file.Name) != nil {
			t.Fatalf("file %s accepted", file.Name)
		}
	}
	again, err := m.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	m2, err := DecodeManifest(again)
	if err != nil {
		t.Fatalf("re-encoded manifest does not decode: %v", err)
	}
	if third := marshal(t, m2); !bytes.Equal(third, again) {
		t.Fatal("re-encoding is not stable")
	}
}

func FuzzDecodeProgress(f *testing.F) {
	p := progress{Version: progressVersion, ID: "20261126T173000Z-4f2a", Database: "ORDERS", Started: time.Unix(0, 0).UTC(), Level: 3,
		ChunkSize: 4096, Chunks: []storedChunk{{SHA256: sha('a'), Stored: 10, StoredCRC32C: "0000000b"}}}
	seed, _ := json.Marshal(p)
	f.Add(seed)
	p.Encryption = sampleManifest(true).Encryption
	seed, _ = json.Marshal(p)
	f.Add(seed)
	f.Add([]byte(`{"version":2}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := decodeProgress(data)
		if err != nil {
			return
		}
		again, err := json.Marshal(p)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := decodeProgress(again); err != nil {
			t.Fatalf("re-encoded progress does not decode: %v", err)
		}
	})
}
