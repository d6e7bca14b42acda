package facts

import (
	"slices"
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	tests := []struct {
		raw     []string
		want    []Fact
		wantErr bool
	}{
		{raw: []string{"CPUs=2", "Kernel=6.1 x=y"}, want: []Fact{{"CPUs", "2"}, {"Kernel", "6.1 x=y"}}},
		{raw: []string{"CPU=x=y", "Go=go1"}, want: []Fact{{"CPU", "x=y"}, {"Go", "go1"}}},
		{raw: []string{"no separator"}, wantErr: true},
		{raw: []string{"novalue"}, wantErr: true},
		{raw: []string{"=value"}, wantErr: true},
		{raw: []string{"=x"}, wantErr: true},
	}
	for _, tt := range tests {
		got, err := Parse(tt.raw)
		if (err != nil) != tt.wantErr {
			t.Fatalf("Parse(%q) error = %v, want error %v", tt.raw, err, tt.wantErr)
		}
		if !slices.Equal(got, tt.want) {
			t.Fatalf("Parse(%q) = %v, want %v", tt.raw, got, tt.want)
		}
	}
}

func TestWriteRows(t *testing.T) {
	var b strings.Builder
	WriteRows(&b, []Fact{{"CPU", "two cores"}, {"a|b", "c"}})
	if want := "| CPU | two cores |\n| a\\|b | c |\n"; b.String() != want {
		t.Fatalf("WriteRows = %q, want %q", b.String(), want)
	}
}
