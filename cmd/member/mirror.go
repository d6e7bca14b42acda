package main

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"github.com/alecthomas/kong"

	"github.com/mirrorkit/mirrorkit/engine/mirror"
	"github.com/mirrorkit/mirrorkit/engine/server"
)

type mirrorCmd struct {
	Create       mirrorCreateCmd `cmd:"" help:"Create a mirror with this member as its first failover member (primary in epoch 1)."`
	Join         mirrorJoinCmd   `cmd:"" help:"Join this member to a mirror as failover, dr, reporting-ro or reporting-rw."`
	Failover     mirrorNameCmd   `cmd:"" help:"Planned failover: hand the primary role to the Active backup."`
	NoFailover   mirrorFlagCmd   `cmd:"" name:"no-failover" help:"Set (or --clear) the no-failover flag on the primary."`
	Pause        mirrorDBCmd     `cmd:"" help:"Pause dejournaling of one database (--db) or of the whole mirror."`
	Resume       mirrorDBCmd     `cmd:"" help:"Resume dejournaling of one database (--db) or of the whole mirror."`
	Stop         mirrorNameCmd   `cmd:"" help:"Stop mirroring on this backup or async (persists across restarts)."`
	Promote      mirrorNameCmd   `cmd:"" help:"Promote this DR async to failover member (the current backup becomes a DR async)."`
	Demote       mirrorNameCmd   `cmd:"" help:"Demote this backup to DR async."`
	RemoveMember mirrorNameCmd   `cmd:"" name:"remove-member" help:"Take this member out of the mirror; its mirrored databases become local databases."`
	Pending      mirrorNameCmd   `cmd:"" help:"List members waiting for certificate authorization (on the primary of a TLS mirror)."`
	Authorize    mirrorAuthCmd   `cmd:"" help:"Authorize a member's certificate DN (on the primary of a TLS mirror)."`
	Remove       mirrorNameCmd   `cmd:"" help:"Remove the whole mirror, run on its primary: asyncs first, then the backup, then the primary."`
	Start        mirrorNameCmd   `cmd:"" help:"Start mirroring again on this backup or async."`
}

type mirrorCreateCmd struct {
	remote
	Name                string `arg:"" help:"Mirror name (1-15 letters or digits)."`
	QoS                 string `name:"qos" default:"8s" help:"QoS timeout."`
	CompressionFailover string `enum:",none,lz4,zstd" default:"" help:"Stream compression to the backup (default lz4)."`
	CompressionAsync    string `enum:",none,lz4,zstd" default:"" help:"Stream compression to asyncs (default zstd)."`
	RequireTLS          bool   `name:"require-tls" help:"Require mutual TLS on every connection of the mirror."`
	AsyncHoldback       string `default:"336h" help:"How long a disconnected async still holds back journal purges on the primary."`
}

func (c *mirrorCreateCmd) Run() error {
	if _, err := mirror.CanonicalMirrorName(c.Name); err != nil {
		return usageError{err}
	}
	ctx, cancel := c.context()
	defer cancel()
	var st mirror.Status
	req := server.CreateMirrorRequest{Name: c.Name, QoS: c.QoS, CompressionFailover: c.CompressionFailover, CompressionAsync: c.CompressionAsync, RequireTLS: c.RequireTLS, AsyncHoldback: c.AsyncHoldback}
	if err := c.admin(ctx, http.MethodPost, "/api/v1/mirrors", req, &st); err != nil {
		return err
	}
	if c.JSON {
		return printJSON(st)
	}
	fmt.Printf("mirror %s created; member %s is primary in epoch %d\n", st.Mirror, st.Member, st.Epoch)
	return nil
}

type mirrorJoinCmd struct {
	remote
	Name    string `arg:"" help:"Mirror name."`
	Primary string `required:"" help:"The primary's data address."`
	As      string `required:"" enum:"failover,dr,reporting-ro,reporting-rw" help:"Member type: failover, dr, reporting-ro or reporting-rw."`
}

func (c *mirrorJoinCmd) Run() error {
	if _, err := mirror.CanonicalMirrorName(c.Name); err != nil {
		return usageError{err}
	}
	ctx, cancel := c.context()
	defer cancel()
	var st mirror.Status
	if err := c.admin(ctx, http.MethodPost, "/api/v1/mirrors/join", server.JoinMirrorRequest{Mirror: c.Name, Primary: c.Primary, As: c.As}, &st); err != nil {
		return err
	}
	if c.JSON {
		return printJSON(st)
	}
	fmt.Printf("member %s joined mirror %s as %s; the primary is %s\n", st.Member, st.Mirror, c.As, st.Primary)
	return nil
}

// mirrorNameCmd serves failover, stop and start: the sub-command's name picks the call.
type mirrorNameCmd struct {
	remote
	Name string `arg:"" help:"Mirror name."`
}

