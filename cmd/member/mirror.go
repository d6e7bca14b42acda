package main

import (
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/alecthomas/kong"

	"github.com/mirrorkit/mirrorkit/engine/mirror"
	"github.com/mirrorkit/mirrorkit/engine/server"
)

type mirrorCmd struct {
	Create       mirrorCreateCmd  `cmd:"" help:"Create a mirror with this member as its first failover member (primary in epoch 1)."`
	Join         mirrorJoinCmd    `cmd:"" help:"Join this member to a mirror as failover, dr, reporting-ro or reporting-rw."`
	Failover     mirrorNameCmd    `cmd:"" help:"Planned failover: hand the primary role to the Active backup."`
	NoFailover   mirrorFlagCmd    `cmd:"" name:"no-failover" help:"Set (or --clear) the no-failover flag on the primary."`
	Pause        mirrorDBCmd      `cmd:"" help:"Pause dejournaling of one database (--db) or of the whole mirror."`
	Resume       mirrorDBCmd      `cmd:"" help:"Resume dejournaling of one database (--db) or of the whole mirror."`
	Stop         mirrorNameCmd    `cmd:"" help:"Stop mirroring on this backup or async (persists across restarts)."`
	Start        mirrorNameCmd    `cmd:"" help:"Start mirroring again on this backup or async."`
	Promote      mirrorPromoteCmd `cmd:"" help:"Promote this DR async to failover member (the current backup becomes a DR async); with --no-primary, make it primary after a disaster."`
	Set          mirrorSetCmd     `cmd:"" help:"Change the mirror's QoS timeout or arbiter, on the primary."`
	ForcePrimary mirrorNameCmd    `cmd:"" name:"force-primary" help:"After a disaster, make this failover member primary: refused while another member is known to be primary."`
	Demote       mirrorNameCmd    `cmd:"" help:"Demote this backup to DR async."`
	RemoveMember mirrorNameCmd    `cmd:"" name:"remove-member" help:"Take this member out of the mirror; its mirrored databases become local databases."`
	Remove       mirrorNameCmd    `cmd:"" help:"Remove the whole mirror, run on its primary: asyncs first, then the backup, then the primary."`
	Pending      mirrorNameCmd    `cmd:"" help:"List members waiting for certificate authorization (on the primary of a TLS mirror)."`
	Authorize    mirrorAuthCmd    `cmd:"" help:"Authorize a member's certificate DN (on the primary of a TLS mirror)."`
}

// mirrorCall posts body to the member's /api/v1/mirrors/NAME/action (or /api/v1/mirrors/action without a name) and prints
// the mirror status it answers, as JSON or with say.
func (r *remote) mirrorCall(name, action string, body any, say func(st mirror.Status)) error {
	path := "/api/v1/mirrors/" + action
	if name != "" {
		canon, err := mirror.CanonicalMirrorName(name)
		if err != nil {
			return usageError{Err: err}
		}
		path = "/api/v1/mirrors/" + canon + "/" + action
	}
	ctx, cancel := r.context()
	defer cancel()
	var st mirror.Status
	if err := r.admin(ctx, http.MethodPost, strings.TrimSuffix(path, "/"), body, &st); err != nil {
		return err
	}
	if r.JSON {
		return printJSON(st)
	}
	say(st)
	return nil
}

type mirrorCreateCmd struct {
	remote
	Name                string `arg:"" help:"Mirror name (1-15 letters or digits)."`
	QoS                 string `name:"qos" default:"8s" help:"QoS timeout."`
	CompressionFailover string `enum:",none,lz4,zstd" default:"" help:"Stream compression to the backup (default lz4)."`
	CompressionAsync    string `enum:",none,lz4,zstd" default:"" help:"Stream compression to asyncs (default zstd)."`
	RequireTLS          bool   `name:"require-tls" help:"Require mutual TLS on every connection of the mirror."`
	AsyncHoldback       string `default:"336h" help:"How long a disconnected async still holds back journal purges on the primary."`
	Arbiter             string `help:"The arbiter's address host:port (automatic failover in Arbiter Controlled mode)."`
}

