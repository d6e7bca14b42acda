package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// ErrFailedTransactions is returned when pgbench reports failed transactions: their latencies are not commit latencies.
var ErrFailedTransactions = errors.New("pgbench reported failed transactions")

// report is what is taken from pgbench's closing report.
type report struct {
	processed int
	tps       float64
}

var (
	processedRE = regexp.MustCompile(`(?m)^number of transactions actually processed: (\d+)`)
	failedRE    = regexp.MustCompile(`(?m)^number of failed transactions: (\d+)`)
	tpsRE       = regexp.MustCompile(`(?m)^tps = ([0-9.]+) \(without initial connection time\)`)
)

func parseReport(r io.Reader) (report, error) {
	b, err := io.ReadAll(r)
	if err != nil {
		return report{}, fmt.Errorf("read: %w", err)
	}
	text := string(b)
	if m := failedRE.FindStringSubmatch(text); m != nil && m[1] != "0" {
		return report{}, fmt.Errorf("%s of them: %w", m[1], ErrFailedTransactions)
	}
	var rep report
	m := processedRE.FindStringSubmatch(text)
	if m == nil {
		return report{}, errors.New(`no "number of transactions actually processed" line`)
	}
	if rep.processed, err = strconv.Atoi(m[1]); err != nil {
		return report{}, fmt.Errorf("transactions processed %q: %w", m[1], err)
	}
	m = tpsRE.FindStringSubmatch(text)
	if m == nil {
		return report{}, errors.New(`no "tps = … (without initial connection time)" line`)
	}
	if rep.tps, err = strconv.ParseFloat(m[1], 64); err != nil {
		return report{}, fmt.Errorf("tps %q: %w", m[1], err)
	}
	if rep.tps <= 0 {
		return report{}, fmt.Errorf("tps %v is not positive", rep.tps)
	}
	return rep, nil
}

func readLogFile(name string, samples []time.Duration) ([]time.Duration, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, fmt.Errorf("open pgbench log: %w", err)
	}
	samples, err = readLog(f, samples)
	if closeErr := f.Close(); err == nil && closeErr != nil {
		err = closeErr
	}
	if err != nil {
		return nil, fmt.Errorf("pgbench log %s: %w", name, err)
	}
	return samples, nil
}

// readLog appends the latencies of a pgbench per-transaction log, whose lines are
// "client_id transaction_no time script_no time_epoch time_us [schedule_lag]" with time, the latency, in microseconds.
func readLog(r io.Reader, samples []time.Duration) ([]time.Duration, error) {
	sc := bufio.NewScanner(r)
	for line := 1; sc.Scan(); line++ {
		fields := strings.Fields(sc.Text())
		if len(fields) < 6 {
			return nil, fmt.Errorf("line %d: %d fields, want at least 6: %q", line, len(fields), sc.Text())
		}
		us, err := strconv.ParseInt(fields[2], 10, 64)
		if err != nil {
			// "failed" or "skipped" in place of a latency: the run did not measure what we compare.
			return nil, fmt.Errorf("line %d: latency %q: %w", line, fields[2], err)
		}
		samples = append(samples, time.Duration(us)*time.Microsecond)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read: %w", err)
	}
	return samples, nil
}
