// Prompt editor view: text areas and a case picker; the kernel renders the preview and flags variables.
function el(tag, attrs = {}, children = []) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") node.className = v; else if (k === "text") node.textContent = v; else node.setAttribute(k, v);
  }
  for (const c of children) node.appendChild(c);
  return node;
}

function render({ model, el: root }) {
  const name = el("input", { type: "text", class: "pe-name" });
  const system = el("textarea", { class: "pe-system", rows: "3", placeholder: "system message (optional)" });
  const user = el("textarea", { class: "pe-user", rows: "6", placeholder: "user message, e.g. Question: {{ input }}" });
  const prev = el("button", { class: "pe-prev", text: "◀" });
  const next = el("button", { class: "pe-next", text: "▶" });
  const picker = el("select", { class: "pe-case" });
  const vars = el("div", { class: "vars" });
  const error = el("div", { class: "error" });
  const preview = el("div", { class: "pe-preview" });
  const save = el("button", { class: "pe-save", text: "Save version" });
  const saved = el("div", { class: "saved" });
  const left = el("div", {}, [
    el("label", { text: "Prompt name" }), name,
    el("label", { text: "System" }), system,
    el("label", { text: "User" }), user,
    el("label", { text: "Variables" }), vars,
    el("div", { class: "row" }, [save]), saved,
  ]);
  const right = el("div", {}, [
    el("label", { text: "Preview on case" }), el("div", { class: "row" }, [prev, picker, next]),
    error, preview,
  ]);
  root.appendChild(el("div", { class: "llmops-pe" }, [left, right]));

  // Typed text is pushed to the kernel 150 ms after the last keystroke; until then it wins over any model
  // change coming back (an echo of an older state must never overwrite what is being typed).
  let timer = null;
  let noKernel = null;
  let pending = false;
  let flushing = false;
  const flush = () => {
    clearTimeout(timer);
    if (!pending) return;
    // read all three boxes before setting any: each set() fires a change event that would redraw the others
    const values = { name: name.value, system: system.value, user: user.value };
    flushing = true;
    try {
      for (const [key, value] of Object.entries(values)) model.set(key, value);
    } finally {
      flushing = false;
      pending = false;
    }
    model.save_changes();
  };
  const push = () => {
    pending = true;
    clearTimeout(timer);
    timer = setTimeout(flush, 150);
  };
  for (const input of [name, system, user]) input.addEventListener("input", push);
  const pick = (i) => {
    flush();
    const n = model.get("case_ids").length;
    if (!n) return;
    model.set("case_index", ((i % n) + n) % n);
    model.save_changes();
  };
  picker.addEventListener("change", () => pick(Number(picker.value)));
  prev.addEventListener("click", () => pick(model.get("case_index") - 1));
  next.addEventListener("click", () => pick(model.get("case_index") + 1));
  save.addEventListener("click", () => {
    // a notebook reopened without its kernel shows the saved editor, but nothing can take the save
    const dead = "no live kernel: run the cell again to save a version";
    pending = true;
    flush();
    saved.textContent = "saving…";
    model.send({ type: "save" });
    clearTimeout(noKernel);
    noKernel = setTimeout(() => {
      if (saved.textContent === "saving…") saved.textContent = dead;
    }, 5000);
  });

  const syncText = () => {
    if (pending || flushing) return;
    // never overwrite what the user is typing in the focused box
    if (document.activeElement !== name) name.value = model.get("name");
    if (document.activeElement !== system) system.value = model.get("system");
    if (document.activeElement !== user) user.value = model.get("user");
  };
  const drawCases = () => {
    picker.replaceChildren(...model.get("case_ids").map((id, i) => el("option", { value: String(i), text: id })));
    picker.value = String(model.get("case_index"));
  };
  const drawVars = () => {
    const undefinedVars = new Set(model.get("undefined"));
    vars.replaceChildren(...model.get("variables").map((v) =>
      el("span", { class: undefinedVars.has(v) ? "undefined" : "known", title: undefinedVars.has(v)
        ? "not a dataset column: " + model.get("columns").join(", ") : "dataset column", text: v })));
  };
  const drawPreview = () => {
    error.textContent = model.get("error");
    preview.replaceChildren(...model.get("preview").map((m) =>
      el("div", { class: "msg" }, [el("div", { class: "role", text: m.role }), el("pre", { text: m.content })])));
  };
  const drawSaved = () => {
    const s = model.get("saved");
    if (!s || Object.keys(s).length === 0) { saved.textContent = ""; return; }
    saved.textContent = s.error ? "could not save: " + s.error : s.diff;
  };
  syncText(); drawCases(); drawVars(); drawPreview(); drawSaved();
  model.on("change:name change:system change:user", syncText);
  model.on("change:case_ids change:case_index", drawCases);
  model.on("change:variables change:undefined", drawVars);
  model.on("change:preview change:error", drawPreview);
  model.on("change:saved", drawSaved);
}

export default { render };
