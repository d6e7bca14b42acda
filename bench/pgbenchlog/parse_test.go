package main

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"
)

const sampleReport = `pgbench (15.18 (Debian 15.18-0+deb12u1))
transaction type: upsert.sql
scaling factor: 1
query mode: prepared
number of clients: 16
number of threads: 2
maximum number of tries: 1
duration: 3 s
number of transactions actually processed: 12708
number of failed transactions: 0 (0.000%)
latency average = 3.612 ms
initial connection time = 206.598 ms
tps = 4429.217219 (without initial connection time)
`

func TestParseReport(t *testing.T) {
	tests := []struct {
		name    string
		text    string
		want    report
		wantErr error
		anyErr  bool
	}{
		{name: "pgbench 15", text: sampleReport, want: report{processed: 12708, tps: 4429.217219}},
		{name: "failed transactions", text: strings.Replace(sampleReport, "failed transactions: 0 ", "failed transactions: 3 ", 1),
			wantErr: ErrFailedTransactions, anyErr: true},
		{name: "no tps line", text: strings.Replace(sampleReport, "tps =", "tps:", 1), anyErr: true},
		{name: "no processed line", text: "tps = 1.0 (without initial connection time)\n", anyErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseReport(strings.NewReader(tt.text))
			if (err != nil) != tt.anyErr {
				t.Fatalf("parseReport error = %v, want error %v", err, tt.anyErr)
			}
			if tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
				t.Fatalf("parseReport error = %v, want %v", err, tt.wantErr)
			}
			if got != tt.want {
				t.Fatalf("parseReport = %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestReadLog(t *testing.T) {
	tests := []struct {
		name    string
		text    string
		want    []time.Duration
		wantErr bool
	}{
		{name: "plain", text: "0 1 52479 0 1795695934 899033\n1 1 1500 0 1795695934 899067\n",
			want: []time.Duration{52479 * time.Microsecond, 1500 * time.Microsecond}},
		{name: "with schedule lag", text: "0 1 800 0 1795695934 899033 12\n", want: []time.Duration{800 * time.Microsecond}},
		{name: "empty", text: ""},
		{name: "failed transaction", text: "0 1 failed 0 1795695934 899033\n", wantErr: true},
		{name: "short line", text: "0 1 800\n", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := readLog(strings.NewReader(tt.text), nil)
			if (err != nil) != tt.wantErr {
				t.Fatalf("readLog error = %v, want error %v", err, tt.wantErr)
			}
			if !slices.Equal(got, tt.want) {
				t.Fatalf("readLog = %v, want %v", got, tt.want)
			}
		})
	}
}
