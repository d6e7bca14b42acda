package plans

import (
	"bufio"
	"bytes"
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"
)

var eventTime = time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)

func TestJSONEvents(t *testing.T) {
	events := []Event{
		{Time: eventTime, Plan: "p1", Step: 1, Kind: "restore", Phase: PhaseChecks, Message: "2 pre-checks"},
		{Time: eventTime, Plan: "p1", Step: 1, Kind: "restore", Phase: PhaseProgress, Bytes: 512, Total: 1024},
		{Time: eventTime, Plan: "p1", Step: 1, Kind: "restore", Phase: PhaseDone, Message: "Restore",
			Estimate: Duration(2 * time.Second), Elapsed: Duration(1500 * time.Millisecond)},
	}
	var buf bytes.Buffer
	sink := JSONEvents(&buf)
	for _, e := range events {
		sink.Event(e)
	}
	lines := strings.Split(strings.TrimSuffix(buf.String(), "\n"), "\n")
	if len(lines) != len(events) {
		t.Fatalf("%d lines for %d events:\n%s", len(lines), len(events), buf.String())
	}
	for i, line := range lines {
		var got Event
		if err := json.Unmarshal([]byte(line), &got); err != nil {
			t.Fatalf("line %d: %v", i, err)
		}
		if !got.Time.Equal(events[i].Time) {
			t.Errorf("line %d time %v", i, got.Time)
		}
		got.Time = events[i].Time
		if !reflect.DeepEqual(got, events[i]) {
			t.Errorf("line %d: %+v, want %+v", i, got, events[i])
		}
	}
	if !strings.Contains(lines[2], `"elapsed":"1.5s"`) {
		t.Errorf("durations not written as text: %s", lines[2])
	}
}

func TestTextEvents(t *testing.T) {
	var buf bytes.Buffer
	sink := TextEvents(&buf)
	sink.Event(Event{Time: eventTime, Step: 2, Phase: PhaseRun, Message: "Copy orders to b"})
	for b := int64(0); b <= 100; b++ {
		sink.Event(Event{Time: eventTime, Step: 2, Phase: PhaseProgress, Bytes: b << 20, Total: 100 << 20})
	}
	sink.Event(Event{Time: eventTime, Step: 2, Phase: PhaseDone, Message: "Copy orders to b",
		Estimate: Duration(time.Minute), Elapsed: Duration(83*time.Second + 123456789)})
	for s := int64(0); s < 3; s++ { // unknown total: one line a second
		sink.Event(Event{Time: eventTime.Add(time.Duration(s) * time.Second), Step: 3, Phase: PhaseProgress, Bytes: s * 1000})
		sink.Event(Event{Time: eventTime.Add(time.Duration(s)*time.Second + time.Millisecond), Step: 3, Phase: PhaseProgress, Bytes: s*1000 + 1})
	}

	var lines []string
	sc := bufio.NewScanner(&buf)
	for sc.Scan() {
		lines = append(lines, sc.Text())
	}
	progress := 0
	for _, l := range lines {
		if strings.Contains(l, " progress ") && strings.Contains(l, "step 2 ") {
			progress++
		}
	}
	if progress != 11 { // 0%, 10%, ... 100%
		t.Errorf("%d progress lines for step 2, want 11:\n%s", progress, strings.Join(lines, "\n"))
	}
	for _, want := range []string{
		"10:00:00 step 2 run      Copy orders to b",
		"10:00:00 step 2 progress 50.0 MiB of 100.0 MiB (50%)",
		"10:00:00 step 2 done     Copy orders to b (took 1m23.123s, estimated 1m0s)",
		"10:00:01 step 3 progress 1000 B",
		"10:00:02 step 3 progress 2.0 KiB",
	} {
		if !containsLine(lines, want) {
			t.Errorf("no line %q in:\n%s", want, strings.Join(lines, "\n"))
		}
	}
	if containsLine(lines, "10:00:01 step 3 progress 1001 B") {
		t.Errorf("progress of unknown size written twice in a second")
	}
}

func containsLine(lines []string, want string) bool {
	for _, l := range lines {
		if l == want {
			return true
		}
	}
	return false
}

func TestProgressBar(t *testing.T) {
	var buf bytes.Buffer
	sink := ProgressBar(&buf)
	sink.Event(Event{Time: eventTime, Step: 2, Phase: PhaseRun, Message: "Copy orders to b"})
	for b := int64(0); b <= 10; b++ {
		sink.Event(Event{Step: 2, Phase: PhaseProgress, Bytes: b << 20, Total: 10 << 20})
	}
	sink.Event(Event{Time: eventTime, Step: 2, Phase: PhaseDone, Message: "Copy orders to b",
		Estimate: Duration(time.Minute), Elapsed: Duration(2 * time.Second)})
	sink.Event(Event{Step: 3, Phase: PhaseProgress, Bytes: 5 << 20})
	sink.Event(Event{Time: eventTime, Step: 3, Phase: PhaseFailed, Message: "b went away"})
	out := buf.String()

	for _, want := range []string{
		"10:00:00 step 2 run      Copy orders to b\n",
		"step 2 100% |",
		"(10/10 MiB",
		"\n10:00:00 step 2 done     Copy orders to b (took 2s, estimated 1m0s)\n",
		"step 3 (5.0 MiB",
		"\n10:00:00 step 3 failed   b went away\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%q", want, out)
		}
	}
}
