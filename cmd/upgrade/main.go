// Command upgrade upgrades the members of a mirror to a new member binary: `plan` shows, changing nothing, the order of
// every step with its live pre-checks, the expected pause and the point of no return; `apply` performs it (resuming after
// any interruption); `status` shows its progress with estimated and actual step times; `rollback` undoes it before
// finalize; `finalize` switches the mirror to the new format level once every member runs it.
package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/mattn/go-isatty"

	"github.com/mirrorkit/mirrorkit/engine/mirror"
	"github.com/mirrorkit/mirrorkit/engine/wire"
	"github.com/mirrorkit/mirrorkit/internal/atomicfile"
	"github.com/mirrorkit/mirrorkit/internal/cli"
	"github.com/mirrorkit/mirrorkit/internal/mirrorctl"
	"github.com/mirrorkit/mirrorkit/plans"
	"github.com/mirrorkit/mirrorkit/rolling"
)

type commands struct {
	Plan     planCmd     `cmd:"" help:"Show the upgrade plan for a mirror with the live result of every pre-check; changes nothing. -o writes it for apply."`
	Apply    applyCmd    `cmd:"" help:"Perform an upgrade plan; re-running it resumes where it stopped."`
	Status   statusCmd   `cmd:"" help:"Show an upgrade plan's progress, with estimated and actual step times."`
	Rollback rollbackCmd `cmd:"" help:"Undo an upgrade plan in reverse (previous binaries back, fail back) — only before finalize."`
	Finalize finalizeCmd `cmd:"" help:"Switch the mirror to the new format level for good, once every member runs it (no rollback after)."`
}

func main() {
	cli.Main("upgrade", "mirrorkit upgrade: rolling upgrades of a mirror with planned failover, resumable and reversible until finalize.", &commands{})
}

// connFlags say how to reach members and their agents.
type connFlags struct {
	Timeout    time.Duration     `default:"30s" help:"How long to wait for a member's or agent's answer."`
	TLSCert    string            `name:"tls-cert" env:"MIRRORKIT_TLS_CERT" type:"path" help:"Client certificate, for members that require TLS."`
	TLSKey     string            `name:"tls-key" env:"MIRRORKIT_TLS_KEY" type:"path" help:"Client certificate key."`
	TLSCA      string            `name:"tls-ca" env:"MIRRORKIT_TLS_CA" type:"path" help:"CA bundle that signs the members' certificates."`
	AgentToken string            `env:"MIRRORKIT_AGENT_TOKEN" help:"The token the members' host agents require."`
	Agent      map[string]string `help:"Host agent of a member, NAME=host:port (default: the address the member registered in the mirror)."`
	Wait       time.Duration     `default:"10m" help:"How long a step waits for a member to come back, catch up or take over."`
	JSON       bool              `name:"json" help:"Print JSON: the plan and results as objects, progress as one JSON event per line."`
}

func (c *connFlags) tlsConfig() (*tls.Config, error) {
	if c.TLSCert == "" && c.TLSKey == "" && c.TLSCA == "" {
		return nil, nil
	}
	files := wire.TLSFiles{Cert: c.TLSCert, Key: c.TLSKey, CA: c.TLSCA}
	if err := files.Validate(); err != nil {
		return nil, cli.UsageError{Err: fmt.Errorf("tls: %w", err)}
	}
	return files.ClientConfig()
}

func (c *connFlags) options() (rolling.Options, error) {
	tlsConf, err := c.tlsConfig()
	if err != nil {
		return rolling.Options{}, err
	}
	return rolling.Options{Agents: c.Agent, AgentToken: c.AgentToken, AgentTLS: tlsConf, Wait: c.Wait,
		Ctl: mirrorctl.Options{TLS: tlsConf, Timeout: c.Timeout, Name: "upgrade"}}, nil
}

func (c *connFlags) events() plans.Events {
	switch {
	case c.JSON:
		return plans.JSONEvents(os.Stdout)
	case isatty.IsTerminal(os.Stderr.Fd()):
		return plans.ProgressBar(os.Stderr)
	}
	return plans.TextEvents(os.Stderr)
}

func (c *connFlags) render(p *plans.Plan, st *plans.State, dry []plans.StepReport) error {
	if c.JSON {
		return plans.RenderJSON(os.Stdout, p, st, dry)
	}
	return plans.RenderText(os.Stdout, p, st, dry)
}

