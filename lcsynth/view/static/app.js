// lcsynth view: lists a run's rows and rejects, filters them, and shows one readably.
// Served by `lcsynth view` (JSON API) or written by `lcsynth view --export` (data.js and rows/*.js).
"use strict";

const STATIC = typeof LCSYNTH_DATA !== "undefined" && LCSYNTH_DATA !== null ? LCSYNTH_DATA : null;
const PAGE = 50, GAP_KEEP = 600, GAP_COLLAPSE = 1600, LONG_SPAN = 2000;
const state = { offset: 0, total: 0, lines: -1, open: null, asked: 0 };
const $ = (id) => document.getElementById(id);

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (key === "class") node.className = value;
    else if (key === "on") for (const [ev, fn] of Object.entries(value)) node.addEventListener(ev, fn);
    else node.setAttribute(key, value);
  }
  for (const child of children) {
    if (child !== null && child !== undefined) node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

function filters() {
  const data = new FormData($("filters"));
  return Object.fromEntries([...data.entries()].filter(([, v]) => String(v).trim() !== ""));
}

async function getJSON(path, params) {
  const reply = await fetch(path + "?" + new URLSearchParams(params || {}));
  if (!reply.ok) throw new Error(path + ": " + reply.status);
  return reply.json();
}

// --- the list ---------------------------------------------------------------------------------------------

function fillSelect(select, counts) {
  const chosen = select.value;
  select.replaceChildren(el("option", { value: "" }, "all"));
  for (const [name, n] of Object.entries(counts)) select.append(el("option", { value: name }, `${name} (${n})`));
  select.value = chosen in counts ? chosen : "";
}

function showSummary(summary) {
  $("run").textContent = summary.run;
  fillSelect($("f-kind"), summary.kinds);
  fillSelect($("f-method"), summary.methods);
  fillSelect($("f-reason"), summary.reasons);
  const live = summary.finished ? "finished" : "being written: refreshed every few seconds";
  const reading = summary.indexing ? ` · indexing (${(summary.bytes / 1e6).toFixed(0)} MB read)` : "";
  $("status").textContent = `${summary.lines} lines · ${live}${reading}`;
}

function staticSelect(wanted, offset) {
  const q = (wanted.q || "").toLowerCase();
  const rows = STATIC.rows.filter((r) =>
    (!wanted.kind || r.kind === wanted.kind) && (!wanted.method || r.method === wanted.method) &&
    (!wanted.reason || r.reason === wanted.reason) &&
    (wanted.min === undefined || (r.tokens !== null && r.tokens >= Number(wanted.min))) &&
    (wanted.max === undefined || (r.tokens !== null && r.tokens <= Number(wanted.max))) &&
    (!q || (r.preview + " " + r.doc).toLowerCase().includes(q)));
  return { rows: rows.slice(offset, offset + PAGE), total: rows.length, complete: true };
}

async function loadList() {
  const wanted = filters(), asked = ++state.asked;
  const found = STATIC ? staticSelect(wanted, state.offset)
    : await getJSON("api/rows", { ...wanted, offset: state.offset, limit: PAGE });
  if (asked !== state.asked) return; // a later filter's answer is (or will be) drawn instead
  state.total = found.total;
  const list = $("list");
  list.replaceChildren();
  for (const row of found.rows) {
    const tags = el("div", { class: "tags" }, el("span", { class: "tag" + (row.kind === "reject" ? " reject" : "") },
      row.kind), row.method ? el("span", { class: "tag" }, row.method) : null,
      row.tokens !== null ? el("span", { class: "tag" }, `${row.tokens} tok`) : null,
      row.reason ? el("span", { class: "tag reject" }, row.reason) : null, row.doc ? el("span", {}, row.doc) : null);
    const item = el("li", { "data-id": row.id, class: row.id === state.open ? "open" : "",
      on: { click: () => openRow(row) } }, tags, el("div", { class: "preview" }, row.preview || ""));
    list.append(item);
  }
  const more = found.complete ? "" : "+ (search stopped; next page continues)";
  $("count").textContent = `${found.total}${more} matching`;
  $("page").textContent = found.rows.length ? `${state.offset + 1}–${state.offset + found.rows.length}` : "none";
  $("prev").disabled = state.offset === 0;
  $("next").disabled = found.complete ? state.offset + PAGE >= found.total : found.rows.length < PAGE;
}

// --- one row ----------------------------------------------------------------------------------------------

function spanTree(spans) {
  // Spans sorted by start (longest first), nested where one holds another; a partial overlap is cut.
  const order = spans.map((s, i) => ({ ...s, index: s.index ?? i, children: [] }))
    .sort((a, b) => a.start - b.start || b.end - a.end);
  const roots = [], stack = [];
  for (const s of order) {
    while (stack.length && stack[stack.length - 1].end <= s.start) stack.pop();
    const parent = stack[stack.length - 1];
    if (parent) { s.end = Math.min(s.end, parent.end); parent.children.push(s); } else roots.push(s);
    stack.push(s);
  }
  return roots;
}

function gap(text, collapse) {
  if (!collapse || text.length <= GAP_COLLAPSE) return [document.createTextNode(text)];
  const hidden = text.slice(GAP_KEEP, text.length - GAP_KEEP);
  const button = el("span", { class: "collapsed", title: "show these characters" },
    `… ${hidden.length.toLocaleString()} characters …`);
  button.addEventListener("click", () => button.replaceWith(document.createTextNode(hidden)));
  return [document.createTextNode(text.slice(0, GAP_KEEP)), button,
    document.createTextNode(text.slice(text.length - GAP_KEEP))];
}

function drawSpans(text, nodes, from, to, collapse, parent) {
  let at = from;
  for (const s of nodes) {
    parent.append(...gap(text.slice(at, s.start), collapse));
    const mark = el("mark", { class: `span span-${s.cls}` + (s.end - s.start > LONG_SPAN ? " long" : ""),
      id: `span-${s.index}`, "data-span": s.index, "data-cls": s.cls, title: s.label });
    drawSpans(text, s.children, s.start, s.end, false, mark);
    parent.append(mark);
    at = s.end;
  }
  parent.append(...gap(text.slice(at, to), collapse));
}

function drawText(field, spans) {
  const box = el("pre", { class: "text", "data-field": field.path });
  const mine = spans.filter((s) => s.field === field.path);
  drawSpans(field.text, spanTree(mine.map((s) => ({ ...s, index: spans.indexOf(s) }))), 0, field.text.length,
    true, box);
  return box;
}

function message(field, spans) {
  const all = el("button", { type: "button", title: "show every character of this text" }, "show all");
  const wrap = el("div", { class: "message", "data-group": field.group },
    el("div", { class: "role" }, el("span", {}, `${field.group === field.role ? "" : field.group + " · "}${field.role}` +
      ` · ${field.text.length.toLocaleString()} chars`), all), drawText(field, spans));
  all.addEventListener("click", () => wrap.querySelectorAll(".collapsed").forEach((b) => b.click()));
  return wrap;
}

function spanList(spans) {
  if (!spans.length) return null;
  const box = el("div", { class: "spans" }, el("strong", {}, `${spans.length} spans`));
  spans.forEach((s, i) => {
    const link = el("a", { href: `#span-${i}`, "data-span": i }, el("span", { class: `swatch span-${s.cls}` }),
      `${s.label} · depth ${(100 * s.depth).toFixed(1)}%`);
    link.addEventListener("click", (event) => {
      event.preventDefault();
      const target = document.getElementById(`span-${i}`);
      if (!target) return;
      target.scrollIntoView({ block: "center" });
      target.classList.add("flash");
      setTimeout(() => target.classList.remove("flash"), 1500);
    });
    box.append(link);
  });
  return box;
}

function keyValues(object) {
  const table = el("table", { class: "kv" });
  for (const [key, value] of Object.entries(object)) {
    const shown = typeof value === "string" ? value : JSON.stringify(value);
    table.append(el("tr", {}, el("td", {}, key), el("td", {}, shown.length > 300 ? shown.slice(0, 300) + "…" : shown)));
  }
  return table;
}

const PROVENANCE = ["method", "model", "template", "templates", "seed", "doc_id", "source_doc_id", "qa_id", "sample",
  "recipe_hash", "lcsynth_version", "request_hash", "unit"];

function drawRow(row) {
  const detail = $("detail");
  const facts = el("div", { class: "facts" }, el("span", { class: "tag" }, row.kind),
    row.method ? el("span", { class: "tag" }, row.method) : null,
    row.tokens !== null ? el("span", { class: "tag" }, `${row.tokens} tokens`) : null,
    row.doc ? el("span", { class: "tag" }, row.doc) : null);
  const parts = [el("h2", {}, row.id), facts];
  if (row.kind === "reject") {
    parts.push(el("p", {}, "reason: ", el("span", { class: "reason" }, row.meta.reason || "?"),
      row.meta.detail ? ` — ${row.meta.detail}` : ""));
  }
  parts.push(spanList(row.spans));
  const groups = {};
  for (const field of row.fields) (groups[field.group] = groups[field.group] || []).push(field);
  const drawGroup = (name) => el("div", { class: "group", "data-group": name },
    ...(groups[name] || []).map((f) => message(f, row.spans)));
  if (groups.chosen || groups.rejected) {
    parts.push(drawGroup("prompt"), el("div", { class: "side-by-side" }, el("div", {}, el("h3", {}, "chosen"),
      drawGroup("chosen")), el("div", {}, el("h3", {}, "rejected"), drawGroup("rejected"))));
    if (groups.short_prompt) {
      parts.push(el("details", {}, el("summary", {}, "short prompt (the chosen answer's context)"),
        drawGroup("short_prompt")));
    }
  } else {
    for (const name of Object.keys(groups)) parts.push(drawGroup(name));
  }
  if (Object.keys(row.columns).length) parts.push(el("h3", {}, "other columns"), keyValues(row.columns));
  const provenance = Object.fromEntries(PROVENANCE.filter((k) => k in row.meta).map((k) => [k, row.meta[k]]));
  parts.push(el("h3", {}, "provenance"), keyValues(provenance));
  parts.push(el("details", {}, el("summary", {}, "meta (all of it)"),
    el("pre", { class: "meta" }, JSON.stringify(row.meta, null, 2))));
  detail.replaceChildren(...parts.filter((p) => p !== null));
  detail.scrollTop = 0;
}

function openRow(entry) {
  state.open = entry.id;
  document.querySelectorAll("#list li").forEach((li) => li.classList.toggle("open", li.dataset.id === entry.id));
  if (STATIC) {
    window.LCSYNTH_ROW = drawRow;
    document.body.append(el("script", { src: entry.file }));
  } else {
    getJSON("api/row", { id: entry.id }).then(drawRow).catch((e) => { $("detail").textContent = String(e); });
  }
}

// --- start and follow ---------------------------------------------------------------------------------------

async function refresh() {
  const summary = STATIC ? STATIC.summary : await getJSON("api/summary");
  showSummary(summary);
  if (summary.lines !== state.lines) {
    state.lines = summary.lines;
    await loadList();
  }
  return summary;
}

function start() {
  const changed = () => { state.offset = 0; loadList(); };
  $("filters").addEventListener("input", changed);
  $("filters").addEventListener("change", changed); // a select set by script or driver may send only this
  $("filters").addEventListener("submit", (event) => event.preventDefault());
  $("prev").addEventListener("click", () => { state.offset = Math.max(0, state.offset - PAGE); loadList(); });
  $("next").addEventListener("click", () => { state.offset += PAGE; loadList(); });
  if (STATIC) { refresh(); return; }
  const follow = () => refresh().then(() => setTimeout(follow, 2000), () => setTimeout(follow, 5000));
  follow();
}

start();
