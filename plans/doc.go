// Package plans is the plan model shared by the migrate and upgrade tools: a versioned JSON document of numbered steps, each
// with pre-checks that are re-run at the moment the step executes, a verification, an undo and an estimate, plus a point of no
// return after which undo is refused.
//
// A tool builds a plan from the live state of a mirror and supplies one Handler per step kind. The operator sees the plan
// (RenderText, RenderJSON), dry-runs it (DryRun: every pre-check evaluated live, nothing changed), then runs it (Execute). The
// executor persists a State file next to the plan after every transition and holds an exclusive lock while it runs, so running
// the same command again after a crash or a kill -9 resumes where the plan stopped: steps done are skipped, a step found running
// or failed is retried from its pre-checks, which is why every handler's Run must be idempotent.
//
// The package owns the plan and state formats, the lock file and the rendering. It knows nothing of mirrors or databases: what a
// step does is entirely up to the handlers the tools supply.
package plans
