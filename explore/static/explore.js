// MEDSAGE explorer: filters, pages and renderers over data registered by script files.
// Data files call MEDSAGE.register(key, value): a page opened from disk may load scripts but not
// fetch() (Chromium, file://). meta.js holds every entry's facet codes (one character each), so
// filtering and the seeded random order run over all entries; only the chunks shown are loaded.
"use strict";
(function () {
  const M = (window.MEDSAGE = { data: {}, waiting: {}, errors: [], renderers: {}, renders: 0 });
  const PAGE_SIZE = 20;
  const KEEP_CHUNKS = 60; // loaded chunks kept in memory; older ones are dropped and reloaded on need
  const loaded = [];

  function fail(message) {
    M.errors.push(message);
    const bar = document.getElementById("status");
    if (bar) bar.appendChild(el("div", { class: "error" }, "Error: " + message));
  }
  window.addEventListener("error", (e) => fail(String(e.message || e)));
  window.addEventListener("unhandledrejection", (e) => fail(String((e.reason && e.reason.message) || e.reason)));

  M.register = function (key, value) {
    M.data[key] = value;
    (M.waiting[key] || []).forEach((w) => w.resolve(value));
    delete M.waiting[key];
  };

  function load(key, src) {
    if (key in M.data) return Promise.resolve(M.data[key]);
    return new Promise((resolve, reject) => {
      const first = !M.waiting[key];
      (M.waiting[key] = M.waiting[key] || []).push({ resolve, reject });
      if (!first) return;
      const s = document.createElement("script");
      s.src = src;
      s.charset = "utf-8";
      s.onerror = () => {
        (M.waiting[key] || []).forEach((w) => w.reject(new Error("cannot load " + src)));
        delete M.waiting[key]; // a later page may try again
      };
      s.onload = () => s.remove();
      document.head.appendChild(s);
      loaded.push(key);
      while (loaded.length > KEEP_CHUNKS) delete M.data[loaded.shift()];
    });
  }

  // ------------------------------------------------------------------ DOM helpers (text only, never HTML)
  const SVG = "http://www.w3.org/2000/svg";
  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    return fill(node, attrs, children);
  }
  function svg(tag, attrs, ...children) {
    return fill(document.createElementNS(SVG, tag), attrs, children);
  }
  function fill(node, attrs, children) {
    for (const [k, v] of Object.entries(attrs || {})) if (v !== undefined && v !== null) node.setAttribute(k, v);
    for (const c of children.flat(Infinity)) {
      if (c === null || c === undefined || c === false) continue;
      node.appendChild(typeof c === "object" ? c : document.createTextNode(String(c)));
    }
    return node;
  }
  const fmt = (x, d = 3) => (typeof x === "number" ? x.toFixed(d) : String(x));

  // ------------------------------------------------------------------ state in the URL hash
  function readState() {
    const state = { page: 0, seed: "", facets: {}, flags: {} };
    for (const part of location.hash.slice(1).split("&")) {
      const [k, v] = part.split("=").map(decodeURIComponent);
      if (!k) continue;
      if (k === "page") state.page = Math.max(0, parseInt(v, 10) || 0);
      else if (k === "seed") state.seed = v || "";
      else if (k.startsWith("f.")) state.facets[k.slice(2)] = parseInt(v, 10);
      else if (k.startsWith("flag.")) state.flags[k.slice(5)] = v === "1";
    }
    return state;
  }
  function writeState(state) {
    const parts = [];
    for (const [k, v] of Object.entries(state.facets)) if (v >= 0) parts.push("f." + k + "=" + v);
    for (const [k, v] of Object.entries(state.flags)) if (v) parts.push("flag." + k + "=1");
    if (state.seed) parts.push("seed=" + encodeURIComponent(state.seed));
    if (state.page) parts.push("page=" + state.page);
    location.hash = parts.join("&");
  }

  // ------------------------------------------------------------------ filtering
  function matches(meta, state) {
    const base = meta.code_base;
    const facets = meta.facets.filter((f) => state.facets[f.name] >= 0).map((f) => [f.codes, base + state.facets[f.name]]);
    const flags = meta.flags.filter((f) => state.flags[f.name]).map((f) => f.bits);
    const out = [];
    outer: for (let i = 0; i < meta.n; i++) {
      for (const [codes, want] of facets) if (codes.charCodeAt(i) !== want) continue outer;
      for (const bits of flags) if (bits.charCodeAt(i) !== 49) continue outer;
      out.push(i);
    }
    return state.seed ? shuffle(out, state.seed) : out;
  }
  function seeded(seed) {
    // mulberry32 over a string hash: the same seed gives the same order on every machine
    let h = 1779033703 ^ seed.length;
    for (let i = 0; i < seed.length; i++) h = Math.imul(h ^ seed.charCodeAt(i), 3432918353), (h = (h << 13) | (h >>> 19));
    return function () {
      h = (h + 0x6d2b79f5) | 0;
      let t = Math.imul(h ^ (h >>> 15), 1 | h);
      t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
      return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
    };
  }
  function shuffle(list, seed) {
    const rand = seeded(seed);
    for (let i = list.length - 1; i > 0; i--) {
      const j = Math.floor(rand() * (i + 1));
      [list[i], list[j]] = [list[j], list[i]];
    }
    return list;
  }
  function counts(meta, facet) {
    const c = new Array(facet.values.length).fill(0);
    for (let i = 0; i < meta.n; i++) c[facet.codes.charCodeAt(i) - meta.code_base]++;
    return c;
  }

  // ------------------------------------------------------------------ controls
  function controls(meta, state) {
    const box = el("div", { class: "controls" });
    for (const f of meta.facets) {
      const c = counts(meta, f);
      const order = f.values.map((v, k) => k).sort((a, b) => String(f.values[a]).localeCompare(String(f.values[b]), undefined, { numeric: true }));
      const select = el("select", { "data-facet": f.name },
        el("option", { value: "-1" }, "all"),
        order.map((k) => el("option", { value: String(k) }, `${f.values[k] || "(none)"} (${c[k]})`)));
      select.value = String(state.facets[f.name] >= 0 ? state.facets[f.name] : -1);
      select.addEventListener("change", () => {
        state.facets[f.name] = parseInt(select.value, 10);
        state.page = 0;
        writeState(state);
      });
      box.appendChild(el("label", {}, f.label + " ", select));
    }
    for (const f of meta.flags) {
      let n = 0;
      for (let i = 0; i < meta.n; i++) n += f.bits.charCodeAt(i) === 49;
      const input = el("input", { type: "checkbox", "data-flag": f.name });
      input.checked = !!state.flags[f.name];
      input.addEventListener("change", () => {
        state.flags[f.name] = input.checked;
        state.page = 0;
        writeState(state);
      });
      box.appendChild(el("label", { class: "flag" }, input, ` ${f.label} (${n})`));
    }
    const seed = el("input", { type: "text", size: "10", placeholder: "seed", "data-seed": "", value: state.seed });
    seed.addEventListener("change", () => {
      state.seed = seed.value.trim();
      state.page = 0;
      writeState(state);
    });
    const random = el("button", { type: "button", "data-random": "" }, "random page");
    random.addEventListener("click", () => {
      state.seed = String(Math.floor(Math.random() * 1e9));
      state.page = 0;
      writeState(state);
    });
    box.appendChild(el("label", {}, "order seed ", seed, " ", random));
    return box;
  }

  function pager(state, total) {
    const pages = Math.max(1, Math.ceil(total / PAGE_SIZE));
    const go = (p) => () => {
      state.page = Math.min(Math.max(0, p), pages - 1);
      writeState(state);
    };
    const prev = el("button", { type: "button", "data-prev": "" }, "< previous");
    const next = el("button", { type: "button", "data-next": "" }, "next >");
    prev.disabled = state.page <= 0;
    next.disabled = state.page >= pages - 1;
    prev.addEventListener("click", go(state.page - 1));
    next.addEventListener("click", go(state.page + 1));
    return el("div", { class: "pager" }, prev, ` page ${Math.min(state.page, pages - 1) + 1} of ${pages} `, next);
  }

  // ------------------------------------------------------------------ render loop
  let meta = null;
  let generation = 0;
  async function render() {
    const started = performance.now();
    const mine = ++generation;
    const state = readState();
    for (const f of meta.facets) if (!(state.facets[f.name] < f.values.length)) delete state.facets[f.name]; // a hand-edited URL
    const controlsBox = document.getElementById("controls");
    controlsBox.replaceChildren(controls(meta, state));
    const found = matches(meta, state);
    const first = state.page * PAGE_SIZE;
    const shown = found.slice(first, first + PAGE_SIZE);
    const chunkIds = [...new Set(shown.map((i) => Math.floor(i / meta.chunk)))];
    const chunks = {};
    await Promise.all(chunkIds.map((k) => load(`${meta.kind}/c${k}`, `data/${meta.kind}/c${k}.js`).then((v) => (chunks[k] = v))));
    if (mine !== generation) return; // a newer render started while this one loaded
    const order = state.seed ? ` in random order (seed ${state.seed})` : "";
    const status = el("div", { class: "summary", "data-matches": String(found.length) },
      `${found.length} of ${meta.n} match${order}; showing ${shown.length ? first + 1 : 0}-${first + shown.length}`);
    const items = document.getElementById("items");
    const renderer = M.renderers[meta.kind];
    items.replaceChildren(...shown.map((i) => {
      const node = renderer(chunks[Math.floor(i / meta.chunk)][i % meta.chunk], meta);
      node.setAttribute("data-index", String(i));
      return node;
    }));
    document.getElementById("status").replaceChildren(status, pager(state, found.length),
      ...M.errors.map((e) => el("div", { class: "error" }, "Error: " + e)));
    M.renders++;
    // ms: this render; at: since navigation started (after the first render: the page-load time)
    M.last = { matches: found.length, shown: shown.length, ms: performance.now() - started, at: performance.now() };
  }

  M.start = function (kind) {
    load(`${kind}/meta`, `data/${kind}/meta.js`).then((m) => {
      meta = m;
      document.title = `${m.title} (${m.n}) - MEDSAGE explorer`;
      window.addEventListener("hashchange", () => render().catch((e) => fail(e.message)));
      return render();
    }).catch((e) => fail(e.message));
  };

  // ------------------------------------------------------------------ shared pieces
  function chips(values) {
    return el("div", { class: "chips" }, values.filter(Boolean).map((v) => el("span", { class: "chip" }, v)));
  }
  function stageView(view) {
    return el("div", { class: "stages" },
      view.segments.map(([tag, text]) => el("div", { class: "stage stage-" + (tag || "PRE") },
        el("span", { class: "tag" }, tag || "context"), text)),
      view.problems ? el("div", { class: "problems" }, "scaffold problems: " + view.problems.join("; ")) : null,
      view.raw ? el("details", {}, el("summary", {}, "raw text"), el("pre", {}, view.raw)) : null);
  }
  function options(opts, answer) {
    const letters = Object.keys(opts || {});
    if (!letters.length) return null;
    return el("ol", { class: "options" }, letters.map((k) =>
      el("li", { class: k === answer ? "answer" : "" }, `${k}. ${opts[k]}`)));
  }
  function figure(src, width, height, rois) {
    if (!src) return el("div", { class: "figure empty" }, "no image");
    const stroke = Math.max(width, height) / 200;
    const shapes = rois.map((r) => {
      const cls = `roi roi-${r.kind} who-${r.who}`;
      const tip = svg("title", {}, `${r.who}: ${r.label} (${r.kind})`);
      if (r.w !== undefined) {
        return svg("g", { class: cls },
          svg("rect", { x: r.x, y: r.y, width: r.w, height: r.h, "stroke-width": stroke, "data-who": r.who, "data-kind": r.kind }, tip),
          svg("text", { x: r.x + stroke, y: r.y + 6 * stroke, "font-size": 6 * stroke }, r.who));
      }
      return svg("g", { class: cls },
        svg("circle", { cx: r.cx, cy: r.cy, r: 2 * stroke, "stroke-width": stroke, "data-who": r.who, "data-kind": r.kind }, tip),
        svg("text", { x: r.cx + 3 * stroke, y: r.cy, "font-size": 6 * stroke }, r.who));
    });
    return el("div", { class: "figure" },
      svg("svg", { viewBox: `0 0 ${width} ${height}`, "data-width": width, "data-height": height },
        svg("image", { href: src, x: 0, y: 0, width, height, preserveAspectRatio: "none" }), shapes));
  }

  // Pointing at a trajectory or a run picks out its boxes on the image.
  function highlighting(article) {
    for (const part of article.querySelectorAll(".trajectory[data-who], .run[data-who]")) {
      const boxes = article.querySelectorAll(`.roi > [data-who="${part.dataset.who}"]`);
      part.addEventListener("mouseenter", () => boxes.forEach((b) => b.classList.add("hl")));
      part.addEventListener("mouseleave", () => boxes.forEach((b) => b.classList.remove("hl")));
    }
    return article;
  }

  // ------------------------------------------------------------------ samples
  M.renderers.samples = function (s) {
    const column = (title, list) => el("div", { class: "column" }, el("h4", {}, `${title} (${list.length})`),
      list.map((t) => el("div", { class: "trajectory " + (t.accepted ? "accepted" : "rejected"), "data-who": `T${t.n}` },
        el("div", { class: "head" }, `T${t.n} · ROI ${t.roi_kind} · ${t.template} · ${t.generator} · `,
          el("b", {}, t.accepted ? "accepted" : "rejected"),
          t.reasons.length ? el("span", { class: "reasons" }, " — " + t.reasons.join("; ")) : null),
        stageView(t))));
    return highlighting(el("article", { class: "item sample" },
      el("div", { class: "top" },
        figure(s.image, s.width, s.height, s.rois),
        el("div", { class: "about" },
          el("h3", {}, s.id),
          chips([s.source, s.task_type, s.modality]),
          el("p", { class: "question" }, s.question),
          options(s.options, s.answer),
          el("p", {}, "Answer: ", el("b", {}, s.answer_text)),
          s.text_rois.length ? el("p", { class: "text-roi" }, "Text ROI: " + s.text_rois.join("; ")) : null,
          el("p", { class: "legend" }, "Boxes: T<k> = trajectory k's <LOC>, 'annotation' = the source's box; dashed = global ROI."))),
      el("div", { class: "columns" },
        column("accepted", s.trajectories.filter((t) => t.accepted)),
        column("rejected", s.trajectories.filter((t) => !t.accepted)))));
  };

  // ------------------------------------------------------------------ sessions
  function advantageColour(a, scale) {
    const t = Math.max(-1, Math.min(1, a / scale));
    return t >= 0 ? `rgba(214, 39, 40, ${(0.55 * t).toFixed(3)})` : `rgba(31, 119, 180, ${(-0.55 * t).toFixed(3)})`;
  }
  M.renderers.sessions = function (g, meta) {
    const scale = meta.extra.advantage_scale;
    return el("article", { class: "item group" },
      el("h3", {}, `step ${g.step} · prompt ${g.uid}`),
      el("p", { class: "question" }, g.question || "(no question recorded)"),
      el("p", {}, "Reference: ", el("b", {}, g.ground_truth || "?"), ` · ${g.sessions.length} sessions · mean reward ${fmt(g.mean_reward)}`),
      el("div", { class: "legend adv-legend" }, `advantage per token: `,
        el("span", { style: `background:${advantageColour(-scale, scale)}` }, fmt(-scale, 2)), " 0 ",
        el("span", { style: `background:${advantageColour(scale, scale)}` }, "+" + fmt(scale, 2))),
      g.sessions.map((s, k) => el("div", { class: "session " + s.stop_reason },
        el("div", { class: "head" }, `session ${k + 1} · `, el("b", {}, s.stop_reason),
          ` · reward ${fmt(s.reward)} (${Object.entries(s.reward_parts).map(([p, v]) => `${p} ${fmt(v)}`).join(", ")})`,
          ` · r_sc ${fmt(s.r_sc, 0)} · first ${s.first_correct ? "right" : "wrong"} · final ${s.final_correct ? "right" : "wrong"}`),
        s.spans.map((sp) => el("div", {
          class: "span span-" + sp.kind, "data-kind": sp.kind, "data-advantage": String(sp.advantage),
          style: `background:${advantageColour(sp.advantage, scale)}`,
        }, el("span", { class: "tag" }, `${sp.kind.replace("_", " ")} · ${sp.tokens} tok · A ${sp.advantage >= 0 ? "+" : ""}${fmt(sp.advantage)}`),
        el("span", { class: "text" }, sp.text))))));
  };

  // ------------------------------------------------------------------ predictions
  M.renderers.predictions = function (p) {
    return highlighting(el("article", { class: "item prediction" },
      el("div", { class: "top" },
        figure(p.image, p.width, p.height, p.rois),
        el("div", { class: "about" },
          el("h3", {}, `${p.benchmark} · ${p.id}`),
          chips([p.modality, p.question_type]),
          el("p", { class: "question" }, p.question),
          options(p.options, p.reference),
          el("p", {}, "Reference: ", el("b", {}, p.reference)),
          el("p", { class: "legend" }, "Boxes: R<k> = run k's final <LOC>."))),
      el("div", { class: "columns" }, p.runs.map((r, k) => el("div", { class: "column run", "data-who": `R${k + 1}` },
        el("h4", {}, `R${k + 1}: ${r.label}`),
        r.missing ? el("p", {}, "not in this run") : [
          el("p", { class: "verdict verdict-" + r.verdict.replace(" ", "-"), "data-verdict": r.verdict },
            el("b", {}, r.verdict), " · extracted answer: ", el("code", {}, r.answer === null ? "(none)" : r.answer),
            r.fallback ? el("span", { class: "fallback" }, ` (fallback extraction${r.extracted_by ? ": " + r.extracted_by : ""}, not from <ANSWER>)`) : null),
          r.turns.map((t) => el("div", { class: "turn" }, r.turns.length > 1 ? el("h5", {}, t.name) : null, stageView(t))),
        ])))));
  };
})();
