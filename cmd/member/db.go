package main

import (
	"fmt"
	"net/http"
	"net/url"
	"os"
	"strings"
	"text/tabwriter"

	"github.com/alecthomas/kong"

	"github.com/mirrorkit/mirrorkit/engine/mirror"
	"github.com/mirrorkit/mirrorkit/engine/server"
	"github.com/mirrorkit/mirrorkit/engine/store"
)

type dbCmd struct {
	Create   dbCreateCmd   `cmd:"" help:"Create a database."`
	List     dbListCmd     `cmd:"" help:"List databases."`
	Mount    dbNameCmd     `cmd:"" help:"Mount a dismounted database."`
	Dismount dbNameCmd     `cmd:"" help:"Flush and dismount a database (its data stays on disk)."`
	Delete   dbNameCmd     `cmd:"" help:"Delete a database and its files."`
	Hash     dbNameCmd     `cmd:"" help:"Print a logical hash of a database's content (compare copies across members)."`
	Remove   dbNameCmd     `cmd:"" help:"Take a mirrored database out of its mirror (on the primary first: permanent for the mirror; the copy stays as a local database)."`
	Catchup  dbNameCmd     `cmd:"" help:"Resume dejournaling of a mirrored database that was paused or stopped by an error; it catches up from its position."`
	Activate dbActivateCmd `cmd:"" help:"Activate a copy of a mirrored database placed in this member's db/ directory (files of a dismounted copy from another member); it catches up from the position it had."`
	Add      dbActivateCmd `cmd:"" name:"add-to-mirror" help:"On the primary: add an existing database (with data) to a mirror; the other members then need a copy (migrate add-db, db download)."`
	Download dbDownloadCmd `cmd:"" help:"On a backup or async: fetch a copy of a mirrored database from a member that has an activated, current one; it then catches up."`
}

type dbCreateCmd struct {
	remote
	Name   string `arg:"" help:"Database name."`
	Mirror string `help:"Create it as a mirrored database of this mirror (on the primary first, then on the other members)."`
}

func (c *dbCreateCmd) Run() error {
	if _, err := store.CanonicalDatabaseName(c.Name); err != nil {
		return usageError{Err: err}
	}
	ctx, cancel := c.context()
	defer cancel()
	var answer struct {
		store.Info
		mirror.DownloadStatus
	}
	if err := c.admin(ctx, http.MethodPost, "/api/v1/databases", server.CreateDatabaseRequest{Name: c.Name, Mirror: c.Mirror}, &answer); err != nil {
		return err
	}
	if answer.DownloadStatus.Status != "" {
		// The database joined the mirror with data: this member fetches a copy instead of starting it empty.
		return printDownload(c.JSON, answer.DownloadStatus)
	}
	return printInfo(c.JSON, answer.Info, "created")
}

type dbDownloadCmd struct {
	remote
	Name   string `arg:"" help:"Database name."`
	Mirror string `required:"" help:"The mirror the database belongs to."`
	From   string `help:"Member to copy from (default: the backup or an async with an activated, current copy, else the primary)."`
}

func (c *dbDownloadCmd) Run() error {
	if _, err := store.CanonicalDatabaseName(c.Name); err != nil {
		return usageError{Err: err}
	}
	ctx, cancel := c.context()
	defer cancel()
	var st mirror.DownloadStatus
	if err := c.admin(ctx, http.MethodPost, "/api/v1/databases/"+url.PathEscape(c.Name)+"/download", server.CopyRequest{Mirror: c.Mirror, From: c.From}, &st); err != nil {
		return err
	}
	return printDownload(c.JSON, st)
}

func printDownload(asJSON bool, st mirror.DownloadStatus) error {
	if asJSON {
		return printJSON(st)
	}
	fmt.Printf("database %s: %s (a copy is fetched from another member, then catches up; see member mirror status)\n", st.DB, st.Status)
	return nil
}

type dbListCmd struct{ remote }

