"use strict";
// pyalloc view of mimalloc: rebuilds the segments, pages and block states at any event
// from the embedded op stream (see src/report/teach/miview.rs) and draws them: a segment
// as 8 lines of 64 slices, a slice 18x18 px, a page's blocks along its slices' pixels.
(function () {
  const { M, bytes } = teach.data();
  const { hex, rgba, hsl, hue } = teach;

  // ---- decode the ops once -------------------------------------------------------
  const N = M.ops;
  const opEvent = new Float64Array(N), opKey = new Int32Array(N);
  const opTag = new Uint8Array(N), opBlock = new Int32Array(N), opCount = new Int32Array(N);
  const { byte, rd } = teach.reader(bytes);
  let ev = 0;
  for (let i = 0; i < N; i++) {
    ev += rd();
    opEvent[i] = ev;
    const t = byte();
    opTag[i] = t;
    opKey[i] = rd();
    if ((t & 7) < 4) {
      opBlock[i] = rd();
      opCount[i] = t & 0x80 ? rd() : 1;
    }
  }
  const KIND = (i) => opTag[i] & 7, RULE = (i) => (opTag[i] >> 3) & 15;
  const PAGES = M.pages, SEGS = M.segments;

  // ---- state ---------------------------------------------------------------------
  // pages: inc -> Uint8Array of block states (0 used, 1 free, 2 local_free, 3 uncarved)
  function fresh() {
    return { pages: new Map(), segs: new Set(), live: 0, applied: 0 };
  }
  function clone(s) {
    const pages = new Map();
    for (const [k, v] of s.pages) pages.set(k, v.slice());
    return { pages, segs: new Set(s.segs), live: s.live, applied: s.applied };
  }
  let layoutDirty = true;
  const dirty = new Set();
  function apply(s, i) {
    const k = KIND(i), key = opKey[i];
    if (k < 4) {
      const st = s.pages.get(key);
      if (st) {
        for (let b = opBlock[i], e = b + opCount[i]; b < e; b++) {
          if (st[b] === 0) s.live--;
          st[b] = k;
          if (k === 0) s.live++;
        }
        dirty.add(key);
      }
    } else if (k === 4) {
      s.pages.set(key, new Uint8Array(PAGES[key][5]).fill(3));
      layoutDirty = true;
    } else if (k === 5) {
      const st = s.pages.get(key);
      if (st) for (const v of st) if (v === 0) s.live--;
      s.pages.delete(key);
      layoutDirty = true;
    } else if (k === 6) {
      s.segs.add(key);
      layoutDirty = true;
    } else {
      s.segs.delete(key);
      layoutDirty = true;
    }
    s.applied = i + 1;
  }
  const CK = Math.max(20000, Math.ceil(N / 100));
  const checkpoints = teach.checkpoints(N, CK, fresh, clone, apply);
  const upto = teach.upto(opEvent);
  let S = clone(checkpoints[0]);
  let cur = 0;
  function goTo(e) {
    e = Math.max(0, Math.min(M.events - 1, Math.round(e)));
    const target = upto(e);
    if (target < S.applied || target - S.applied > 2 * CK) {
      S = clone(checkpoints[Math.floor(target / CK)]);
      layoutDirty = true;
    }
    while (S.applied < target) apply(S, S.applied);
    cur = e;
    render();
  }

  // ---- layout and drawing --------------------------------------------------------
  const PER_LINE = 64, LINES = 8, CELL = 18, PITCH = 20, LW = 170;
  const ROWH = LINES * PITCH + 10;
  const map = document.getElementById("map");
  const mctx = map.getContext("2d");
  let img = null, px = null, rows = [], owner = new Map(); // seg -> Int32Array(slices)
  const DARK = [], LIGHT = [];
  for (let b = 0; b < 75; b++) {
    DARK.push(rgba(...hsl(hue(b), 65, 40)));
    LIGHT.push(rgba(...hsl(hue(b), 60, 85)));
  }
  const WHITE = rgba(255, 255, 255), HEADER = rgba(85, 85, 85), LOCAL = rgba(255, 213, 74);
  const UNCARVED = rgba(235, 235, 235), FREESPAN = rgba(250, 250, 250), EDGE = rgba(200, 200, 200);
  const legend = document.getElementById("legend");
  {
    const sw = (c) => `<i style="background:${c}"></i>`;
    const [r, g, b] = hsl(hue(8), 65, 40), [r2, g2, b2] = hsl(hue(8), 60, 85);
    legend.innerHTML = `<span>${sw(`rgb(${r},${g},${b})`)}used</span><span>${sw(`rgb(${r2},${g2},${b2})`)}free (on \`free\`)</span>` +
      `<span>${sw("#ffd54a")}local_free</span><span>${sw("#ebebeb")}uncarved (beyond capacity)</span>` +
      `<span>${sw("#555")}segment header</span><span>${sw("#fafafa")}free span</span>` +
      `<span>colour hue = size class (bin); a segment = 8 lines of 64 slices of 64 KiB</span>`;
  }
  function layout() {
    rows = [...S.segs].sort((a, b) => SEGS[a][0] - SEGS[b][0]);
    owner = new Map();
    for (const s of rows) owner.set(s, new Int32Array(SEGS[s][1]).fill(-1));
    for (const inc of S.pages.keys()) {
      const [seg, first, n] = PAGES[inc];
      const o = owner.get(seg);
      if (o) for (let k = first; k < first + n && k < o.length; k++) o[k] = inc;
    }
    const h = Math.max(1, rows.length) * ROWH;
    if (map.width !== LW + PER_LINE * PITCH || map.height !== h || !img) {
      map.width = LW + PER_LINE * PITCH;
      map.height = h;
      Object.assign(map.dataset, { labelWidth: LW, pitch: PITCH, cell: CELL, rowHeight: ROWH, perLine: PER_LINE });
      img = mctx.createImageData(map.width, map.height);
      px = new Uint32Array(img.data.buffer);
    }
    px.fill(WHITE);
    rows.forEach((seg, r) => drawSegment(seg, r));
    layoutDirty = false;
    dirty.clear();
  }
  function cellXY(r, slice) {
    return [LW + (slice % PER_LINE) * PITCH, r * ROWH + Math.floor(slice / PER_LINE) * PITCH];
  }
  function fillCell(r, slice, col) {
    const [x0, y0] = cellXY(r, slice), W = map.width;
    for (let y = y0; y < y0 + CELL; y++) px.fill(col, y * W + x0, y * W + x0 + CELL);
  }
  function drawSegment(seg, r) {
    const [, slices, info] = SEGS[seg];
    const o = owner.get(seg), shown = Math.min(slices, PER_LINE * LINES);
    for (let k = 0; k < shown; k++) {
      if (k < info) fillCell(r, k, HEADER);
      else if (o[k] < 0) fillCell(r, k, FREESPAN);
    }
    const done = new Set();
    for (let k = info; k < shown; k++) if (o[k] >= 0 && !done.has(o[k])) { done.add(o[k]); drawPage(o[k]); }
  }
  function drawPage(inc) {
    const st = S.pages.get(inc);
    if (!st) return;
    const [seg, first, n, , , reserved, b] = PAGES[inc];
    const r = rows.indexOf(seg);
    if (r < 0) return;
    const W = map.width, per = CELL * CELL, total = n * per;
    const shown = Math.min(first + n, PER_LINE * LINES);
    for (let k = first; k < shown; k++) {
      const [x0, y0] = cellXY(r, k);
      for (let q = 0; q < per; q++) {
        const g = (k - first) * per + q;
        const blk = Math.floor((g * reserved) / total);
        const s = st[blk];
        const col = s === 0 ? DARK[b] : s === 1 ? LIGHT[b] : s === 2 ? LOCAL : UNCARVED;
        px[(y0 + Math.floor(q / CELL)) * W + x0 + (q % CELL)] = col;
      }
      // the page's edge: its first slice gets a dark left edge
      if (k === first) for (let y = 0; y < CELL; y++) px[(y0 + y) * W + x0] = EDGE;
    }
  }
  function drawLabels() {
    mctx.fillStyle = "#222";
    mctx.font = "12px monospace";
    rows.forEach((seg, r) => {
      const [base, slices, , huge, arena] = SEGS[seg];
      let pages = 0;
      for (const inc of S.pages.keys()) if (PAGES[inc][0] === seg) pages++;
      mctx.fillText(`${huge ? "huge " : ""}segment`, 4, r * ROWH + 14);
      mctx.fillText(hex(base), 4, r * ROWH + 28);
      mctx.fillText(arena >= 0 ? `arena ${arena}` : "own mapping", 4, r * ROWH + 42);
      mctx.fillText(`${pages} pages`, 4, r * ROWH + 56);
      if (slices > PER_LINE * LINES) mctx.fillText(`… ${slices - PER_LINE * LINES} more slices`, 4, r * ROWH + 70);
    });
  }
  function drawMap() {
    if (layoutDirty) layout();
    else {
      for (const inc of dirty) drawPage(inc);
      dirty.clear();
    }
    mctx.putImageData(img, 0, 0);
    drawLabels();
    // the blocks the current event touched, and the one selected
    for (let i = upto(cur - 1); i < N && opEvent[i] === cur; i++) {
      if (KIND(i) === 0 || KIND(i) === 2) ring(opKey[i], opBlock[i], KIND(i) === 0 ? "#f0f" : "#f80");
    }
    if (selected) ring(selected[0], selected[1], "#06f");
  }
  function blockXY(inc, blk) {
    const [seg, first, n, , , reserved] = PAGES[inc];
    const r = rows.indexOf(seg);
    if (r < 0) return null;
    const per = CELL * CELL, g = Math.floor((blk * n * per) / reserved);
    const k = first + Math.floor(g / per), q = g % per;
    if (k >= PER_LINE * LINES) return null;
    const [x0, y0] = cellXY(r, k);
    return [x0 + (q % CELL), y0 + Math.floor(q / CELL)];
  }
  function ring(inc, blk, colour) {
    const xy = blockXY(inc, blk);
    if (!xy) return;
    mctx.strokeStyle = colour;
    mctx.lineWidth = 2;
    mctx.strokeRect(xy[0] - 3, xy[1] - 3, 7, 7);
  }

  const drawChart = teach.chart(M, [[2, "#999", "segments"], [3, "#c80", "resident (header + pages to capacity)"], [1, "#06c", "live"]], goTo);

  // ---- explain -------------------------------------------------------------------
  let selected = null, pinned = false;
  const panel = document.getElementById("explain");
  const STATE = ["live", "free, on the page's `free` list", "free, on the page's `local_free` list (malloc reaches it after _mi_page_free_collect)", "never carved: beyond the page's capacity (mi_page_extend_free has not reached it)"];
  function explain(inc, blk) {
    const [seg, first, n, start, bs, reserved, b, kind] = PAGES[inc];
    const st = S.pages.get(inc);
    if (!st) return "no page here";
    const [base, , , huge, arena] = SEGS[seg];
    const L = [];
    let used = 0, free = 0, local = 0, unc = 0;
    for (const v of st) { if (v === 0) used++; else if (v === 1) free++; else if (v === 2) local++; else unc++; }
    L.push(`${hex(start + blk * bs)} (${M.model}; ${M.how})`);
    L.push(`  state after event ${cur}`);
    if (arena >= 0) L.push(`  arena ${arena}`);
    L.push(`    ${huge ? "huge " : ""}segment at ${hex(base)}`);
    L.push(`      ${kind} page ${first} at ${hex(base + first * 65536)} (${n * 65536} bytes)`);
    L.push(`        block ${blk} at ${hex(start + blk * bs)} (${bs} bytes)`);
    L.push(`  page: block 0 at ${hex(start)}; ${bs}-byte blocks, bin ${b}; capacity ${reserved - unc} of reserved ${reserved}, used ${used}, ${free} on \`free\`, ${local} on \`local_free\``);
    L.push(`  size class ${b} (${bs} bytes)`);
    L.push(`  ${STATE[st[blk]]}`);
    for (let i = S.applied - 1; i >= 0; i--) {
      const k = KIND(i);
      if (k > 3) { if (k === 4 && opKey[i] === inc) break; continue; }
      if (opKey[i] === inc && opBlock[i] <= blk && blk < opBlock[i] + opCount[i] && (k === 0 || k === 2)) {
        L.push(`  last ${k === 0 ? "alloc" : "free"}: event ${opEvent[i]}`);
        if (k === 0 && RULE(i)) L.push(`  rule: ${M.rules[RULE(i)]}`);
        if (k === 2) L.push("  rule: free (alloc.c mi_free): pushed on its page's `local_free` list, not on `free`");
        break;
      }
    }
    return L.join("\n");
  }
  function hit(e) {
    const r = map.getBoundingClientRect();
    const x = Math.floor(((e.clientX - r.left) * map.width) / r.width);
    const y = Math.floor(((e.clientY - r.top) * map.height) / r.height);
    const row = Math.floor(y / ROWH);
    if (row < 0 || row >= rows.length || x < LW) return null;
    const yy = y - row * ROWH, line = Math.floor(yy / PITCH), col = Math.floor((x - LW) / PITCH);
    const ix = (x - LW) % PITCH, iy = yy % PITCH;
    if (line >= LINES || ix >= CELL || iy >= CELL) return null;
    const seg = rows[row], k = line * PER_LINE + col, o = owner.get(seg);
    if (!o || k >= o.length || o[k] < 0) return null;
    const inc = o[k], [, first, n, , , reserved] = PAGES[inc];
    const g = (k - first) * CELL * CELL + iy * CELL + ix;
    return [inc, Math.floor((g * reserved) / (n * CELL * CELL))];
  }
  function show(sel) {
    selected = sel;
    panel.textContent = sel === null ? "" : explain(sel[0], sel[1]);
    drawMap();
  }
  map.addEventListener("mousemove", (e) => { if (!pinned) show(hit(e)); });
  map.addEventListener("click", (e) => { pinned = !pinned; show(hit(e)); });

  teach.search(panel, (a) => {
    for (const inc of S.pages.keys()) {
      const [seg, first, n, start, bs, reserved] = PAGES[inc];
      const span = SEGS[seg][0] + first * 65536;
      if (a < span || a >= span + n * 65536) continue;
      if (a < start || a >= start + reserved * bs) {
        panel.textContent = `${hex(a)}: in the page at ${hex(span)} but no block (the page's start offset or tail)`;
        return;
      }
      pinned = true;
      show([inc, Math.floor((a - start) / bs)]);
      return;
    }
    for (const seg of S.segs) {
      const [base, slices, info] = SEGS[seg];
      if (a >= base && a < base + slices * 65536) {
        const k = Math.floor((a - base) / 65536);
        panel.textContent = `${hex(a)}: segment ${hex(base)} slice ${k}: ${k < info ? "the segment's header" : "part of a free span"} at event ${cur}`;
        return;
      }
    }
    panel.textContent = `${hex(a)} is in no segment of ${M.model} at event ${cur}`;
  });

  // ---- controls ------------------------------------------------------------------
  const ui = teach.controls(M, goTo, () => cur);

  function render() {
    const t0 = performance.now();
    drawMap();
    drawChart(cur);
    ui.show(cur);
    const touched = [];
    for (let i = upto(cur - 1); i < N && opEvent[i] === cur; i++) {
      const k = KIND(i);
      if (k === 0 || k === 2) {
        const [, , , start, bs] = PAGES[opKey[i]];
        const a = hex(start + opBlock[i] * bs);
        touched.push(k === 0 ? `alloc ${a} (${(M.rules[RULE(i)] || "").split(":")[0].split(" (")[0]})` : `free ${a} (to local_free)`);
      } else if (k === 4) touched.push(`page ${hex(PAGES[opKey[i]][3])} made`);
      else if (k === 5) touched.push(`page ${hex(PAGES[opKey[i]][3])} freed`);
      else if (k === 6) touched.push(`segment ${hex(SEGS[opKey[i]][0])} claimed`);
      else if (k === 7) touched.push(`segment ${hex(SEGS[opKey[i]][0])} freed`);
    }
    const nseg = S.segs.size, npages = S.pages.size;
    ui.status.textContent = `event ${cur} of ${M.events} · ${nseg} segments · ${npages} pages · ${S.live} blocks in use` +
      (touched.length ? " · " + touched.slice(0, 4).join(", ") + (touched.length > 4 ? ` … (${touched.length} changes)` : "") : " · (no mimalloc block changed)");
    const d = document.body.dataset;
    d.event = String(cur);
    d.segments = String(nseg);
    d.pages = String(npages);
    d.liveBlocks = String(S.live);
    if (selected !== null && !pinned) selected = null;
    if (selected !== null) panel.textContent = explain(selected[0], selected[1]);
    ui.follow(cur);
    d.renderMs = (performance.now() - t0).toFixed(2);
  }
  ui.start();
})();