// signalContext is cancelled by SIGINT or SIGTERM: the step under way stops and the progress so far is kept.
func signalContext() (context.Context, context.CancelFunc) {
	return signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
}

type planCmd struct {
	connFlags
	Mirror      []string `required:"" env:"MIRRORKIT_MEMBER" help:"Data address host:port of a member of the mirror (repeat or comma-separate to give several)."`
	MirrorName  string   `help:"The mirror's name, when the member belongs to several."`
	ToBinary    string   `required:"" name:"to-binary" help:"The member binary to upgrade to: a path, file:///path or s3://bucket/prefix/object (S3 endpoint and keys from the AWS/MinIO environment variables)."`
	Procedure   string   `enum:",maintenance,major,major-db-change,planned-downtime" default:"" help:"Force a procedure: maintenance, major, major-db-change or planned-downtime (default: chosen from the versions)."`
	DBChangeCmd string   `name:"db-change-cmd" help:"Command (sh -c) that applies application database changes on the new primary; MIRRORKIT_PRIMARY_ADDR and MIRRORKIT_PRIMARY_ADMIN name it. It must be safe to run again."`
	Failback    bool     `help:"Hand the primary role back to the original primary at the end."`
	Output      string   `short:"o" type:"path" help:"Write the plan to this file, for upgrade apply."`
}

func (c *planCmd) Run() error {
	ctx, cancel := signalContext()
	defer cancel()
	o, err := c.options()
	if err != nil {
		return err
	}
	source := c.ToBinary
	if !strings.Contains(source, "://") {
		// A path on this host: the agents need it absolute.
		if source, err = filepath.Abs(source); err != nil {
			return err
		}
	}
	target, err := rolling.Inspect(ctx, source)
	if err != nil {
		return err
	}
	o.Mirror, o.MirrorName, o.Target, o.Procedure, o.DBChangeCmd, o.Failback = c.Mirror, c.MirrorName, target, c.Procedure, c.DBChangeCmd, c.Failback
	p, err := rolling.Build(ctx, o)
	if err != nil {
		return err
	}
	env, err := rolling.NewEnv(p, o)
	if err != nil {
		return err
	}
	env.DryRun = true
	dry, err := plans.DryRun(ctx, p, rolling.Handlers(env))
	if err != nil {
		return err
	}
	if err := c.render(p, nil, dry); err != nil {
		return err
	}
	if c.Output != "" {
		data, err := p.Encode()
		if err != nil {
			return err
		}
		if err := replaceablePlan(c.Output); err != nil {
			return err
		}
		if err := atomicfile.Write(c.Output, data, 0o644); err != nil {
			return fmt.Errorf("write the plan: %w", err)
		}
	}
	failing := 0
	for _, r := range dry {
		if !r.OK() {
			failing++
		}
	}
	if failing > 0 {
		return fmt.Errorf("%d step(s) have failing pre-checks (nothing was changed)", failing)
	}
	if !c.JSON {
		if c.Output != "" {
			fmt.Printf("every pre-check passes; nothing was changed. Run it with: upgrade apply %s\n", c.Output)
		} else {
			fmt.Println("every pre-check passes; nothing was changed (write the plan with -o FILE to apply it)")
		}
	}
	return nil
}

// replaceablePlan removes the progress of the plan at path, if any, so that a new plan can be written there: refused while
// that plan was applied only in part (finish it or roll it back first, or write the new plan elsewhere).
func replaceablePlan(path string) error {
	pf := planFile{File: path}
	st, err := pf.state()
	if err != nil {
		return err
	}
	if st == nil {
		return nil
	}
	applied := 0
	for _, s := range st.Steps {
		if s.Status == plans.StatusDone || s.Status == plans.StatusRunning || s.Status == plans.StatusFailed {
			applied++
		}
	}
	if !st.Finished && applied > 0 {
		return fmt.Errorf("%s holds plan %s, applied in part (%d steps): finish it with `upgrade apply %s` or undo it with `upgrade rollback %s`, or write the new plan to another file",
			path, st.PlanID, applied, path, path)
	}
	return os.Remove(pf.statePath())
}

