// The Mirror Monitor page: polls this member's admin API and redraws. Read-only; every value comes from the same JSON that
// `member status --json` prints, except the latency charts, which are the history of this member's own row across polls.
"use strict";

const POLL_MS = 2000;
const WINDOW_MS = 5 * 60 * 1000; // how far back the latency charts reach
const CHART_W = 300;
const CHART_H = 80;
const SVG_NS = "http://www.w3.org/2000/svg";

// Per mirror: [{t, journal, dejournal}] samples, seconds behind or null when not applicable (primary, disconnected).
const history = new Map();
let polls = 0;

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v !== undefined && v !== null && v !== false) node.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children) {
    if (c !== undefined && c !== null && c !== false) node.append(c);
  }
  return node;
}

function svg(tag, attrs) {
  const node = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
  return node;
}

// tone classifies a user-visible status string (MIRRORING.md §3–5, §8) for colour; the text itself is always shown.
function tone(s) {
  if (!s || s === "N/A") return "none";
  if (/^(In Trouble|Down|Crashed|Error|Stopped|Disconnected|Warning!|Dejournaling Stopped|Database Dismounted|Orphaned|Obsolete)/.test(s)) return "bad";
  if (/behind$|^(Transition|Synchronizing|Waiting|Not Initialized|Needs|Catchup Running|Downloading)/.test(s)) return "warn";
  return "ok";
}

function statusCell(field, text, detail) {
  return el("td", { "data-field": field, "data-status": text || "" },
    el("span", { class: "st st-" + tone(text) }, text || "—"),
    detail ? el("span", { class: "detail" }, detail) : null);
}

// parseDuration reads a Go duration string ("5s", "1m30s", "1h2m3s", "250ms") as seconds, or null.
function parseDuration(s) {
  const units = { h: 3600, m: 60, s: 1, ms: 1e-3, us: 1e-6, "µs": 1e-6, ns: 1e-9 };
  const re = /(\d+(?:\.\d+)?)(ms|us|µs|ns|h|m|s)/gy;
  let total = 0;
  let matched = 0;
  let m;
  while ((m = re.exec(s)) !== null) {
    total += parseFloat(m[1]) * units[m[2]];
    matched = re.lastIndex;
  }
  return matched === s.length && matched > 0 ? total : null;
}

// behindSeconds turns a journal transfer or dejournaling column into seconds behind: 0 when caught up, null when it does
// not apply or the member is disconnected.
function behindSeconds(s) {
  if (s === "Caught up" || s === "Active") return 0;
  const m = /^(\S+) behind$/.exec(s || "");
  return m ? parseDuration(m[1]) : null;
}

function bytesText(n) {
  if (n >= 1 << 30) return (n / (1 << 30)).toFixed(1) + " GiB";
  if (n >= 1 << 20) return (n / (1 << 20)).toFixed(1) + " MiB";
  if (n >= 1 << 10) return (n / (1 << 10)).toFixed(1) + " KiB";
  return Math.round(n) + " B";
}

function secondsText(v) {
  return v < 10 ? (Math.round(v * 10) / 10) + " s" : Math.round(v) + " s";
}

async function getJSON(url) {
  const resp = await fetch(url, { cache: "no-store", headers: { Accept: "application/json" } });
  if (!resp.ok) {
    let msg = "HTTP " + resp.status;
    try {
      const body = await resp.json();
      if (body && body.error) msg += ": " + body.error;
    } catch (_) {
      // The body was not JSON; the status alone says enough.
    }
    throw new Error(url.replace(/^\.\./, "") + ": " + msg);
  }
  return resp.json();
}

function record(st, now) {
  const own = (st.members || []).find((m) => m.name === st.member) || {};
  const samples = history.get(st.mirror) || [];
  samples.push({ t: now, journal: behindSeconds(own.journal_transfer), dejournal: behindSeconds(own.dejournaling) });
  while (samples.length && samples[0].t < now - WINDOW_MS) samples.shift();
  history.set(st.mirror, samples);
  return samples;
}