func (c *mirrorNameCmd) Run(kctx *kong.Context) error {
	name, err := mirror.CanonicalMirrorName(c.Name)
	if err != nil {
		return usageError{err}
	}
	ctx, cancel := c.context()
	defer cancel()
	path := "/api/v1/mirrors/" + url.PathEscape(name)
	var st mirror.Status
	verb := strings.Fields(kctx.Command())[1]
	switch verb {
	case "failover":
		err = c.admin(ctx, http.MethodPost, path+"/failover", nil, &st)
	case "stop", "start":
		err = c.admin(ctx, http.MethodPost, path+"/mirroring", server.MirrorActionRequest{On: verb == "start"}, &st)
	case "promote", "demote":
		err = c.admin(ctx, http.MethodPost, path+"/"+verb, struct{}{}, &st)
	case "pending":
		var sts []mirror.Status
		if err := c.admin(ctx, http.MethodGet, "/api/v1/mirror/local", nil, &sts); err != nil {
			return err
		}
		for _, s := range sts {
			if s.Mirror != name {
				continue
			}
			if c.JSON {
				return printJSON(s.Pending)
			}
			for _, p := range s.Pending {
				fmt.Printf("%s\t%s\t%s\tsince %s\n", p.Member.Name, p.Member.Type, p.DN, p.Since.Format("2006-01-02 15:04:05"))
			}
			return nil
		}
		return fmt.Errorf("member is not in mirror %s", name)
	case "remove-member", "remove":
		action := map[string]string{"remove-member": "/leave", "remove": "/remove"}[verb]
		if err := c.admin(ctx, http.MethodPost, path+action, struct{}{}, nil); err != nil {
			return err
		}
		fmt.Printf("mirror %s: %s done\n", name, verb)
		return nil
	}
	if err != nil {
		return err
	}
	if c.JSON {
		return printJSON(st)
	}
	switch verb {
	case "failover":
		fmt.Printf("mirror %s: %s is now primary (epoch %d); %s continues as backup\n", st.Mirror, st.Primary, st.Epoch, st.Member)
	case "promote", "demote":
		fmt.Printf("mirror %s: %s is now a %s member\n", st.Mirror, st.Member, row(st, st.Member).Type)
	default:
		fmt.Printf("mirror %s: mirroring %s on %s\n", st.Mirror, map[string]string{"stop": "stopped", "start": "started"}[verb], st.Member)
	}
	return nil
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
	name, err := mirror.CanonicalMirrorName(c.Name)
	if err != nil {
		return usageError{err}
	}
	ctx, cancel := c.context()
	defer cancel()
	var st mirror.Status
	if err := c.admin(ctx, http.MethodPost, "/api/v1/mirrors/"+name+"/authorize", map[string]string{"dn": c.DN}, &st); err != nil {
		return err
	}
	if c.JSON {
		return printJSON(st)
	}
	fmt.Printf("mirror %s: certificate %q authorized\n", st.Mirror, c.DN)
	return nil
}

type mirrorFlagCmd struct {
	remote
	Name  string `arg:"" help:"Mirror name."`
	Clear bool   `help:"Clear the flag instead of setting it."`
}

func (c *mirrorFlagCmd) Run() error {
	name, err := mirror.CanonicalMirrorName(c.Name)
	if err != nil {
		return usageError{err}
	}
	ctx, cancel := c.context()
	defer cancel()
	var st mirror.Status
	if err := c.admin(ctx, http.MethodPost, "/api/v1/mirrors/"+name+"/no-failover", server.MirrorActionRequest{On: !c.Clear}, &st); err != nil {
		return err
	}
	if c.JSON {
		return printJSON(st)
	}
	fmt.Printf("mirror %s: no-failover %v on %s\n", st.Mirror, st.NoFailover, st.Member)
	return nil
}

type mirrorDBCmd struct {
	remote
	Name string `arg:"" help:"Mirror name."`
	DB   string `help:"One database (default: the whole mirror)."`
}

func (c *mirrorDBCmd) Run(kctx *kong.Context) error {
	name, err := mirror.CanonicalMirrorName(c.Name)
	if err != nil {
		return usageError{err}
	}
	ctx, cancel := c.context()
	defer cancel()
	resume := strings.Fields(kctx.Command())[1] == "resume"
	var st mirror.Status
	if err := c.admin(ctx, http.MethodPost, "/api/v1/mirrors/"+name+"/dejournal", server.MirrorActionRequest{On: resume, DB: c.DB}, &st); err != nil {
		return err
	}
	if c.JSON {
		return printJSON(st)
	}
	what := "the whole mirror"
	if c.DB != "" {
		what = "database " + strings.ToUpper(c.DB)
	}
	fmt.Printf("mirror %s: dejournaling of %s %s on %s\n", st.Mirror, what, map[bool]string{true: "resumed", false: "paused"}[resume], st.Member)
	return nil
}
