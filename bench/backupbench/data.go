package main

import (
	"fmt"
	"math/rand/v2"
)

// The rows every system is given: row i has key KeyOf(i) and a ValueSize-byte value of words, the same bytes for the
// member and for PostgreSQL.
const (
	// ValueSize is well under the member's largest value (1 MiB) and large enough that PostgreSQL stores it out of line
	// (TOAST), as a database of documents would.
	ValueSize = 16 << 10
	// vocabularySize sets how compressible the values are: words drawn at random from 16384 make zstd -3 shrink them
	// about 2.6× (a vocabulary of 4096 gives 3×, of 65536 under 2×).
	vocabularySize = 16384
	keyFormat      = "k%010d"
	keyLen         = 11
	// The generator's fixed seeds: a run on another machine loads the same bytes.
	vocabularySeed1, vocabularySeed2 = 0x6d6972726f726b69, 0x74626163b0b0b0b0
	rowSeed                          = 0x9e3779b97f4a7c15
)

// RowSize is the logical size of one row: its key and its value.
const RowSize = keyLen + ValueSize

// Generator makes the rows. It is safe for concurrent use: Value draws from a generator of its own.
type Generator struct {
	vocabulary [][]byte
}

// NewGenerator makes the vocabulary: lowercase words of 2 to 11 letters.
func NewGenerator() *Generator {
	r := rand.New(rand.NewPCG(vocabularySeed1, vocabularySeed2))
	g := &Generator{vocabulary: make([][]byte, vocabularySize)}
	for i := range g.vocabulary {
		w := make([]byte, 2+r.IntN(10))
		for j := range w {
			w[j] = byte('a' + r.IntN(26))
		}
		g.vocabulary[i] = w
	}
	return g
}

// KeyOf is row i's key: fixed width, so keys sort as rows do and every key has keyLen bytes.
func KeyOf(i int64) string { return fmt.Sprintf(keyFormat, i) }

// AppendValue appends row i's value (ValueSize bytes of space-separated words) to dst.
func (g *Generator) AppendValue(dst []byte, i int64) []byte {
	r := rand.New(rand.NewPCG(uint64(i), rowSeed))
	end := len(dst) + ValueSize
	for len(dst) < end {
		dst = append(dst, g.vocabulary[r.IntN(len(g.vocabulary))]...)
		dst = append(dst, ' ')
	}
	return dst[:end]
}

// RowsFor is the number of rows whose logical size reaches gib GiB.
func RowsFor(gib float64) (int64, error) {
	if !(gib > 0) || gib > 1024 {
		return 0, fmt.Errorf("size %v GiB: want more than 0 and at most 1024", gib)
	}
	bytes := gib * (1 << 30)
	rows := int64(bytes / RowSize)
	if float64(rows)*RowSize < bytes {
		rows++
	}
	return rows, nil
}