// chart draws one latency series as polylines (broken where the value does not apply) scaled to its own maximum.
function chart(id, title, samples, key, now) {
  const points = samples.filter((s) => s[key] !== null);
  const current = samples.length ? samples[samples.length - 1][key] : null;
  const max = Math.max(1, ...points.map((s) => s[key]));
  const top = Math.ceil(max);
  const graph = svg("svg", { viewBox: `0 0 ${CHART_W} ${CHART_H}`, preserveAspectRatio: "none", role: "img", "aria-labelledby": id });
  for (const y of [4, CHART_H / 2, CHART_H - 4]) {
    graph.append(svg("line", { class: "grid", x1: 0, x2: CHART_W, y1: y, y2: y }));
  }
  let run = [];
  const flush = () => {
    if (run.length === 1) run.push([run[0][0] + 1, run[0][1]]);
    if (run.length) graph.append(svg("polyline", { class: "series", points: run.map((p) => p.join(",")).join(" ") }));
    run = [];
  };
  for (const s of samples) {
    if (s[key] === null) {
      flush();
      continue;
    }
    const x = ((s.t - (now - WINDOW_MS)) / WINDOW_MS) * CHART_W;
    const y = CHART_H - 4 - (s[key] / top) * (CHART_H - 8);
    run.push([x.toFixed(1), y.toFixed(1)]);
  }
  flush();
  const caption = el("figcaption", { id }, el("strong", {}, title), " — ");
  if (current === null) {
    caption.append(points.length ? "not applicable now" : "not applicable on this member");
  } else {
    caption.append(`now ${secondsText(current)} behind, peak ${secondsText(Math.max(...points.map((s) => s[key])))} (scale 0–${top} s, last 5 min)`);
  }
  return el("figure", { "data-chart": key, "data-current": current === null ? "" : current }, caption, graph);
}

function fact(label, field, value) {
  return el("div", {}, el("dt", {}, label), el("dd", { "data-field": field }, value));
}

function membersTable(st) {
  const body = el("tbody");
  for (const m of st.members || []) {
    const self = m.name === st.member;
    body.append(el("tr", { "data-member": m.name, class: self ? "self" : null, "aria-current": self ? "true" : null },
      el("th", { scope: "row" }, m.name, el("span", { class: "detail mono" }, m.addr || "")),
      el("td", { "data-field": "type" }, m.type || ""),
      statusCell("status", m.status, m.error),
      statusCell("transfer", m.journal_transfer, m.received ? "received " + m.received : ""),
      statusCell("dejournal", m.dejournaling, m.applied ? "applied " + m.applied : "")));
  }
  return el("table", { class: "members", "data-table": "members" },
    el("caption", {}, `Every member of ${st.mirror}, with journal transfer as the primary sees it`),
    el("thead", {}, el("tr", {},
      el("th", { scope: "col" }, "Member"),
      el("th", { scope: "col" }, "Type"),
      el("th", { scope: "col" }, "Status"),
      el("th", { scope: "col" }, "Journal transfer"),
      el("th", { scope: "col" }, "Dejournaling"))),
    body);
}

function databasesTable(st) {
  const dbs = st.databases || [];
  if (!dbs.length) return el("p", { class: "empty", "data-field": "no-databases" }, `No mirrored databases on ${st.member}.`);
  const body = el("tbody");
  for (const d of dbs) {
    body.append(el("tr", { "data-database": d.name },
      el("th", { scope: "row" }, d.name),
      statusCell("status", d.status, d.error),
      // A copy being downloaded has no record to apply yet: show how far the download is.
      el("td", { "data-field": "next-record", class: "mono" }, d.progress || d.next_record || "")));
  }
  return el("table", { class: "databases", "data-table": "databases" },
    el("caption", {}, `Mirrored databases of ${st.mirror} on ${st.member}`),
    el("thead", {}, el("tr", {},
      el("th", { scope: "col" }, "Database"),
      el("th", { scope: "col" }, "Status"),
      el("th", { scope: "col" }, "Next record to dejournal"))),
    body);
}

function pendingList(st) {
  const pending = st.pending || [];
  if (!pending.length) return null;
  return el("section", { "data-field": "pending" },
    el("h3", {}, "Members awaiting certificate authorization"),
    el("ul", {}, ...pending.map((p) => el("li", { "data-pending": p.member.name },
      `${p.member.name} (${p.member.addr}) — ${p.dn}, since ${p.since}`))));
}

