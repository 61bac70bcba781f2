// EvalGrid front end (anywidget ES module, no build step, no CDN).
// View state lives in the model's synced traits; pages come from the kernel through custom messages:
//   browser -> kernel  {type: "page"|"poll"|"feedback", seq, ...}
//   kernel  -> browser {type: "page", seq, rows, total, ...} | {type: "error", seq, message} | ...
// Every text is put in the DOM with textContent (never as HTML).

const SHOW = [
  ["all", "All rows"],
  ["errors", "Errors"],
  ["failures", "Failures"],
  ["passes", "Passes"],
  ["disagree", "Variants disagree"],
];
const SORTS = [
  ["case", "Dataset order"],
  ["metric", "Metric"],
  ["delta", "Delta to baseline"],
  ["disagreement", "Disagreement"],
  ["latency", "Latency"],
  ["cost", "Cost"],
];

function h(tag, cls, text) {
  const n = document.createElement(tag);
  if (cls) n.className = cls;
  if (text !== undefined && text !== null) n.textContent = String(text);
  return n;
}

// Inline SVG icons: emoji fonts are missing on many Linux desktops and headless browsers.
const SVG_NS = "http://www.w3.org/2000/svg";
const THUMB =
  "M2 10h3v10H2zM7 20h9.2a2 2 0 0 0 2-1.6l1.5-7A2 2 0 0 0 17.7 9H13l.8-4.2A1.8 1.8 0 0 0 12 3l-5 6.5z";
const BUBBLE = "M4 4h16a1 1 0 0 1 1 1v11a1 1 0 0 1-1 1H9l-5 4v-4H4a1 1 0 0 1-1-1V5a1 1 0 0 1 1-1z";

function icon(path, flip) {
  const svg = document.createElementNS(SVG_NS, "svg");
  svg.setAttribute("viewBox", "0 0 24 24");
  svg.setAttribute("class", "lw-icon");
  if (flip) svg.setAttribute("transform", "scale(1,-1)");
  const p = document.createElementNS(SVG_NS, "path");
  p.setAttribute("d", path);
  svg.appendChild(p);
  return svg;
}

function option(value, label, selected) {
  const o = h("option", null, label);
  o.value = value;
  if (selected) o.selected = true;
  return o;
}

function labelled(text, control) {
  const l = h("label", "lw-field");
  l.appendChild(h("span", "lw-field-label", text));
  l.appendChild(control);
  return l;
}

function fmtScore(v) {
  if (v === null || v === undefined) return "–";
  const a = Math.abs(v);
  if (a >= 1000) return Math.round(v).toLocaleString("en-US");
  if (a >= 100) return v.toFixed(0);
  if (a >= 10) return v.toFixed(1);
  return v.toFixed(2);
}

function fmtMs(v) {
  if (v === null || v === undefined) return null;
  if (v < 1) return "<1 ms";
  return v >= 1000 ? `${(v / 1000).toFixed(v >= 10000 ? 0 : 1)} s` : `${Math.round(v)} ms`;
}

function fmtCost(v) {
  if (v === null || v === undefined) return null;
  if (v === 0) return "$0";
  return v < 0.01 ? `$${Number(v.toPrecision(2))}` : `$${v.toFixed(4)}`;
}

function fmtInt(v) {
  return Number(v).toLocaleString("en-US");
}

function scoreColour(v, m) {
  if (v === null || v === undefined || !m || m.min === null || m.max === null) return null;
  let t = m.max > m.min ? (v - m.min) / (m.max - m.min) : 0.5;
  t = Math.max(0, Math.min(1, m.higher_is_better ? t : 1 - t));
  return `hsla(${Math.round(120 * t)}, 70%, 45%, 0.28)`;
}