// planFile is a plan given on the command line and its progress file next to it.
type planFile struct {
	File string `arg:"" type:"existingfile" help:"The plan written by upgrade plan -o."`
}

func (f *planFile) load(o rolling.Options) (*plans.Plan, *rolling.Env, error) {
	data, err := os.ReadFile(f.File)
	if err != nil {
		return nil, nil, err
	}
	p, err := plans.Decode(data)
	if err != nil {
		return nil, nil, fmt.Errorf("plan file %s: %w", f.File, err)
	}
	env, err := rolling.NewEnv(p, o)
	if err != nil {
		return nil, nil, fmt.Errorf("plan file %s: %w", f.File, err)
	}
	return p, env, nil
}

func (f *planFile) statePath() string { return f.File + ".state" }

// state is the plan's progress (nil before the first apply); a progress file that exists but cannot be read is an error.
func (f *planFile) state() (*plans.State, error) {
	st, err := plans.LoadState(f.statePath())
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("progress of plan %s: %w", f.File, err)
	}
	return st, nil
}

// stateFor is the progress of plan p, checked to belong to it.
func (f *planFile) stateFor(p *plans.Plan) (*plans.State, error) {
	st, err := f.state()
	if err == nil && st != nil && st.PlanID != p.ID {
		err = fmt.Errorf("%s is the progress of plan %s, not of plan %s in %s: the plan file was replaced; remove the progress file to start over", f.statePath(), st.PlanID, p.ID, f.File)
	}
	return st, err
}

// open reads the plan file, its environment and its progress (nil before the first apply).
func open(conn *connFlags, f *planFile) (*plans.Plan, *rolling.Env, *plans.State, error) {
	o, err := conn.options()
	if err != nil {
		return nil, nil, nil, err
	}
	p, env, err := f.load(o)
	if err != nil {
		return nil, nil, nil, err
	}
	st, err := f.stateFor(p)
	return p, env, st, err
}

type applyCmd struct {
	connFlags
	planFile
	Yes bool `help:"Run without asking."`
}

func (c *applyCmd) Run() error {
	ctx, cancel := signalContext()
	defer cancel()
	p, env, st, err := open(&c.connFlags, &c.planFile)
	if err != nil {
		return err
	}
	if st != nil && st.Finished {
		if c.JSON {
			return printJSON(map[string]any{"event": "done", "plan": p.ID, "state": st})
		}
		fmt.Printf("plan %s is already done\n", p.ID)
		return printTimings(os.Stdout, p, st)
	}
	if err := c.render(p, st, nil); err != nil {
		return err
	}
	if st != nil && !c.JSON {
		fmt.Printf("resuming plan %s (%s)\n", p.ID, c.statePath())
	}
	if err := confirm(c.Yes, "Apply this upgrade?"); err != nil {
		return err
	}
	started := time.Now()
	st, err = plans.Execute(ctx, p, rolling.Handlers(env), c.statePath(), c.events())
	if err != nil {
		return fmt.Errorf("%w\nthe plan's progress is kept in %s: run `upgrade apply %s` again to resume, or `upgrade rollback %s` to undo it", err, c.statePath(), c.File, c.File)
	}
	if c.JSON {
		return printJSON(map[string]any{"event": "done", "plan": p.ID, "state": st, "took": time.Since(started).String()})
	}
	fmt.Printf("upgrade done in %s: every member runs %s %s\n", time.Since(started).Round(time.Millisecond), p.Params["software"],
		"(format level "+p.Params["level"]+"); rollback stays possible until `upgrade finalize`")
	return printTimings(os.Stdout, p, st)
}

type statusCmd struct {
	connFlags
	planFile
}

func (c *statusCmd) Run() error {
	data, err := os.ReadFile(c.File)
	if err != nil {
		return err
	}
	p, err := plans.Decode(data)
	if err != nil {
		return fmt.Errorf("plan file %s: %w", c.File, err)
	}
	st, err := c.stateFor(p)
	if err != nil {
		return err
	}
	if c.JSON {
		return printJSON(map[string]any{"plan": p, "state": st})
	}
	if err := plans.RenderText(os.Stdout, p, st, nil); err != nil {
		return err
	}
	fmt.Println()
	return printTimings(os.Stdout, p, st)
}

