package main

import (
	"fmt"
	"net/http"
	"net/url"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/alecthomas/kong"

	"github.com/mirrorkit/mirrorkit/engine/mirror"
	"github.com/mirrorkit/mirrorkit/engine/server"
	"github.com/mirrorkit/mirrorkit/engine/shadow"
	"github.com/mirrorkit/mirrorkit/internal/units"
)

type shadowCmd struct {
	Create  shadowCreateCmd `cmd:"" help:"Configure a shadow on this member (the destination): it will apply the source's local journal to the mapped databases. It starts Stopped."`
	Start   shadowStartCmd  `cmd:"" help:"Start processing, from the checkpoint (or from --start, while stopped)."`
	Suspend shadowNameCmd   `cmd:"" help:"Suspend processing; resume continues from the checkpoint."`
	Resume  shadowNameCmd   `cmd:"" help:"Resume a suspended shadow."`
	Stop    shadowNameCmd   `cmd:"" help:"Stop processing; the copies keep their checkpoints."`
	Restart shadowNameCmd   `cmd:"" help:"Stop and start again from the checkpoint (after an error is fixed)."`
	Status  shadowStatusCmd `cmd:"" help:"Show the shadows on this member (and the streams it serves as a source)."`
	Remove  shadowNameCmd   `cmd:"" help:"Remove a stopped shadow; its copies become plain local databases with the data they have."`
	Join    shadowJoinCmd   `cmd:"" help:"After the source added a database to a mirror this member belongs to: the shadowed copy joins the mirror where the source's local journal moved it, with no copy, and catches up."`
}

type shadowJoinCmd struct {
	remote
	Name   string `arg:"" help:"Shadow name."`
	DB     string `name:"db" required:"" help:"The database (its name on the source and in the mirror)."`
	Mirror string `required:"" help:"The mirror the source added it to."`
}

func (c *shadowJoinCmd) Run() error {
	ctx, cancel := c.context()
	defer cancel()
	var res mirror.JoinResult
	if err := c.admin(ctx, http.MethodPost, "/api/v1/shadows/"+url.PathEscape(c.Name)+"/join", server.ShadowJoinRequest{DB: c.DB, Mirror: c.Mirror}, &res); err != nil {
		return err
	}
	if c.JSON {
		return printJSON(res)
	}
	if res.Already {
		fmt.Printf("database %s is already a copy in mirror %s (applied %s)\n", res.Name, res.Mirror, res.Applied)
		return nil
	}
	check := "no hash from the primary to check it against"
	if res.Verified {
		check = "logical hash " + res.Hash.SHA256[:16] + "… matches the primary's at that position"
	}
	fmt.Printf("database %s joined mirror %s in place at %s, with no copy (%s)\n", res.Name, res.Mirror, res.Applied, check)
	return nil
}

type shadowCreateCmd struct {
	remote
	Name   string   `arg:"" help:"Shadow name."`
	Source string   `required:"" help:"The source member's data address host:port."`
	Start  string   `default:"now" help:"Where to start in the source's local journal: now, or a position EPOCH:SEGMENT:OFFSET (the copies must hold the source's databases as of that position)."`
	Map    []string `required:"" help:"SRC=DST: apply source database SRC to destination database DST (created empty if missing); repeat or separate with commas."`
}

func (c *shadowCreateCmd) Run() error {
	req := shadow.CreateRequest{Name: c.Name, Source: c.Source, Start: c.Start}
	for _, m := range c.Map {
		src, dst, ok := strings.Cut(m, "=")
		if !ok || strings.TrimSpace(src) == "" || strings.TrimSpace(dst) == "" {
			return usageError{Err: fmt.Errorf("--map %q: want SRC=DST", m)}
		}
		req.Map = append(req.Map, shadow.Mapping{Source: strings.TrimSpace(src), Dest: strings.TrimSpace(dst)})
	}
	ctx, cancel := c.context()
	defer cancel()
	var st shadow.Status
	if err := c.admin(ctx, http.MethodPost, "/api/v1/shadows", req, &st); err != nil {
		return err
	}
	return printShadow(c.JSON, st, "created")
}

type shadowNameCmd struct {
	remote
	Name string `arg:"" help:"Shadow name."`
}

