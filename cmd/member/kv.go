package main

import (
	"encoding/hex"
	"fmt"
	"strconv"

	"github.com/mirrorkit/mirrorkit/engine/client"
	"github.com/mirrorkit/mirrorkit/engine/globals"
)

type kvCmd struct {
	Set   kvSetCmd   `cmd:"" help:"Set a node's value: kv set REF VALUE."`
	Get   kvGetCmd   `cmd:"" help:"Print a node's value."`
	Kill  kvKillCmd  `cmd:"" help:"Remove a node and its whole subtree (or only the node with --node-only)."`
	Order kvOrderCmd `cmd:"" help:"Print the next (or previous) sibling of a reference's last subscript; \"\" starts at the first."`
	Query kvQueryCmd `cmd:"" help:"Print the nodes of a subtree in order, as REF=VALUE lines."`
	Incr  kvIncrCmd  `cmd:"" help:"Add a number to a node's value (absent counts as 0) and print the result."`
	CAS   kvCASCmd   `cmd:"" name:"cas" help:"Set a node's value only if it currently holds EXPECTED (or is absent with --absent)."`
}

// kvTarget is what every kv command needs: a member, a database, a reference.
type kvTarget struct {
	remote
	DB  string `required:"" help:"Database name."`
	Ref string `arg:"" help:"Global reference, e.g. '^Orders(42,\"total\")'."`
	Hex bool   `help:"Values are hexadecimal bytes (input and output)."`
}

func (t *kvTarget) check() error {
	if _, err := globals.Parse(t.Ref); err != nil {
		return usageError{Err: err}
	}
	return nil
}

func (t *kvTarget) decodeValue(v string) ([]byte, error) {
	if !t.Hex {
		return []byte(v), nil
	}
	b, err := hex.DecodeString(v)
	if err != nil {
		return nil, usage("value %q is not hexadecimal: %v", v, err)
	}
	return b, nil
}

func (t *kvTarget) formatValue(v []byte) string {
	if t.Hex {
		return hex.EncodeToString(v)
	}
	return string(v)
}

// quoted prints a value the way REF=VALUE lines show it: canonical numbers bare, anything else as a quoted string.
func (t *kvTarget) quoted(v []byte) string {
	if t.Hex {
		return hex.EncodeToString(v)
	}
	if globals.IsCanonical(string(v)) {
		return string(v)
	}
	return globals.Str(string(v)).String()
}

// with dials the member, runs f, and closes the connection.
func (t *kvTarget) with(f func(c *client.Client) error) error {
	if err := t.check(); err != nil {
		return err
	}
	ctx, cancel := t.context()
	defer cancel()
	c, err := t.dial(ctx)
	if err != nil {
		return err
	}
	defer c.Close()
	return f(c)
}

type kvSetCmd struct {
	kvTarget
	Value string `arg:"" help:"The value."`
}

func (k *kvSetCmd) Run() error {
	v, err := k.decodeValue(k.Value)
	if err != nil {
		return err
	}
	return k.with(func(c *client.Client) error {
		ctx, cancel := k.context()
		defer cancel()
		if err := c.Set(ctx, k.DB, k.Ref, v); err != nil {
			return err
		}
		if k.JSON {
			return printJSON(map[string]any{"ref": k.Ref, "set": true})
		}
		return nil
	})
}

type kvGetCmd struct{ kvTarget }

func (k *kvGetCmd) Run() error {
	return k.with(func(c *client.Client) error {
		ctx, cancel := k.context()
		defer cancel()
		v, ok, err := c.Get(ctx, k.DB, k.Ref)
		if err != nil {
			return err
		}
		if k.JSON {
			return printJSON(map[string]any{"ref": k.Ref, "exists": ok, "value": k.formatValue(v)})
		}
		if !ok {
			return fmt.Errorf("%s is undefined in database %s", k.Ref, k.DB)
		}
		fmt.Println(k.formatValue(v))
		return nil
	})
}

type kvKillCmd struct {
	kvTarget
	NodeOnly bool `help:"Remove only the node's own value, keeping its descendants."`
}

