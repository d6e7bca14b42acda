package plans

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"syscall"
	"testing"
	"time"
)

// childDirEnv switches the test binary into the child of TestResumeAfterKill: it executes the plan in that directory.
const childDirEnv = "PLANS_TEST_KILL_CHILD_DIR"

func TestMain(m *testing.M) {
	if dir := os.Getenv(childDirEnv); dir != "" {
		os.Exit(killChild(dir))
	}
	os.Exit(m.Run())
}

func killPlan() *Plan {
	p := New("upgrade", "Upgrade members", nil)
	for _, title := range []string{"Stop the backup", "Install the new version on the backup", "Start the backup"} {
		p.Add(Step{Kind: "step", Title: title})
	}
	return p
}

// killChild executes the plan in dir; step 2 writes a marker file and then waits to be killed.
func killChild(dir string) int {
	data, err := os.ReadFile(filepath.Join(dir, "plan.json"))
	if err != nil {
		os.Stderr.WriteString(err.Error() + "\n")
		return 2
	}
	p, err := Decode(data)
	if err != nil {
		os.Stderr.WriteString(err.Error() + "\n")
		return 2
	}
	h := Handlers{"step": {Run: func(ctx context.Context, s *Step, _ Events) error {
		if s.N != 2 {
			return nil
		}
		if err := os.WriteFile(filepath.Join(dir, "step2.started"), nil, 0o644); err != nil {
			return err
		}
		// The parent kills the process here; the timeout only ends a child whose parent died first.
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(2 * time.Minute):
			return errors.New("not killed within two minutes")
		}
	}}}
	_, err = Execute(context.Background(), p, h, filepath.Join(dir, "plan.json.state"), TextEvents(os.Stderr))
	if err != nil {
		os.Stderr.WriteString(err.Error() + "\n")
	}
	return 3
}

// waitForFile waits until path exists, failing if the child exits first or nothing happens for a minute.
func waitForFile(tb testing.TB, path string, exited <-chan error, output *bytes.Buffer) {
	tb.Helper()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	timeout := time.After(time.Minute)
	for {
		if _, err := os.Stat(path); err == nil {
			return
		}
		select {
		case err := <-exited:
			tb.Fatalf("child exited before creating %s: %v\n%s", path, err, output)
		case <-timeout:
			tb.Fatalf("child did not create %s within a minute", path)
		case <-tick.C:
		}
	}
}

// TestResumeAfterKill kills a process executing a plan in the middle of step 2 and resumes the plan: step 1 is not run
// again, step 2 is, and the plan finishes.
func TestResumeAfterKill(t *testing.T) {
	dir := t.TempDir()
	p := killPlan()
	data, err := p.Encode()
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "plan.json"), data, 0o644); err != nil {
		t.Fatal(err)
	}

	var output bytes.Buffer
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), childDirEnv+"="+dir)
	cmd.Stdout, cmd.Stderr = &output, &output
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		cmd.Process.Kill()
	})

	waitForFile(t, filepath.Join(dir, "step2.started"), exited, &output)
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if err := <-exited; err == nil || err.Error() != "signal: killed" {
		t.Fatalf("child ended with %v, want killed\n%s", err, &output)
	}

	statePath := filepath.Join(dir, "plan.json.state")
	st, err := LoadState(statePath)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := statuses(st), []StepStatus{StatusDone, StatusRunning, StatusPending}; !slices.Equal(got, want) {
		t.Fatalf("state after kill %v, want %v", got, want)
	}

	runs := map[int]int{}
	h := Handlers{"step": {Run: func(_ context.Context, s *Step, _ Events) error {
		runs[s.N]++
		return nil
	}}}
	st, err = Execute(context.Background(), p, h, statePath, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !st.Finished || runs[1] != 0 || runs[2] != 1 || runs[3] != 1 {
		t.Fatalf("after resume: finished %v, runs %v; want step 1 not re-run, steps 2 and 3 once", st.Finished, runs)
	}
	if st.Steps[1].Attempts != 2 || st.Steps[0].Attempts != 1 {
		t.Errorf("attempts %d and %d, want 1 and 2", st.Steps[0].Attempts, st.Steps[1].Attempts)
	}
}