func (c *dbListCmd) Run() error {
	ctx, cancel := c.context()
	defer cancel()
	var infos []store.Info
	if err := c.admin(ctx, http.MethodGet, "/api/v1/databases", nil, &infos); err != nil {
		return err
	}
	if c.JSON {
		return printJSON(infos)
	}
	tw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tSTATE\tAPPLIED\tBYTES\tDIR")
	for _, i := range infos {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\n", i.Name, mountState(i.Mounted), i.Applied, i.Bytes, i.Dir)
	}
	return tw.Flush()
}

type dbActivateCmd struct {
	remote
	Name   string `arg:"" help:"Database name."`
	Mirror string `required:"" help:"The mirror the database belongs to."`
}

func (c *dbActivateCmd) Run(kctx *kong.Context) error {
	if _, err := store.CanonicalDatabaseName(c.Name); err != nil {
		return usageError{Err: err}
	}
	ctx, cancel := c.context()
	defer cancel()
	var info store.Info
	if kctx.Command() == "db add-to-mirror <name>" {
		if err := c.admin(ctx, http.MethodPost, "/api/v1/databases/"+url.PathEscape(c.Name)+"/add-to-mirror", server.CopyRequest{Mirror: c.Mirror}, &info); err != nil {
			return err
		}
		return printInfo(c.JSON, info, "added to mirror "+c.Mirror+" with its data")
	}
	if err := c.admin(ctx, http.MethodPost, "/api/v1/databases/"+url.PathEscape(c.Name)+"/activate", server.CreateDatabaseRequest{Mirror: c.Mirror}, &info); err != nil {
		return err
	}
	return printInfo(c.JSON, info, "activated")
}

// dbNameCmd serves mount, dismount and delete: the sub-command's name picks the call.
type dbNameCmd struct {
	remote
	Name string `arg:"" help:"Database name."`
}

func (c *dbNameCmd) Run(kctx *kong.Context) error {
	if _, err := store.CanonicalDatabaseName(c.Name); err != nil {
		return usageError{Err: err}
	}
	ctx, cancel := c.context()
	defer cancel()
	path := "/api/v1/databases/" + url.PathEscape(c.Name)
	action := kctx.Command()
	var info store.Info
	switch action {
	case "db mount <name>":
		if err := c.admin(ctx, http.MethodPost, path+"/mount", nil, &info); err != nil {
			return err
		}
		return printInfo(c.JSON, info, "mounted")
	case "db dismount <name>":
		if err := c.admin(ctx, http.MethodPost, path+"/dismount", nil, &info); err != nil {
			return err
		}
		return printInfo(c.JSON, info, "dismounted")
	case "db remove <name>", "db catchup <name>":
		verb := strings.Fields(action)[1]
		path += map[string]string{"remove": "/remove-from-mirror", "catchup": "/catchup"}[verb]
		if err := c.admin(ctx, http.MethodPost, path, struct{}{}, &info); err != nil {
			return err
		}
		return printInfo(c.JSON, info, map[string]string{"remove": "removed from its mirror", "catchup": "catching up"}[verb])
	case "db hash <name>":
		var h store.LogicalHash
		if err := c.admin(ctx, http.MethodGet, path+"/hash", nil, &h); err != nil {
			return err
		}
		if c.JSON {
			return printJSON(h)
		}
		fmt.Printf("%s  %d nodes  %s\n", h.SHA256, h.Nodes, h.Database)
		return nil
	default:
		if err := c.admin(ctx, http.MethodDelete, path, nil, nil); err != nil {
			return err
		}
		if c.JSON {
			return printJSON(map[string]string{"deleted": c.Name})
		}
		fmt.Printf("database %s deleted\n", c.Name)
		return nil
	}
}

func printInfo(asJSON bool, info store.Info, verb string) error {
	if asJSON {
		return printJSON(info)
	}
	fmt.Printf("database %s %s (applied %s, dir %s)\n", info.Name, verb, info.Applied, info.Dir)
	return nil
}

func mountState(m bool) string {
	if m {
		return "mounted"
	}
	return "dismounted"
}