func (c *shadowNameCmd) Run(kctx *kong.Context) error {
	// "shadow stop <name>" → "stop"
	action := strings.Fields(kctx.Command())[1]
	ctx, cancel := c.context()
	defer cancel()
	if action == "remove" {
		if err := c.admin(ctx, http.MethodDelete, "/api/v1/shadows/"+url.PathEscape(c.Name), nil, nil); err != nil {
			return err
		}
		if c.JSON {
			return printJSON(map[string]string{"removed": c.Name})
		}
		fmt.Printf("shadow %s removed\n", c.Name)
		return nil
	}
	var st shadow.Status
	if err := c.admin(ctx, http.MethodPost, "/api/v1/shadows/"+url.PathEscape(c.Name)+"/"+action, nil, &st); err != nil {
		return err
	}
	return printShadow(c.JSON, st, pastTense(action))
}

func pastTense(action string) string {
	switch action {
	case "stop":
		return "stopped"
	case "suspend", "resume":
		return action + "d"
	}
	return action + "ed"
}

type shadowStartCmd struct {
	remote
	Name  string `arg:"" help:"Shadow name."`
	Start string `help:"Start again from this position of the source's local journal (only while stopped; every copy restarts there)."`
}

func (c *shadowStartCmd) Run() error {
	ctx, cancel := c.context()
	defer cancel()
	var st shadow.Status
	if err := c.admin(ctx, http.MethodPost, "/api/v1/shadows/"+url.PathEscape(c.Name)+"/start", server.ShadowStartRequest{Start: c.Start}, &st); err != nil {
		return err
	}
	return printShadow(c.JSON, st, "started")
}

type shadowStatusCmd struct {
	remote
	Name string `arg:"" optional:"" help:"Only this shadow."`
}

func (c *shadowStatusCmd) Run() error {
	ctx, cancel := c.context()
	defer cancel()
	if c.Name != "" {
		var st shadow.Status
		if err := c.admin(ctx, http.MethodGet, "/api/v1/shadows/"+url.PathEscape(c.Name), nil, &st); err != nil {
			return err
		}
		return printShadow(c.JSON, st, "")
	}
	var all server.ShadowsStatus
	if err := c.admin(ctx, http.MethodGet, "/api/v1/shadows", nil, &all); err != nil {
		return err
	}
	if c.JSON {
		return printJSON(all)
	}
	if len(all.Shadows) == 0 && len(all.Serving) == 0 {
		fmt.Println("no shadows on this member, and none served from it")
	}
	for _, st := range all.Shadows {
		printShadowText(st)
	}
	printServing(all.Serving)
	return nil
}

func printShadow(asJSON bool, st shadow.Status, verb string) error {
	if asJSON {
		return printJSON(st)
	}
	if verb != "" {
		fmt.Printf("shadow %s %s\n", st.Name, verb)
	}
	printShadowText(st)
	return nil
}

func printShadowText(st shadow.Status) {
	conn := "not connected"
	if st.Connected {
		conn = "connected to " + st.SourceMember
	}
	fmt.Printf("shadow %s: %s, source %s (%s), checkpoint %s", st.Name, st.State, st.Source, conn, st.Checkpoint)
	if st.State == shadow.Processing {
		fmt.Printf(", latency %s (%s behind)", (time.Duration(st.LatencySeconds * float64(time.Second))).Round(time.Millisecond), units.Bytes(int64(st.BytesBehind)))
	}
	fmt.Println()
	if st.Error != "" {
		fmt.Printf("  error: %s\n", st.Error)
	}
	tw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "  SOURCE DB\tDESTINATION DB\tAPPLIED\tMODIFIED\tJOINS MIRROR")
	for _, d := range st.Databases {
		applied, modified, joins := d.Applied.String(), "no", "-"
		if d.Modified {
			modified = "yes"
		}
		switch {
		case d.Missing:
			applied = "(not mounted here)"
		case d.Joined != "":
			applied, joins = "-", "joined "+d.Joined
		case d.ToMirror != nil:
			joins = fmt.Sprintf("%s at %s", d.ToMirror.Mirror, d.ToMirror.Pos)
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\n", d.Source, d.Dest, applied, modified, joins)
	}
	tw.Flush()
}

func printServing(list []shadow.Served) {
	for _, s := range list {
		fmt.Printf("serving shadow %s to %s (%s) since %s: sent up to %s, applied there up to %s\n", s.Shadow, s.Member, s.Peer,
			s.Connected.Format(time.RFC3339), s.Sent, s.Applied)
	}
}