func (c *mirrorCreateCmd) Run() error {
	if _, err := mirror.CanonicalMirrorName(c.Name); err != nil {
		return usageError{Err: err}
	}
	req := server.CreateMirrorRequest{Name: c.Name, QoS: c.QoS, CompressionFailover: c.CompressionFailover, CompressionAsync: c.CompressionAsync,
		RequireTLS: c.RequireTLS, AsyncHoldback: c.AsyncHoldback, Arbiter: c.Arbiter}
	return c.mirrorCall("", "", req, func(st mirror.Status) {
		fmt.Printf("mirror %s created; member %s is primary in epoch %d\n", st.Mirror, st.Member, st.Epoch)
	})
}

type mirrorJoinCmd struct {
	remote
	Name    string `arg:"" help:"Mirror name."`
	Primary string `required:"" help:"The primary's data address."`
	As      string `required:"" enum:"failover,dr,reporting-ro,reporting-rw" help:"Member type: failover, dr, reporting-ro or reporting-rw."`
}

func (c *mirrorJoinCmd) Run() error {
	if _, err := mirror.CanonicalMirrorName(c.Name); err != nil {
		return usageError{Err: err}
	}
	return c.mirrorCall("", "join", server.JoinMirrorRequest{Mirror: c.Name, Primary: c.Primary, As: c.As}, func(st mirror.Status) {
		fmt.Printf("member %s joined mirror %s as %s; the primary is %s\n", st.Member, st.Mirror, c.As, st.Primary)
	})
}

// mirrorNameCmd serves the actions that take only a mirror name: the sub-command's name picks the call.
type mirrorNameCmd struct {
	remote
	Name string `arg:"" help:"Mirror name."`
}

func (c *mirrorNameCmd) Run(kctx *kong.Context) error {
	verb := strings.Fields(kctx.Command())[1]
	switch verb {
	case "failover":
		return c.mirrorCall(c.Name, "failover", nil, func(st mirror.Status) {
			fmt.Printf("mirror %s: %s is now primary (epoch %d); %s continues as backup\n", st.Mirror, st.Primary, st.Epoch, st.Member)
		})
	case "stop", "start":
		return c.mirrorCall(c.Name, "mirroring", server.MirrorActionRequest{On: verb == "start"}, func(st mirror.Status) {
			fmt.Printf("mirror %s: mirroring %s on %s\n", st.Mirror, map[string]string{"stop": "stopped", "start": "started"}[verb], st.Member)
		})
	case "force-primary":
		return c.takeover(c.Name, "force-primary", nil)
	case "demote":
		return c.mirrorCall(c.Name, verb, struct{}{}, func(st mirror.Status) {
			fmt.Printf("mirror %s: %s is now a %s member\n", st.Mirror, st.Member, row(st, st.Member).Type)
		})
	case "pending":
		return c.pending()
	}
	action := map[string]string{"remove-member": "leave", "remove": "remove"}[verb]
	name, err := mirror.CanonicalMirrorName(c.Name)
	if err != nil {
		return usageError{Err: err}
	}
	ctx, cancel := c.context()
	defer cancel()
	if err := c.admin(ctx, http.MethodPost, "/api/v1/mirrors/"+name+"/"+action, struct{}{}, nil); err != nil {
		return err
	}
	fmt.Printf("mirror %s: %s done\n", name, verb)
	return nil
}

func (c *mirrorNameCmd) pending() error {
	name, err := mirror.CanonicalMirrorName(c.Name)
	if err != nil {
		return usageError{Err: err}
	}
	ctx, cancel := c.context()
	defer cancel()
	var sts []mirror.Status
	if err := c.admin(ctx, http.MethodGet, "/api/v1/mirror/local", nil, &sts); err != nil {
		return err
	}
	for _, st := range sts {
		if st.Mirror != name {
			continue
		}
		if c.JSON {
			return printJSON(st.Pending)
		}
		for _, p := range st.Pending {
			fmt.Printf("%s\t%s\t%s\tsince %s\n", p.Member.Name, p.Member.Type, p.DN, p.Since.Format("2006-01-02 15:04:05"))
		}
		return nil
	}
	return fmt.Errorf("member is not in mirror %s", name)
}

func row(st mirror.Status, name string) mirror.MemberStatus {
	for _, r := range st.Members {
		if r.Name == name {
			return r
		}
	}
	return mirror.MemberStatus{}
}

type mirrorAuthCmd struct {
	remote
	Name string `arg:"" help:"Mirror name."`
	DN   string `required:"" name:"dn" help:"The certificate subject DN to authorize, as member mirror pending shows it."`
}