func (k *kvKillCmd) Run() error {
	return k.with(func(c *client.Client) error {
		ctx, cancel := k.context()
		defer cancel()
		kill := c.Kill
		if k.NodeOnly {
			kill = c.KillNode
		}
		if err := kill(ctx, k.DB, k.Ref); err != nil {
			return err
		}
		if k.JSON {
			return printJSON(map[string]any{"ref": k.Ref, "killed": true})
		}
		return nil
	})
}

type kvOrderCmd struct {
	kvTarget
	Reverse bool `help:"Previous sibling instead of next."`
}

func (k *kvOrderCmd) Run() error {
	return k.with(func(c *client.Client) error {
		ctx, cancel := k.context()
		defer cancel()
		next, found, err := c.Order(ctx, k.DB, k.Ref, k.Reverse)
		if err != nil {
			return err
		}
		if k.JSON {
			return printJSON(map[string]any{"ref": k.Ref, "found": found, "next": next})
		}
		if found {
			fmt.Println(next)
		}
		return nil
	})
}

type kvQueryCmd struct {
	kvTarget
	From  string `help:"Resume after this reference."`
	Limit int    `default:"0" help:"Print at most this many nodes (0: all)."`
}

func (k *kvQueryCmd) Run() error {
	if k.From != "" {
		if _, err := globals.Parse(k.From); err != nil {
			return usageError{Err: fmt.Errorf("--from: %w", err)}
		}
	}
	return k.with(func(c *client.Client) error {
		type row struct {
			Ref   string `json:"ref"`
			Value string `json:"value"`
		}
		var rows []row
		from, printed := k.From, 0
		for {
			batch := 1000
			if k.Limit > 0 && k.Limit-printed < batch {
				batch = k.Limit - printed
			}
			ctx, cancel := k.context()
			pairs, more, err := c.Query(ctx, k.DB, k.Ref, from, batch)
			cancel()
			if err != nil {
				return err
			}
			for _, p := range pairs {
				if k.JSON {
					rows = append(rows, row{p.Ref, k.formatValue(p.Value)})
				} else {
					fmt.Printf("%s=%s\n", p.Ref, k.quoted(p.Value))
				}
				from = p.Ref
			}
			printed += len(pairs)
			if !more || len(pairs) == 0 || (k.Limit > 0 && printed >= k.Limit) {
				break
			}
		}
		if k.JSON {
			if rows == nil {
				rows = []row{}
			}
			return printJSON(rows)
		}
		return nil
	})
}

type kvIncrCmd struct {
	kvTarget
	By string `arg:"" optional:"" default:"1" help:"The number to add (default 1)."`
}

func (k *kvIncrCmd) Run() error {
	if _, err := globals.Canonical(k.By); err != nil {
		return usageError{Err: err}
	}
	return k.with(func(c *client.Client) error {
		ctx, cancel := k.context()
		defer cancel()
		v, err := c.Incr(ctx, k.DB, k.Ref, k.By)
		if err != nil {
			return err
		}
		if k.JSON {
			return printJSON(map[string]any{"ref": k.Ref, "value": v})
		}
		fmt.Println(v)
		return nil
	})
}

type kvCASCmd struct {
	kvTarget
	Expected string `arg:"" help:"The value the node must hold (ignored with --absent)."`
	New      string `arg:"" help:"The value to set."`
	Absent   bool   `help:"Succeed only if the node has no value."`
}

func (k *kvCASCmd) Run() error {
	expect, err := k.decodeValue(k.Expected)
	if err != nil {
		return err
	}
	v, err := k.decodeValue(k.New)
	if err != nil {
		return err
	}
	return k.with(func(c *client.Client) error {
		ctx, cancel := k.context()
		defer cancel()
		ok, cur, exists, err := c.CAS(ctx, k.DB, k.Ref, expect, !k.Absent, v)
		if err != nil {
			return err
		}
		if k.JSON {
			return printJSON(map[string]any{"ref": k.Ref, "swapped": ok, "exists": exists, "value": k.formatValue(cur)})
		}
		if !ok {
			if !exists {
				return fmt.Errorf("%s: not swapped, the node has no value", k.Ref)
			}
			return fmt.Errorf("%s: not swapped, the node holds %s", k.Ref, strconv.Quote(k.formatValue(cur)))
		}
		return nil
	})
}
