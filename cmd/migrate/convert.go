package main

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/mirrorkit/mirrorkit/adddb"
	"github.com/mirrorkit/mirrorkit/backup"
	"github.com/mirrorkit/mirrorkit/convert"
	"github.com/mirrorkit/mirrorkit/engine/mirror"
	"github.com/mirrorkit/mirrorkit/internal/mirrorctl"
	"github.com/mirrorkit/mirrorkit/plans"
	"github.com/mirrorkit/mirrorkit/restore"
)

type convertCmd struct {
	stageFlags
	keyFlags
	output
	planFlags
	Source     string        `required:"" help:"The shadow source's data address host:port: it becomes the mirror's primary."`
	Shadow     []string      `required:"" help:"Data address of each shadow destination (repeat or comma-separate)."`
	MirrorName string        `name:"mirror" required:"" help:"Name of the mirror to create (or that the source is the primary of)."`
	As         []string      `required:"" help:"Role of each destination, in the order of --shadow: backup (failover), dr, reporting-ro or reporting-rw; at most one backup."`
	Names      []string      `help:"SRC=MIRRORDB: convert only these source databases (a mirrored database keeps its name on the primary, so MIRRORDB must be SRC); default: every database the shadows map."`
	QoS        string        `name:"qos" help:"QoS timeout of the new mirror (default the member's)."`
	MaxLatency time.Duration `default:"30s" help:"A shadow further behind than this does not convert in place: its copies are copied from the primary."`
	ForceCopy  bool          `help:"Copy every database from the primary, even where a shadow copy could join in place (for comparison)."`
	Parallel   int           `default:"4" help:"Chunks in flight during a staged backup and its restores (with --stage)."`
	Undo       bool          `help:"Undo the plan of an earlier run, its steps in reverse, as far as the point of no return."`
	Wait       time.Duration `default:"30m" help:"How long a step waits for a copy, a shadow or a member."`
	Timeout    time.Duration `default:"30s" help:"How long to wait for a member's answer."`
	TLSCert    string        `name:"tls-cert" env:"MIRRORKIT_TLS_CERT" type:"path" help:"Client certificate, for members that require TLS."`
	TLSKey     string        `name:"tls-key" env:"MIRRORKIT_TLS_KEY" type:"path" help:"Client certificate key."`
	TLSCA      string        `name:"tls-ca" env:"MIRRORKIT_TLS_CA" type:"path" help:"CA bundle that signs the members' certificates."`
}

func (c *convertCmd) Run() error {
	name, err := mirror.CanonicalMirrorName(c.MirrorName)
	if err != nil {
		return usageError{Err: err}
	}
	shadows := splitList(c.Shadow)
	roles := splitList(c.As)
	if len(roles) != len(shadows) {
		return usage("give one --as role per --shadow destination (%d destinations, %d roles)", len(shadows), len(roles))
	}
	names := map[string]string{}
	for _, n := range splitList(c.Names) {
		src, dst, ok := strings.Cut(n, "=")
		if !ok || src == "" || dst == "" {
			return usage("--names %q: want SRC=MIRRORDB", n)
		}
		names[strings.TrimSpace(src)] = strings.TrimSpace(dst)
	}
	tlsConf, err := (&mirrorFlags{TLSCert: c.TLSCert, TLSKey: c.TLSKey, TLSCA: c.TLSCA}).tlsConfig()
	if err != nil {
		return err
	}
	ctx, cancel := interruptible()
	defer cancel()
	f, err := mirrorctl.Standalone(ctx, append([]string{c.Source}, shadows...), name, mirrorctl.Options{TLS: tlsConf, Timeout: c.Timeout, Name: "migrate"})
	if err != nil {
		return err
	}
	env := &convert.Env{Fleet: f, Wait: c.Wait, AddDB: &adddb.Env{Fleet: f, Wait: c.Wait},
		Opts: convert.Options{Source: c.Source, Shadows: shadows, As: roles, Mirror: name, Names: names, QoS: c.QoS,
			MaxLatency: c.MaxLatency, ForceCopy: c.ForceCopy, Stage: c.Stage}}
	if c.Stage != "" {
		key, err := c.load()
		if err != nil {
			return err
		}
		if env.AddDB.Target, err = c.open(ctx); err != nil {
			return err
		}
		env.AddDB.Stage = c.Stage
		env.AddDB.Backup = backup.Options{Level: 3, Parallel: c.Parallel, Key: key}
		env.AddDB.Restore = restore.Options{Key: key, Parallel: c.Parallel}
	}
	job := &planJob{flags: &c.planFlags, out: &c.output, name: fmt.Sprintf("convert-shadow-%s.plan.json", name),
		build:    func(ctx context.Context) (*plans.Plan, error) { return convert.Build(ctx, env) },
		handlers: func(p *plans.Plan) plans.Handlers { return convert.Handlers(env, p) },
		conflict: func(old *plans.Plan) string {
			if old.Params["source"] != f.Primary || old.Params["stage"] != c.Stage || old.Params["force_copy"] != fmt.Sprint(c.ForceCopy) {
				return fmt.Sprintf("converts the shadows of %s (stage %q, force copy %s)", old.Params["source"], old.Params["stage"], old.Params["force_copy"])
			}
			return ""
		}}
	return job.do(ctx, c.Undo, fmt.Sprintf("the shadows of %s are now mirror %s: %s is its primary, every converted database has a current copy on every member", f.Primary, name, f.Primary))
}

// splitList flattens repeated and comma-separated flag values.
func splitList(in []string) []string {
	var out []string
	for _, v := range in {
		for _, s := range strings.Split(v, ",") {
			if s = strings.TrimSpace(s); s != "" {
				out = append(out, s)
			}
		}
	}
	return out
}