// printTimings prints each step's status with its estimated and actual time.
func printTimings(w io.Writer, p *plans.Plan, st *plans.State) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "STEP\tKIND\tMEMBER\tSTATUS\tESTIMATE\tACTUAL")
	var est, actual time.Duration
	for _, s := range p.Steps {
		status, took := string(plans.StatusPending), "-"
		if st != nil && s.N <= len(st.Steps) {
			ss := st.Steps[s.N-1]
			status = string(ss.Status)
			if !ss.Started.IsZero() && !ss.Ended.IsZero() {
				d := ss.Ended.Sub(ss.Started)
				actual += d
				took = d.Round(time.Millisecond).String()
			}
		}
		est += time.Duration(s.Estimate)
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\n", s.N, s.Kind, s.Member, status, s.Estimate, took)
	}
	fmt.Fprintf(tw, "total\t\t\t\t%s\t%s\n", est, actual.Round(time.Millisecond))
	return tw.Flush()
}

type rollbackCmd struct {
	connFlags
	planFile
	Yes bool `help:"Roll back without asking."`
}

func (c *rollbackCmd) Run() error {
	ctx, cancel := signalContext()
	defer cancel()
	p, env, st, err := open(&c.connFlags, &c.planFile)
	if err != nil {
		return err
	}
	if st == nil {
		return fmt.Errorf("plan %s was never applied (no %s): nothing to roll back", p.ID, c.statePath())
	}
	if err := env.CheckRollback(ctx); err != nil {
		return err
	}
	if err := c.render(p, st, nil); err != nil {
		return err
	}
	if err := confirm(c.Yes, "Roll this upgrade back (previous binaries, in reverse order)?"); err != nil {
		return err
	}
	st, err = plans.Undo(ctx, p, rolling.Handlers(env), c.statePath(), c.events())
	if err != nil {
		return fmt.Errorf("%w\nrun `upgrade rollback %s` again to continue", err, c.File)
	}
	if c.JSON {
		return printJSON(map[string]any{"event": "undone", "plan": p.ID, "state": st})
	}
	fmt.Printf("rolled back: every member the plan upgraded runs its previous binary again\n")
	return nil
}

type finalizeCmd struct {
	connFlags
	Mirror     []string `required:"" env:"MIRRORKIT_MEMBER" help:"Data address host:port of a member of the mirror."`
	MirrorName string   `help:"The mirror's name, when the member belongs to several."`
	Yes        bool     `help:"Finalize without asking."`
}

func (c *finalizeCmd) Run() error {
	ctx, cancel := signalContext()
	defer cancel()
	o, err := c.options()
	if err != nil {
		return err
	}
	f, err := mirrorctl.Connect(ctx, c.Mirror, c.MirrorName, o.Ctl)
	if err != nil {
		return err
	}
	pm, err := f.PrimaryMember()
	if err != nil {
		return err
	}
	if err := confirm(c.Yes, fmt.Sprintf("Finalize mirror %s? Members can no longer go back to their previous binaries.", f.Mirror)); err != nil {
		return err
	}
	var res mirror.FinalizeResult
	if err := pm.MirrorPost(ctx, "finalize", nil, &res); err != nil {
		return err
	}
	if c.JSON {
		return printJSON(res)
	}
	if res.Already {
		fmt.Printf("mirror %s was already finalized at format level %d\n", res.Mirror, res.Level)
		return nil
	}
	fmt.Printf("mirror %s finalized at format level %d: its journal is written in the new format; members of older levels are refused from now on\n", res.Mirror, res.Level)
	return nil
}

func confirm(yes bool, question string) error {
	if yes {
		return nil
	}
	if !isatty.IsTerminal(os.Stdin.Fd()) {
		return cli.Usage("not confirmed: pass --yes to run without a terminal")
	}
	fmt.Fprintf(os.Stderr, "%s [y/N] ", question)
	line, _ := bufio.NewReader(os.Stdin).ReadString('\n')
	if a := strings.ToLower(strings.TrimSpace(line)); a != "y" && a != "yes" {
		return errors.New("not confirmed; nothing was changed")
	}
	return nil
}

func printJSON(v any) error {
	data, err := json.Marshal(v)
	if err != nil {
		return err
	}
	_, err = fmt.Printf("%s\n", data)
	return err
}
