package server

import "testing"

func TestParseRange(t *testing.T) {
	for _, tc := range []struct {
		header      string
		size        int64
		first, last int64
		ok          bool
	}{
		{"", 100, 0, 99, true},
		{"", 0, 0, 0, false},
		{"bytes=0-9", 100, 0, 9, true},
		{"bytes=10-", 100, 10, 99, true},
		{"bytes=90-200", 100, 90, 99, true},
		{"bytes=100-", 100, 0, 0, false},
		{"bytes=-10", 100, 0, 0, false},
		{"bytes=5-2", 100, 0, 0, false},
		{"bytes=0-1,4-5", 100, 0, 0, false},
		{"items=0-1", 100, 0, 0, false},
		{"bytes=x-1", 100, 0, 0, false},
	} {
		first, last, ok := parseRange(tc.header, tc.size)
		if ok != tc.ok || ok && (first != tc.first || last != tc.last) {
			t.Errorf("parseRange(%q, %d) = %d, %d, %v; want %d, %d, %v", tc.header, tc.size, first, last, ok, tc.first, tc.last, tc.ok)
		}
	}
}