function render({ model, el }) {
  const root = h("div", "lw-grid");
  el.appendChild(root);
  const toolbar = h("div", "lw-toolbar");
  const banner = h("div", "lw-banner");
  const statusLine = h("div", "lw-status");
  const tableWrap = h("div", "lw-table-wrap");
  const pager = h("div", "lw-pager");
  root.append(toolbar, banner, statusLine, tableWrap, pager);

  let seq = 0;
  let latest = 0;
  let data = null;
  let sentAt = 0;
  let pollTimer = null;
  let pollDelay = 1000;
  let searchTimer = null;
  const expanded = new Set(); // "case|column" of expanded cells
  const repeatShown = new Map(); // "case|column" -> repeat index shown
  const commentOpen = new Set();
  const fullTexts = new Map(); // key -> full text fetched from the kernel

  const get = (k) => model.get(k);
  const metricsInfo = () => new Map(((data && data.metrics) || []).map((m) => [m.name, m]));

  let deadKernel = false; // true once a saved snapshot went 5 s without any answer from a kernel

  function request(type = "page", extra = {}) {
    seq += 1;
    if (type === "page") {
      latest = seq;
      sentAt = performance.now();
      root.classList.add("lw-loading");
    }
    model.send({ type, seq, ...extra });
  }

  function setState(changes, resetPage = true) {
    if (deadKernel) {
      // a notebook reopened without its kernel: nothing can answer, so the saved view stays on screen and
      // the toolbar goes back to it rather than showing a choice that will never load
      banner.replaceChildren(h("span", null, "no live kernel: run the cell again to filter, sort or page"));
      banner.classList.add("lw-show");
      buildToolbar();
      return;
    }
    for (const [k, v] of Object.entries(changes)) model.set(k, v);
    if (resetPage) model.set("page", 0);
    model.save_changes();
    request();
  }

  // -- toolbar ---------------------------------------------------------------------------

  function select(items, value, onChange, title) {
    const s = h("select", "lw-select");
    if (title) s.title = title;
    for (const [v, label] of items) s.appendChild(option(v, label, v === value));
    s.addEventListener("change", () => onChange(s.value));
    return s;
  }

  function numberInput(value, onChange, title) {
    const i = h("input", "lw-number");
    i.type = "number";
    i.step = "0.05";
    i.value = String(value);
    i.title = title;
    i.addEventListener("change", () => {
      const v = parseFloat(i.value);
      if (!Number.isNaN(v)) onChange(v);
    });
    return i;
  }

  function buildToolbar() {
    // keep the caret in the search box when the toolbar is rebuilt while typing
    const active = document.activeElement;
    const typing = active && active.classList && active.classList.contains("lw-search") && toolbar.contains(active);
    const caret = typing ? active.selectionStart : null;
    toolbar.replaceChildren();
    const metrics = get("metric_names");
    const columns = get("columns").map((c) => c.key);
    const mItems = metrics.map((m) => [m, m]);

    const row1 = h("div", "lw-toolbar-row");
    row1.appendChild(labelled("Show", select(SHOW, get("show"), (v) => setState({ show: v }), "which rows to show")));
    const show = get("show");
    if (show === "failures" || show === "passes") {
      row1.appendChild(
        labelled(
          "where",
          select(mItems, get("failure_metric"), (v) => setState({ failure_metric: v }), "metric that decides failure"),
        ),
      );
      row1.appendChild(
        select(
          [
            ["<", "below"],
            [">", "above"],
          ],
          get("failure_op"),
          (v) => setState({ failure_op: v }),
          "a cell fails when its score is below / above the threshold",
        ),
      );
      row1.appendChild(
        numberInput(get("failure_threshold"), (v) => setState({ failure_threshold: v }), "failure threshold"),
      );
    }
    if (show === "disagree") {
      row1.appendChild(
        labelled(
          "on",
          select(
            [["", "output text"], ...mItems],
            get("disagree_metric"),
            (v) => setState({ disagree_metric: v }),
            "variants disagree when their outputs differ, or when a metric's spread exceeds the threshold",
          ),
        ),
      );
      if (get("disagree_metric")) {
        row1.appendChild(
          labelled(
            "spread >",
            numberInput(get("disagree_spread"), (v) => setState({ disagree_spread: v }), "minimum score spread"),
          ),
        );
      }
    }
    const search = h("input", "lw-search");
    search.type = "search";
    search.placeholder = get("search_regex") ? "regex over inputs and outputs" : "search inputs and outputs";
    search.value = get("search");
    search.setAttribute("aria-label", "search");
    search.addEventListener("input", () => {
      clearTimeout(searchTimer);
      searchTimer = setTimeout(() => setState({ search: search.value }), 350);
    });
    search.addEventListener("keydown", (e) => {
      if (e.key === "Enter") {
        clearTimeout(searchTimer);
        setState({ search: search.value });
      }
    });
    row1.appendChild(search);
    const rx = h("input");
    rx.type = "checkbox";
    rx.checked = get("search_regex");
    rx.addEventListener("change", () => setState({ search_regex: rx.checked }));
    const rxl = h("label", "lw-check");
    rxl.append(rx, h("span", null, "regex"));
    row1.appendChild(rxl);
    row1.appendChild(
      labelled(
        "Feedback",
        select(
          [
            ["any", "any"],
            ["has", "rated"],
            ["none", "not rated"],
          ],
          get("feedback"),
          (v) => setState({ feedback: v }),
          "rows with / without human feedback",
        ),
      ),
    );

    const row2 = h("div", "lw-toolbar-row");
    row2.appendChild(labelled("Sort", select(SORTS, get("sort_by"), (v) => setState({ sort_by: v }), "row order")));
    const sortBy = get("sort_by");
    if (sortBy === "metric" || sortBy === "delta" || sortBy === "disagreement") {
      const items = sortBy === "disagreement" ? [["", "output text"], ...mItems] : mItems;
      row2.appendChild(select(items, get("sort_metric"), (v) => setState({ sort_metric: v }), "metric to sort by"));
    }
    if (sortBy === "metric" || sortBy === "delta") {
      const cols = [["", sortBy === "metric" ? "mean of variants" : "mean of others"], ...columns.map((c) => [c, c])];
      row2.appendChild(select(cols, get("sort_column"), (v) => setState({ sort_column: v }), "variant to sort by"));
    }
    if (sortBy !== "case" || get("sort_desc")) {
      const dir = h("button", "lw-btn", get("sort_desc") ? "↓ desc" : "↑ asc");
      dir.title = "reverse the order";
      dir.addEventListener("click", () => setState({ sort_desc: !get("sort_desc") }));
      row2.appendChild(dir);
    }
    row2.appendChild(
      labelled(
        "Baseline",
        select(
          [["", "none"], ...columns.map((c) => [c, c])],
          get("baseline"),
          (v) => setState({ baseline: v }, false),
          "variant the others are compared with",
        ),
      ),
    );
    const diffs = [
      ["off", "off"],
      ["baseline", "vs baseline"],
    ];
    if (get("dataset_columns").length) diffs.push(["expected", "vs expected"]);
    row2.appendChild(
      labelled("Diff", select(diffs, get("diff"), (v) => setState({ diff: v }, false), "highlight changed words")),
    );
    row2.appendChild(
      labelled(
        "Expected",
        select(
          [["", "none"], ...get("dataset_columns").map((c) => [c, c])],
          get("expected_column"),
          (v) => setState({ expected_column: v }, false),
          "dataset column holding the expected output",
        ),
      ),
    );
    const cols = h("details", "lw-columns");
    cols.appendChild(h("summary", "lw-btn", `Inputs (${get("input_columns").length})`));
    const box = h("div", "lw-columns-box");
    for (const c of get("dataset_columns")) {
      const cb = h("input");
      cb.type = "checkbox";
      cb.checked = get("input_columns").includes(c);
      cb.addEventListener("change", () => {
        const now = get("dataset_columns").filter((x) =>
          x === c ? cb.checked : get("input_columns").includes(x),
        );
        setState({ input_columns: now }, false);
      });
      const l = h("label", "lw-check");
      l.append(cb, h("span", null, c));
      box.appendChild(l);
    }
    cols.appendChild(box);
    row2.appendChild(cols);
    toolbar.append(row1, row2);
    if (typing) {
      search.focus();
      if (caret !== null) search.setSelectionRange(caret, caret);
    }
  }

  // -- cells -----------------------------------------------------------------------------

  // src: what to ask the kernel for when the page carries only the start of a long text
  function textBlock(text, cut, diff, key, cls, src) {
    const wrap = h("div", `lw-text ${cls || ""}`);
    const body = h("div", "lw-text-body");
    const full = fullTexts.get(key);
    if (full !== undefined) {
      body.textContent = full;
      cut = 0;
    } else if (diff) {
      for (const [seg, changed] of diff) body.appendChild(changed ? h("mark", "lw-diff", seg) : document.createTextNode(seg));
    } else {
      body.textContent = text === null || text === undefined ? "" : String(text);
    }
    const open = expanded.has(key);
    if (!open) body.classList.add("lw-clamp");
    wrap.appendChild(body);
    const more = h("button", "lw-link lw-more", open ? "less" : cut ? `more (${fmtInt(cut)} chars not shown)` : "more");
    // shown only when the text is clipped (checked after layout) or was cut by the kernel
    if (!open && !cut) more.hidden = true;
    more.addEventListener("click", () => {
      if (expanded.has(key)) {
        expanded.delete(key);
      } else {
        expanded.add(key);
        if (cut && src) request("text", { key, ...src }); // the rest comes from the kernel
      }
      renderTable();
    });
    wrap.appendChild(more);
    return wrap;
  }

  // "more" links appear on texts the clamp actually cuts, measured when they scroll into view
  const clipWatcher =
    typeof IntersectionObserver === "function"
      ? new IntersectionObserver((entries) => {
          const clipped = [];
          for (const e of entries) {
            if (!e.isIntersecting) continue;
            clipWatcher.unobserve(e.target);
            const more = e.target.parentElement.querySelector(".lw-more");
            if (more && more.hidden && e.target.scrollHeight > e.target.clientHeight + 1) clipped.push(more);
          }
          for (const more of clipped) more.hidden = false;
        })
      : null;

  function revealClipped(container) {
    const bodies = container.querySelectorAll(".lw-text-body.lw-clamp");
    if (clipWatcher) {
      clipWatcher.disconnect();
      for (const b of bodies) clipWatcher.observe(b);
    } else {
      for (const b of bodies) b.parentElement.querySelector(".lw-more").hidden = false;
    }
  }

  function scoreChips(rep, baseRep, isBaseline) {
    const chips = h("div", "lw-scores");
    const info = metricsInfo();
    for (const m of get("metric_names")) {
      if (!(m in rep.scores) && !(m in rep.score_errors)) continue;
      const v = rep.scores[m];
      const chip = h("span", "lw-score");
      const colour = scoreColour(v, info.get(m));
      if (colour) chip.style.background = colour;
      chip.appendChild(h("span", "lw-score-name", m));
      chip.appendChild(h("span", "lw-score-value", rep.score_errors[m] ? "error" : fmtScore(v)));
      let title = `${m} = ${v === null || v === undefined ? "no score" : v}`;
      const mi = info.get(m);
      if (mi && mi.min !== null) title += ` (range in run ${fmtScore(mi.min)} to ${fmtScore(mi.max)})`;
      if (rep.score_errors[m]) title += `\n${rep.score_errors[m]}`;
      if (!isBaseline && baseRep && v !== null && v !== undefined) {
        const b = baseRep.scores[m];
        if (b !== null && b !== undefined) {
          const d = v - b;
          const good = mi && !mi.higher_is_better ? d < 0 : d > 0;
          const delta = h("span", `lw-delta ${Math.abs(d) < 1e-9 ? "" : good ? "lw-up" : "lw-down"}`);
          delta.textContent = Math.abs(d) < 1e-9 ? "±0" : `${d > 0 ? "+" : "−"}${fmtScore(Math.abs(d))}`;
          chip.appendChild(delta);
          title += `\nbaseline ${fmtScore(b)}`;
        }
      }
      chip.title = title;
      chips.appendChild(chip);
    }
    return chips;
  }

  function feedbackBar(row, column, rep, fb) {
    const bar = h("div", "lw-fb");
    const send = (extra) => request("feedback", { case_id: row.case_id, column, repeat: rep.repeat, ...extra });
    const up = h("button", `lw-fb-btn ${fb.thumbs === true ? "lw-on" : ""}`);
    up.appendChild(icon(THUMB, false));
    up.title = "good answer";
    up.setAttribute("aria-label", "thumbs up");
    up.dataset.action = "thumbs-up";
    up.addEventListener("click", () => send({ thumbs: true }));
    const down = h("button", `lw-fb-btn ${fb.thumbs === false ? "lw-on" : ""}`);
    down.appendChild(icon(THUMB, true));
    down.title = "bad answer";
    down.setAttribute("aria-label", "thumbs down");
    down.dataset.action = "thumbs-down";
    down.addEventListener("click", () => send({ thumbs: false }));
    bar.append(up, down);
    const stars = h("span", "lw-stars");
    for (let i = 1; i <= 5; i++) {
      const s = h("button", `lw-star ${fb.rating !== null && i <= Math.round(fb.rating) ? "lw-on" : ""}`, "★");
      s.title = `rate ${i} of 5`;
      s.dataset.action = `rate-${i}`;
      s.addEventListener("click", () => send({ rating: i }));
      stars.appendChild(s);
    }
    bar.appendChild(stars);
    const key = `${row.case_id}|${column}`;
    const cbtn = h("button", "lw-fb-btn");
    cbtn.appendChild(icon(BUBBLE, false));
    if (fb.comments.length) cbtn.appendChild(h("span", "lw-count-badge", fb.comments.length));
    cbtn.title = "comment";
    cbtn.dataset.action = "comment";
    cbtn.addEventListener("click", () => {
      if (commentOpen.has(key)) commentOpen.delete(key);
      else commentOpen.add(key);
      renderTable();
    });
    bar.appendChild(cbtn);
    const wrap = h("div");
    wrap.appendChild(bar);
    if (commentOpen.has(key)) {
      for (const c of fb.comments) wrap.appendChild(h("div", "lw-comment", c.text));
      const ta = h("textarea", "lw-comment-input");
      ta.rows = 2;
      ta.placeholder = "comment on this answer";
      const save = h("button", "lw-btn", "Save comment");
      save.dataset.action = "save-comment";
      save.addEventListener("click", () => {
        if (ta.value.trim()) send({ comment: ta.value.trim() });
      });
      wrap.append(ta, save);
    }
    return wrap;
  }

  function cellView(row, column, baseline) {
    const cell = row.cells[column];
    const td = h("td", "lw-cell");
    if (!cell || !cell.repeats.length) {
      td.appendChild(h("div", "lw-pending", data && data.live ? "pending…" : "no result"));
      return td;
    }
    const key = `${row.case_id}|${column}`;
    const n = cell.repeats.length;
    const idx = Math.min(repeatShown.get(key) || 0, n - 1);
    const rep = cell.repeats[idx];
    const baseCell = baseline && row.cells[baseline];
    const baseRep = baseCell && baseCell.repeats.length ? baseCell.repeats[Math.min(idx, baseCell.repeats.length - 1)] : null;
    if (n > 1) {
      const nav = h("div", "lw-repeats");
      const prev = h("button", "lw-link", "‹");
      prev.title = "previous repeat";
      prev.disabled = idx === 0;
      prev.addEventListener("click", () => {
        repeatShown.set(key, idx - 1);
        renderTable();
      });
      const next = h("button", "lw-link", "›");
      next.title = "next repeat";
      next.disabled = idx === n - 1;
      next.addEventListener("click", () => {
        repeatShown.set(key, idx + 1);
        renderTable();
      });
      nav.append(prev, h("span", null, `repeat ${idx + 1}/${n}`), next);
      td.appendChild(nav);
    }
    if (rep.error) {
      td.classList.add("lw-has-error");
      const err = h("div", "lw-error");
      err.appendChild(h("b", null, "error: "));
      if (rep.error_kind) err.title = `kind: ${rep.error_kind}`;
      err.appendChild(document.createTextNode(rep.error));
      td.appendChild(err);
    } else if (rep.output === "" || rep.output === null) {
      td.appendChild(h("div", "lw-pending", "(empty output)"));
    } else {
      const src = { field: "output", case_id: row.case_id, column, repeat: rep.repeat };
      td.appendChild(textBlock(rep.output, rep.cut, rep.diff, `${key}|${rep.repeat}`, "lw-output", src));
    }
    td.appendChild(scoreChips(rep, baseRep, column === baseline));
    const meta = [fmtMs(rep.latency_ms), fmtCost(rep.cost), rep.tokens !== null ? `${fmtInt(rep.tokens)} tok` : null];
    if (rep.cached) meta.push("cached");
    td.appendChild(h("div", "lw-meta", meta.filter(Boolean).join(" · ")));
    if (rep.chunks && rep.chunks.length) {
      const det = h("details", "lw-chunks");
      const ids = rep.chunks.map((c) => c.id).join(", ");
      det.appendChild(h("summary", null, `${rep.chunks.length} chunks: ${ids}`));
      for (const c of rep.chunks) {
        const d = h("div", "lw-chunk");
        const head = h("div", "lw-chunk-head");
        head.appendChild(h("b", null, c.id));
        if (c.doc_id) head.appendChild(h("span", null, ` doc ${c.doc_id}`));
        if (c.score !== null) head.appendChild(h("span", "lw-chunk-score", ` score ${fmtScore(c.score)}`));
        d.appendChild(head);
        d.appendChild(h("div", "lw-chunk-text", c.text + (c.cut ? ` … (${fmtInt(c.cut)} more chars)` : "")));
        det.appendChild(d);
      }
      td.appendChild(det);
    }
    td.appendChild(feedbackBar(row, column, rep, cell.feedback));
    // rendering of cells scrolled out of view is skipped by the browser (content-visibility)
    const body = h("div", "lw-cell-body");
    while (td.firstChild) body.appendChild(td.firstChild);
    td.appendChild(body);
    return td;
  }

  // -- table, status, pager --------------------------------------------------------------

  function renderTable() {
    if (!data) return;
    const columns = get("columns").map((c) => c.key);
    const inputs = get("input_columns");
    const baseline = get("baseline");
    const expectedCol = get("expected_column");
    const table = h("table", "lw-table");
    // fill the output area when it is wide, scroll sideways when it is not
    table.style.minWidth = `${7 + 13 * (inputs.length + (expectedCol ? 1 : 0)) + 19 * columns.length}em`;
    const thead = h("thead");
    const hr = h("tr");
    hr.appendChild(h("th", "lw-case-col", "case"));
    for (const c of inputs) hr.appendChild(h("th", "lw-input-col", c));
    if (expectedCol) hr.appendChild(h("th", "lw-input-col lw-expected-col", `${expectedCol} (expected)`));
    for (const c of columns) {
      const th = h("th", c === baseline ? "lw-variant lw-baseline" : "lw-variant", c);
      if (c === baseline) th.appendChild(h("span", "lw-tag", "baseline"));
      hr.appendChild(th);
    }
    thead.appendChild(hr);
    table.appendChild(thead);
    const tbody = h("tbody");
    for (const row of data.rows) {
      const tr = h("tr");
      tr.dataset.case = row.case_id;
      tr.appendChild(h("td", "lw-case", row.case_id));
      for (const c of inputs) {
        const v = row.inputs[c] || { text: null, cut: 0 };
        const td = h("td", "lw-input");
        const src = { field: "input", case_id: row.case_id, name: c };
        td.appendChild(textBlock(v.text, v.cut, null, `${row.case_id}|in:${c}`, "", src));
        tr.appendChild(td);
      }
      if (expectedCol) {
        const v = row.expected || { text: null, cut: 0 };
        const td = h("td", "lw-input lw-expected");
        const src = { field: "input", case_id: row.case_id, name: expectedCol };
        td.appendChild(textBlock(v.text, v.cut, null, `${row.case_id}|expected`, "", src));
        tr.appendChild(td);
      }
      for (const c of columns) tr.appendChild(cellView(row, c, baseline));
      tbody.appendChild(tr);
    }
    table.appendChild(tbody);
    if (!data.rows.length) {
      const empty = h("tr");
      const td = h("td", "lw-empty", "No rows match these filters.");
      td.colSpan = 1 + inputs.length + (expectedCol ? 1 : 0) + columns.length;
      empty.appendChild(td);
      tbody.appendChild(empty);
    }
    tableWrap.replaceChildren(table);
    revealClipped(table);
  }

  function renderStatus() {
    statusLine.replaceChildren();
    if (!data) return;
    const size = get("page_size");
    const first = data.total ? data.page * size + 1 : 0;
    const last = Math.min(data.total, (data.page + 1) * size);
    statusLine.appendChild(
      h("span", "lw-count", `rows ${fmtInt(first)}–${fmtInt(last)} of ${fmtInt(data.total)}` +
        (data.total !== data.n_cases ? ` (filtered from ${fmtInt(data.n_cases)} cases)` : " cases")),
    );
    for (const r of data.runs) {
      const s = h("span", `lw-run lw-run-${r.status}`);
      s.textContent = `run ${r.run_id}: ${r.status}` + (r.stored < r.cells ? `, ${fmtInt(r.stored)}/${fmtInt(r.cells)} cells` : "");
      statusLine.appendChild(s);
    }
    if (data.live) statusLine.appendChild(h("span", "lw-live", "● live"));
  }

  function renderPager() {
    pager.replaceChildren();
    if (!data) return;
    const page = data.page;
    const go = (p) => setState({ page: p }, false);
    const mk = (label, p, disabled, action) => {
      const b = h("button", "lw-btn", label);
      b.disabled = disabled;
      b.dataset.action = action;
      b.addEventListener("click", () => go(p));
      return b;
    };
    pager.append(
      mk("« first", 0, page === 0, "first"),
      mk("‹ prev", page - 1, page === 0, "prev"),
      h("span", "lw-page", `page ${fmtInt(page + 1)} of ${fmtInt(data.pages)}`),
      mk("next ›", page + 1, page + 1 >= data.pages, "next"),
      mk("last »", data.pages - 1, page + 1 >= data.pages, "last"),
    );
    const sizes = [...new Set([10, 20, 50, 100, get("page_size")])]
      .sort((a, b) => a - b)
      .map((n) => [String(n), `${n} per page`]);
    pager.appendChild(select(sizes, String(get("page_size")), (v) => setState({ page_size: parseInt(v, 10) })));
  }

  function schedulePoll(changed) {
    clearTimeout(pollTimer);
    if (!data || !data.live) return;
    pollDelay = changed ? 1000 : Math.min(pollDelay * 1.5, 10000);
    pollTimer = setTimeout(() => request("poll", { version: data.version }), pollDelay);
  }

  // The page on screen becomes the snapshot saved with the widget state, so a notebook saved now reopens
  // at this view. Filled in place: a set() would upload the page to the kernel with the next view change
  // (and the kernel would echo it back), doubling the bytes of every page for nothing.
  function keepSnapshot(msg) {
    const snap = model.get("snapshot");
    if (!snap || typeof snap !== "object" || Array.isArray(snap)) return;
    for (const key of Object.keys(snap)) delete snap[key];
    Object.assign(snap, msg, { seq: null, snapshot: true });
  }

  function onMsg(msg) {
    if (!msg || typeof msg !== "object") return;
    if (msg.type === "page") {
      if (msg.seq !== null && msg.seq !== undefined && msg.seq < latest) return; // a newer request is on its way
      const arrived = performance.now();
      const changed = !data || data.version !== msg.version;
      if (changed) fullTexts.clear();
      data = msg;
      banner.replaceChildren();
      banner.classList.remove("lw-show");
      root.classList.remove("lw-loading");
      renderStatus();
      renderTable();
      renderPager();
      // timings of the last page (read by the benchmark): request -> reply, and reply -> rendered
      root.dataset.replyMs = String(Math.round(arrived - sentAt));
      root.dataset.renderMs = String(Math.round(performance.now() - arrived));
      root.dataset.kernelMs = String(msg.kernel_ms === undefined ? "" : msg.kernel_ms);
      root.dataset.renderedSeq = String(msg.seq === null || msg.seq === undefined ? 0 : msg.seq);
      root.dataset.total = String(msg.total);
      if (!msg.snapshot) {
        deadKernel = false;
        keepSnapshot(msg);
        schedulePoll(changed);
      }
    } else if (msg.type === "poll") {
      deadKernel = false;
      if (data && data.snapshot) {
        data.snapshot = false; // the kernel answered: the page shown is live
        root.dataset.live = "1";
      }
      schedulePoll(false);
    } else if (msg.type === "text") {
      fullTexts.set(msg.key, msg.text === null ? "" : msg.text);
      renderTable();
    } else if (msg.type === "feedback") {
      if (!data) return;
      for (const row of data.rows) {
        if (row.case_id === msg.case_id && row.cells[msg.column]) row.cells[msg.column].feedback = msg.feedback;
      }
      commentOpen.delete(`${msg.case_id}|${msg.column}`);
      renderTable();
      root.dataset.feedbackSaved = String(msg.feedback_id);
    } else if (msg.type === "error") {
      root.classList.remove("lw-loading");
      banner.replaceChildren(h("span", null, msg.message));
      banner.classList.add("lw-show");
      root.dataset.error = msg.message;
    }
  }

  model.on("msg:custom", onMsg);
  const onChange = () => buildToolbar();
  model.on("change", onChange);
  buildToolbar();
  // The page saved with the widget state shows at once (and is all there is without a kernel);
  // the live page replaces it when the kernel answers.
  const snap = model.get("snapshot");
  if (snap && Array.isArray(snap.rows)) {
    onMsg({ ...snap, seq: 0 });
    request("poll", { version: snap.version }); // a new page comes back only if the snapshot is stale
  } else {
    request();
  }
  const noKernel = setTimeout(() => {
    if (data && data.snapshot) {
      deadKernel = true;
      statusLine.appendChild(h("span", "lw-live", "static snapshot: no live kernel"));
    }
  }, 5000);
  return () => {
    if (clipWatcher) clipWatcher.disconnect();
    clearTimeout(noKernel);
    clearTimeout(pollTimer);
    clearTimeout(searchTimer);
    model.off("msg:custom", onMsg);
    model.off("change", onChange);
  };
}

export default { render };
