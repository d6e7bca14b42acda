package main

import (
	"bufio"
	"bytes"
	"math"
	"strings"
	"testing"

	"github.com/klauspost/compress/zstd"
)

func TestValueIsDeterministicTextOfValueSize(t *testing.T) {
	a, b := NewGenerator(), NewGenerator()
	v0 := a.AppendValue(nil, 0)
	if len(v0) != ValueSize {
		t.Fatalf("value of %d bytes, want %d", len(v0), ValueSize)
	}
	if again := b.AppendValue(nil, 0); !bytes.Equal(v0, again) {
		t.Fatal("row 0's value differs between two generators")
	}
	if v1 := a.AppendValue(nil, 1); bytes.Equal(v0, v1) {
		t.Fatal("rows 0 and 1 have the same value")
	}
	for i, c := range v0 {
		if c != ' ' && (c < 'a' || c > 'z') {
			t.Fatalf("byte %d is %q: values must hold only letters and spaces (COPY text needs no escaping)", i, c)
		}
	}
	prefixed := a.AppendValue([]byte("head"), 0)
	if string(prefixed[:4]) != "head" || !bytes.Equal(prefixed[4:], v0) {
		t.Fatal("AppendValue does not append to dst")
	}
}

// The values must compress like moderately compressible data: about 2 to 3 times with zstd at level 3.
func TestValueCompressibility(t *testing.T) {
	g := NewGenerator()
	var plain []byte
	for i := range int64(64) {
		plain = g.AppendValue(plain, i*1000)
	}
	enc, err := zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedDefault))
	if err != nil {
		t.Fatal(err)
	}
	defer enc.Close()
	ratio := float64(len(plain)) / float64(len(enc.EncodeAll(plain, nil)))
	if ratio < 2 || ratio > 3.2 {
		t.Fatalf("zstd -3 ratio %.2f, want 2 to 3.2", ratio)
	}
}

func TestRowsFor(t *testing.T) {
	tests := []struct {
		gib     float64
		want    int64
		wantErr bool
	}{
		{gib: 1, want: (1<<30 + RowSize - 1) / RowSize},
		{gib: 2, want: (2<<30 + RowSize - 1) / RowSize},
		{gib: 1e-9, want: 1},
		{gib: float64(RowSize) / (1 << 30), want: 1},
		{gib: 0, wantErr: true},
		{gib: -1, wantErr: true},
		{gib: math.NaN(), wantErr: true},
		{gib: math.Inf(1), wantErr: true},
		{gib: 2000, wantErr: true},
	}
	for _, tt := range tests {
		got, err := RowsFor(tt.gib)
		if (err != nil) != tt.wantErr || got != tt.want {
			t.Errorf("RowsFor(%v) = %d, %v; want %d, error %v", tt.gib, got, err, tt.want, tt.wantErr)
		}
		if err == nil && float64(got)*RowSize < tt.gib*(1<<30) {
			t.Errorf("RowsFor(%v) = %d rows: %d bytes, short of the size", tt.gib, got, got*RowSize)
		}
	}
}

func TestKeyOfHasFixedWidth(t *testing.T) {
	for _, i := range []int64{0, 7, 123456, 9999999999} {
		if k := KeyOf(i); len(k) != keyLen {
			t.Errorf("KeyOf(%d) = %q: %d bytes, want %d", i, k, len(k), keyLen)
		}
	}
	if KeyOf(9) >= KeyOf(10) {
		t.Error("keys do not sort as their rows")
	}
}

func TestWriteCopyRowsMatchesTheLoadedRows(t *testing.T) {
	var buf bytes.Buffer
	if err := writeCopyRows(&buf, 3); err != nil {
		t.Fatal(err)
	}
	g := NewGenerator()
	sc := bufio.NewScanner(&buf)
	sc.Buffer(nil, 2*RowSize)
	var n int64
	for ; sc.Scan(); n++ {
		key, value, ok := strings.Cut(sc.Text(), "\t")
		if !ok || key != KeyOf(n) || value != string(g.AppendValue(nil, n)) {
			t.Fatalf("line %d is not key TAB value of row %d", n+1, n)
		}
	}
	if sc.Err() != nil || n != 3 {
		t.Fatalf("%d lines (%v), want 3", n, sc.Err())
	}
}
