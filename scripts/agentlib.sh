# shellcheck shell=bash
# Shared by scripts/demo.sh and scripts/bench-upgrade.sh: the configuration of a host agent that runs one member.

# write_agent_config FILE NAME BINARY DATA_ADDR ADMIN_ADDR AGENT_ADDR DATA_DIR LOG TOKEN
# The member names its agent (--agent-addr) so that its mirrors record it: `upgrade` finds every agent there. The agent
# autostarts the member.
write_agent_config() {
  cat >"$1" <<CONFIG
listen = "$6"
token = "$9"

[[member]]
name = "$2"
binary = "$3"
args = ["run", "--name", "$2", "--data-dir", "$7", "--listen", "$4", "--admin-listen", "$5",
  "--log-format", "json", "--agent-addr", "$6"]
data_dir = "$7"
log = "$8"
autostart = true
CONFIG
}
