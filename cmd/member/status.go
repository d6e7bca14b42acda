package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"

	"github.com/mirrorkit/mirrorkit/engine/server"
	"github.com/mirrorkit/mirrorkit/engine/version"
)

type statusCmd struct{ remote }

func (c *statusCmd) Run() error {
	ctx, cancel := c.context()
	defer cancel()
	var st server.Status
	if err := c.admin(ctx, http.MethodGet, "/api/v1/status", nil, &st); err != nil {
		return err
	}
	if c.JSON {
		return printJSON(st)
	}
	fmt.Printf("member %s (version %s), data %s, admin %s, up %s\n", st.Member, st.Version.Software, st.DataAddr, st.AdminAddr, st.Uptime)
	fmt.Printf("journal: epoch %d, %d segments, from %s to %s, %d records, %d syncs\n",
		st.Journal.Epoch, st.Journal.Segments, st.Journal.First, st.Journal.Durable, st.Journal.Records, st.Journal.Syncs)
	for _, d := range st.Databases {
		fmt.Printf("database %s: %s, applied %s, %d bytes\n", d.Name, mountState(d.Mounted), d.Applied, d.Bytes)
	}
	return nil
}

type versionCmd struct {
	JSON bool `name:"json" help:"Print JSON."`
}

func (c *versionCmd) Run() error {
	v := version.Get()
	if c.JSON {
		return printJSON(v)
	}
	fmt.Printf("member %s (journal format %d, wire protocol %d..%d, database format %d, %s)\n",
		v.Software, v.JournalFormat, v.WireMinProtocol, v.WireProtocol, v.DatabaseFormat, v.GoVersion)
	return nil
}

func printJSONLine(v any) error {
	return json.NewEncoder(os.Stdout).Encode(v)
}