func (c *mirrorAuthCmd) Run() error {
	return c.mirrorCall(c.Name, "authorize", map[string]string{"dn": c.DN}, func(st mirror.Status) {
		fmt.Printf("mirror %s: certificate %q authorized\n", st.Mirror, c.DN)
	})
}

type mirrorFlagCmd struct {
	remote
	Name  string `arg:"" help:"Mirror name."`
	Clear bool   `help:"Clear the flag instead of setting it."`
}

func (c *mirrorFlagCmd) Run() error {
	return c.mirrorCall(c.Name, "no-failover", server.MirrorActionRequest{On: !c.Clear}, func(st mirror.Status) {
		fmt.Printf("mirror %s: no-failover %v on %s\n", st.Mirror, st.NoFailover, st.Member)
	})
}

type mirrorDBCmd struct {
	remote
	Name string `arg:"" help:"Mirror name."`
	DB   string `help:"One database (default: the whole mirror)."`
}

func (c *mirrorDBCmd) Run(kctx *kong.Context) error {
	resume := strings.Fields(kctx.Command())[1] == "resume"
	what := "the whole mirror"
	if c.DB != "" {
		what = "database " + strings.ToUpper(c.DB)
	}
	return c.mirrorCall(c.Name, "dejournal", server.MirrorActionRequest{On: resume, DB: c.DB}, func(st mirror.Status) {
		fmt.Printf("mirror %s: dejournaling of %s %s on %s\n", st.Mirror, what, map[bool]string{true: "resumed", false: "paused"}[resume], st.Member)
	})
}

type mirrorPromoteCmd struct {
	remote
	Name      string `arg:"" help:"Mirror name."`
	NoPrimary bool   `name:"no-primary" help:"No primary runs: make this DR async primary with the newest journal it can get from the old failover members' agents (or, failing them, the other asyncs' agents). Data may be lost."`
}

func (c *mirrorPromoteCmd) Run() error {
	if c.NoPrimary {
		return c.takeover(c.Name, "promote", server.PromoteRequest{NoPrimary: true})
	}
	return c.mirrorCall(c.Name, "promote", server.PromoteRequest{}, func(st mirror.Status) {
		fmt.Printf("mirror %s: %s is now a %s member\n", st.Mirror, st.Member, row(st, st.Member).Type)
	})
}

// takeover runs an operator's takeover (force-primary, promote --no-primary) and prints its report.
func (r *remote) takeover(name, action string, body any) error {
	canon, err := mirror.CanonicalMirrorName(name)
	if err != nil {
		return usageError{Err: err}
	}
	ctx, cancel := r.context()
	defer cancel()
	var rep mirror.TakeoverReport
	if err := r.admin(ctx, http.MethodPost, "/api/v1/mirrors/"+canon+"/"+action, body, &rep); err != nil {
		return err
	}
	if r.JSON {
		return printJSON(rep)
	}
	active := "was not the Active backup"
	if rep.WasActiveBackup {
		active = "was the Active backup"
	}
	fmt.Printf("mirror %s: member %s is primary in epoch %d; it %s; its journal ended at %s, now at %s\n", canon, rep.Member, rep.Epoch, active, rep.LastPosition, rep.NewEnd)
	if len(rep.Fetched) > 0 {
		fmt.Printf("journal fetched from: %s\n", strings.Join(rep.Fetched, ", "))
	}
	if len(rep.NotValidated) > 0 {
		fmt.Printf("not validated (must not start as primary; rejoin as DR or rebuild): %s\n", strings.Join(rep.NotValidated, ", "))
	}
	for _, w := range rep.Warnings {
		fmt.Printf("warning: %s\n", w)
	}
	return nil
}

type mirrorSetCmd struct {
	remote
	Name    string        `arg:"" help:"Mirror name."`
	QoS     time.Duration `name:"qos" help:"New QoS timeout (at least 200ms)."`
	Arbiter *string       `help:"New arbiter address host:port; an empty string removes the arbiter."`
}

func (c *mirrorSetCmd) Run() error {
	var s mirror.Settings
	if c.QoS != 0 {
		s.QoS = &mirror.Duration{Duration: c.QoS}
	}
	s.Arbiter = c.Arbiter
	if s.QoS == nil && s.Arbiter == nil {
		return usage("mirror set: give --qos and/or --arbiter")
	}
	return c.mirrorCall(c.Name, "settings", s, func(st mirror.Status) {
		fmt.Printf("mirror %s: QoS %s, arbiter %s\n", st.Mirror, st.QoS, st.Arbiter)
	})
}