function mirrorSection(st, now) {
  const samples = record(st, now);
  const primary = st.primary ? `${st.primary} (${st.primary_addr || "address unknown"})` : "none known";
  const mode = [`Arbiter: ${st.arbiter || "no arbiter"}`, `Failover mode: ${st.failover_mode || "—"}`];
  if (st.arbiter_connection) mode.push(st.arbiter_connection);
  if (st.no_failover) mode.push("No-failover set");
  const failovers = Object.entries(st.failovers || {}).map(([how, n]) => `${how} ${n}`).join(", ");
  const onPrimary = st.role === "primary";
  const hid = "mirror-" + st.mirror + "-title";
  return el("section", { class: "mirror", id: "mirror-" + st.mirror, "data-mirror": st.mirror, "data-role": st.role, "aria-labelledby": hid },
    el("h2", { id: hid }, `Mirror ${st.mirror}`),
    el("dl", { class: "facts" },
      fact("Primary", "primary", primary),
      fact("Epoch", "epoch", String(st.epoch)),
      fact("This member", "member", `${st.member} (${st.role})`),
      fact("QoS timeout", "qos", st.qos || "—"),
      fact("TLS required", "tls", st.require_tls ? "yes" : "no"),
      fact("Mirror journal", "journal", `${st.journal_first || "—"} to ${st.journal_end || "—"}`)),
    el("p", { class: "mode", "data-field": "mode" }, mode.join(" · ")),
    st.trouble ? el("p", { class: "trouble", "data-field": "trouble" }, `${st.member}: ${st.trouble}`) : null,
    st.takeover ? el("p", { class: "trouble", "data-field": "takeover" }, `${st.member} lost the primary and does not take over: ${st.takeover}`) : null,
    (failovers || st.trouble_episodes) ? el("p", { class: "mode", "data-field": "failovers" },
      `${st.member} became primary by failover: ${failovers || "never"} · In Trouble ${st.trouble_episodes || 0} times`) : null,
    el("h3", {}, "Members"),
    membersTable(st),
    pendingList(st),
    el("h3", {}, `Mirrored databases on ${st.member}`),
    databasesTable(st),
    el("h3", {}, onPrimary ? "Journal data sent" : "Journal arrival"),
    el("dl", { class: "facts" },
      fact("On the wire", "wire-rate", onPrimary ? "—" : bytesText(st.wire_bytes_per_second || 0) + "/s"),
      fact("Journal (decompressed)", "journal-rate", onPrimary ? "—" : bytesText(st.journal_bytes_per_second || 0) + "/s"),
      fact("Compression ratio", "ratio", st.compression_ratio ? st.compression_ratio.toFixed(2) : "—"),
      fact("Total on the wire", "wire-bytes", bytesText(st.wire_bytes || 0)),
      fact("Total journal bytes", "journal-bytes", bytesText(st.journal_bytes || 0))),
    el("h3", {}, `Latency on ${st.member}`),
    el("div", { class: "charts" },
      chart(`chart-${st.mirror}-journal`, "Journal latency", samples, "journal", now),
      chart(`chart-${st.mirror}-dejournal`, "Dejournal latency", samples, "dejournal", now)));
}

function bannerMessages(mirrors) {
  const out = [];
  for (const st of mirrors) {
    const own = (st.members || []).find((m) => m.name === st.member);
    if (own && own.status === "In Trouble") {
      out.push(el("p", { class: "trouble", "data-banner": "in-trouble", "data-mirror": st.mirror },
        `This member is In Trouble in mirror ${st.mirror}: it accepts no commits until its peers are resolved.`));
    }
    if (st.role !== "primary") {
      const who = st.primary ? `the primary is ${st.primary} (${st.primary_addr || "address unknown"})` : "no primary is known";
      out.push(el("p", { "data-banner": "not-primary", "data-mirror": st.mirror },
        `This member is not the primary of ${st.mirror}; ${who}.`));
    }
  }
  return out;
}

function render(member, mirrors) {
  const now = Date.now();
  polls++;
  const line = document.getElementById("member-line");
  line.dataset.member = member.member;
  line.textContent = `Member ${member.member} · version ${(member.version && member.version.software) || "?"} · data ${member.data_addr} · admin ${member.admin_addr} · up ${member.uptime}`;
  document.title = `${member.member} — Mirror Monitor`;

  const banner = document.getElementById("banner");
  const messages = bannerMessages(mirrors);
  banner.replaceChildren(...messages);
  banner.hidden = messages.length === 0;

  const main = document.getElementById("mirrors");
  const sections = mirrors.map((st) => mirrorSection(st, now));
  if (!sections.length) {
    sections.push(el("p", { id: "no-mirrors", class: "empty" }, `Member ${member.member} belongs to no mirror.`));
  }
  main.replaceChildren(...sections);
  main.setAttribute("aria-busy", "false");
  main.dataset.polls = String(polls);

  const updated = document.getElementById("updated");
  updated.dataset.updated = new Date(now).toISOString();
  updated.textContent = "Updated " + new Date(now).toLocaleTimeString();
  document.getElementById("fetch-error").hidden = true;
}

function showError(err) {
  const box = document.getElementById("fetch-error");
  const last = document.getElementById("updated").dataset.updated;
  box.textContent = `Cannot read this member's status (${err.message}).` + (last ? ` Showing the data of ${new Date(last).toLocaleTimeString()}.` : "");
  box.hidden = false;
}

async function poll() {
  try {
    const [member, mirrors] = await Promise.all([getJSON("../api/v1/status"), getJSON("../api/v1/mirror/status")]);
    render(member, mirrors);
  } catch (err) {
    showError(err);
  } finally {
    setTimeout(poll, POLL_MS);
  }
}

poll();
