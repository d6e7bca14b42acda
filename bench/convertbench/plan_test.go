package main

import (
	"strings"
	"testing"
)

// The output of migrate convert-shadow --json: the plan, indented, then one event per line.
const migrateOutput = `{
  "plan": {
    "version": 1,
    "id": "e8261f0f906f49c3",
    "steps": [
      {"n": 1, "kind": "create-mirror", "member": "S"},
      {"n": 2, "kind": "join-mirror", "member": "D1"},
      {"n": 3, "kind": "join-mirror", "member": "D2"},
      {"n": 4, "kind": "copy", "member": "D1"}
    ]
  }
}
{"time":"2026-11-26T20:10:11Z","plan":"e8261f0f906f49c3","step":1,"kind":"create-mirror","phase":"checks","message":"create mirror MIR: attempt 1"}
{"time":"2026-11-26T20:10:12Z","plan":"e8261f0f906f49c3","step":1,"kind":"create-mirror","phase":"done","message":"create mirror MIR","estimate":"1s","elapsed":"350ms"}
{"time":"2026-11-26T20:10:13Z","plan":"e8261f0f906f49c3","step":2,"kind":"join-mirror","phase":"done","message":"D1 joins","elapsed":"1.5s"}
{"time":"2026-11-26T20:10:14Z","plan":"e8261f0f906f49c3","step":3,"kind":"join-mirror","phase":"done","message":"D2 joins","elapsed":"2s"}
{"time":"2026-11-26T20:12:14Z","plan":"e8261f0f906f49c3","step":4,"kind":"copy","phase":"done","message":"copy","elapsed":"2m0.25s"}
{"event":"done","plan":"e8261f0f906f49c3","state":{"version":1,"plan_id":"e8261f0f906f49c3","steps":[{"n":1,"status":"done"}],"finished":true}}
`

func TestParsePlanOutput(t *testing.T) {
	got, err := parsePlanOutput(strings.NewReader(migrateOutput))
	if err != nil {
		t.Fatal(err)
	}
	if !got.Finished || len(got.Steps) != 3 || got.Steps["join-mirror"] != 2 || got.Steps["copy"] != 1 ||
		got.StepSeconds["create-mirror"] != 0.35 || got.StepSeconds["join-mirror"] != 3.5 || got.StepSeconds["copy"] != 120.25 {
		t.Fatalf("parsePlanOutput = %+v", got)
	}

	unfinished := strings.Replace(migrateOutput, `"finished":true`, `"finished":false`, 1)
	if got, err := parsePlanOutput(strings.NewReader(unfinished)); err != nil || got.Finished {
		t.Fatalf("unfinished plan: %+v, %v", got, err)
	}
	noDone := migrateOutput[:strings.Index(migrateOutput, `{"event":"done"`)]
	if got, err := parsePlanOutput(strings.NewReader(noDone)); err != nil || got.Finished {
		t.Fatalf("no done event: %+v, %v", got, err)
	}
	for name, in := range map[string]string{
		"empty":       "",
		"no plan":     migrateOutput[strings.Index(migrateOutput, `{"time"`):],
		"not JSON":    migrateOutput + "migrate: step 6 failed\n",
		"bad elapsed": strings.Replace(migrateOutput, `"elapsed":"2s"`, `"elapsed":"two seconds"`, 1),
	} {
		if _, err := parsePlanOutput(strings.NewReader(in)); err == nil {
			t.Errorf("%s: parsePlanOutput succeeded", name)
		}
	}
}
