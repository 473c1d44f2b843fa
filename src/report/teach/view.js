"use strict";
// pyalloc view: rebuilds pymalloc's state at any event from the embedded op stream
// (see src/report/teach/view.rs) and draws it: one pixel per block, 32x32 per pool.
(function () {
  const { M, bytes } = teach.data();
  const { hex, rgba, hsl, hue } = teach;

  // ---- decode the ops once -------------------------------------------------------
  const N = M.ops;
  const opEvent = new Float64Array(N), opKey = new Int32Array(N);
  const opTag = new Uint8Array(N), opClass = new Uint8Array(N);
  const { byte, rd } = teach.reader(bytes);
  let ev = 0;
  for (let i = 0; i < N; i++) {
    ev += rd();
    opEvent[i] = ev;
    const t = byte();
    opTag[i] = t;
    if ((t & 3) === 1) opClass[i] = byte();
    opKey[i] = rd();
  }

  const SLOTS = Math.max(M.slots, 1), MP = M.max_pools, CAP = M.cap, NP = SLOTS * MP;
  const POOL = M.pool_size, ARENA = M.arena_size, OVH = M.overhead;
  const RULES = [
    "",
    "free-list head: usedpools[szidx] led to this pool, whose free list's head (the block freed last there) was popped",
    "fresh pool bump: the pool's free list was empty, so pymalloc_pool_extend handed out the block at nextoffset (never used before)",
    "a new pool from the arena's free pools: no used pool of this class, so allocate_from_new_pool took an empty pool off the usable arena's freepools",
    "a new pool carved: no used pool of this class and no free pool, so the usable arena carved its next pool at pool_address",
    "a new arena: no usable arena had a free pool, so new_arena mapped one and carved its first pool",
    "fall-through: 0 or more than SMALL_REQUEST_THRESHOLD bytes go to the raw allocator",
    "realloc in place: the new size still fits the block's size class",
  ];

  // ---- state ---------------------------------------------------------------------
  function fresh() {
    return {
      occ: new Uint32Array((NP * CAP) >>> 5),
      count: new Uint16Array(NP),
      cls: new Int16Array(NP).fill(-1),
      base: new Float64Array(SLOTS),
      arenas: 0, used: 0, live: 0, arenaIdx: 0, applied: 0,
    };
  }
  function clone(s) {
    return {
      occ: s.occ.slice(), count: s.count.slice(), cls: s.cls.slice(), base: s.base.slice(),
      arenas: s.arenas, used: s.used, live: s.live, arenaIdx: s.arenaIdx, applied: s.applied,
    };
  }
  function resetSlot(s, slot) {
    for (let p = slot * MP; p < (slot + 1) * MP; p++) {
      s.cls[p] = -1;
      s.count[p] = 0;
    }
  }
  // Pools whose picture is stale (the map redraws only these: a step touches one or two).
  const dirty = new Uint8Array(NP);
  let allDirty = true;
  function apply(s, i) {
    const t = opTag[i] & 3, key = opKey[i];
    if (t < 2) dirty[(key / CAP) | 0] = 1;
    else dirty.fill(1, key * MP, (key + 1) * MP);
    if (t === 1) {
      const pk = (key / CAP) | 0;
      s.occ[key >>> 5] |= 1 << (key & 31);
      if (s.count[pk]++ === 0) s.used++;
      s.cls[pk] = opClass[i];
      s.live++;
    } else if (t === 0) {
      const pk = (key / CAP) | 0;
      s.occ[key >>> 5] &= ~(1 << (key & 31));
      if (--s.count[pk] === 0) s.used--;
      s.live--;
    } else if (t === 2) {
      s.base[key] = M.arena_bases[s.arenaIdx++];
      s.arenas++;
      resetSlot(s, key);
    } else {
      s.base[key] = 0;
      s.arenas--;
      resetSlot(s, key);
    }
    s.applied = i + 1;
  }
  const CK = Math.max(8192, Math.ceil(N / 200));
  const checkpoints = teach.checkpoints(N, CK, fresh, clone, apply);
  const upto = teach.upto(opEvent);
  let S = clone(checkpoints[0]);
  // Marks the pools that differ between two states (after a jump to a checkpoint).
  const WPP = CAP >>> 5; // occupancy words per pool (CAP is a power of two)
  function markChanged(a, b) {
    for (let slot = 0; slot < SLOTS; slot++) {
      if (a.base[slot] !== b.base[slot]) {
        dirty.fill(1, slot * MP, (slot + 1) * MP);
        continue;
      }
      for (let pk = slot * MP; pk < (slot + 1) * MP; pk++) {
        if (dirty[pk]) continue;
        if (a.count[pk] !== b.count[pk] || a.cls[pk] !== b.cls[pk]) { dirty[pk] = 1; continue; }
        if (WPP === 0) { dirty[pk] = 1; continue; }
        for (let w = pk * WPP, e = w + WPP; w < e; w++) {
          if (a.occ[w] !== b.occ[w]) { dirty[pk] = 1; break; }
        }
      }
    }
  }
  let cur = 0;
  function goTo(e) {
    e = Math.max(0, Math.min(M.events - 1, Math.round(e)));
    const target = upto(e);
    if (target < S.applied || target - S.applied > 2 * CK) {
      const old = S;
      S = clone(checkpoints[Math.floor(target / CK)]);
      markChanged(old, S);
    }
    while (S.applied < target) apply(S, S.applied);
    cur = e;
    render();
  }

  // ---- drawing -------------------------------------------------------------------
  const PR = Math.min(MP, 32), PITCH = 34, LW = 150;
  const ROWS = Math.ceil(MP / PR), ROWH = ROWS * PITCH + 6;
  const map = document.getElementById("map");
  map.width = LW + PR * PITCH;
  map.height = SLOTS * ROWH;
  Object.assign(map.dataset, { labelWidth: LW, pitch: PITCH, rowHeight: ROWH, poolsPerRow: PR });
  const mctx = map.getContext("2d");
  const img = mctx.createImageData(map.width, map.height);
  const px = new Uint32Array(img.data.buffer);
  const NC = M.class_bytes.length;
  // Pixels per block: a pool's blocks fill its 32x32 cell in row-major order.
  const PPB = M.class_blocks.map((nb) => Math.max(1, Math.floor(1024 / Math.max(1, nb))));
  const DARK = [], LIGHT = [];
  for (let c = 0; c < NC; c++) {
    DARK.push(rgba(...hsl(hue(c), 65, 40)));
    LIGHT.push(rgba(...hsl(hue(c), 60, 90)));
  }
  const WHITE = rgba(255, 255, 255), BLACK = rgba(0, 0, 0), GREY = rgba(150, 150, 150);
  const UNTOUCHED = rgba(240, 240, 240), OUTSIDE = rgba(225, 225, 225), RING0 = rgba(215, 215, 215);
  const legend = document.getElementById("legend");
  legend.innerHTML = M.class_bytes.map((b, c) => {
    const [r, g, bl] = hsl(hue(c), 65, 40);
    return `<span><i style="background:rgb(${r},${g},${bl})"></i>${c}:${b}B</span>`;
  }).join("") + "<span>ring: black = full, class colour = used, grey = empty, light = never carved</span>";

  function firstPool(base) { return Math.ceil(base / POOL) * POOL; }
  function ntotal(base) { return base % POOL === 0 ? MP : MP - 1; }
  function cellXY(slot, pi) {
    return [LW + (pi % PR) * PITCH, slot * ROWH + Math.floor(pi / PR) * PITCH];
  }
  // Cells the last drawing ringed (the touched blocks, the selection): redrawn next time.
  let ringed = [];
  function drawPool(slot, pi) {
    const W = map.width, base = S.base[slot];
    const pk = slot * MP + pi, c = S.cls[pk], n = S.count[pk];
    const [x0, y0] = cellXY(slot, pi);
    if (!base || pi >= ntotal(base)) {
      for (let y = y0; y < y0 + PITCH && y < map.height; y++) px.fill(WHITE, y * W + x0, y * W + x0 + PITCH);
      return;
    }
    const nb = c >= 0 ? M.class_blocks[c] : 0;
    const ring = c < 0 ? RING0 : n === 0 ? GREY : n === nb ? BLACK : DARK[c];
    for (let i = 0; i < PITCH - 2; i++) {
      px[y0 * W + x0 + i] = ring;
      px[(y0 + 33) * W + x0 + i] = ring;
      px[(y0 + i) * W + x0] = ring;
      px[(y0 + i) * W + x0 + 33] = ring;
    }
    const kb = pk * CAP, ppb = c >= 0 ? PPB[c] : 1;
    for (let q = 0; q < 1024; q++) {
      const x = x0 + 1 + (q & 31), y = y0 + 1 + (q >> 5), k = (q / ppb) | 0;
      let col;
      if (c < 0) col = UNTOUCHED;
      else if (k >= nb || k >= CAP) col = OUTSIDE;
      else {
        const key = kb + k;
        col = (S.occ[key >>> 5] >>> (key & 31)) & 1 ? DARK[c] : LIGHT[c];
      }
      px[y * W + x] = col;
    }
  }
  function drawLabels(slot) {
    mctx.fillStyle = "#fff";
    mctx.fillRect(0, slot * ROWH, LW, ROWH);
    if (!S.base[slot]) return;
    let used = 0;
    for (let p = slot * MP; p < (slot + 1) * MP; p++) if (S.count[p]) used++;
    mctx.fillStyle = "#222";
    mctx.font = "12px monospace";
    mctx.fillText(`arena ${slot}`, 4, slot * ROWH + 14);
    mctx.fillText(hex(S.base[slot]), 4, slot * ROWH + 28);
    mctx.fillText(`${used} pools used`, 4, slot * ROWH + 42);
  }
  // Redraws the stale pools only (all of them after a jump that changed most), then
  // rings the blocks the current event touched and the selected one.
  function drawMap() {
    for (const pk of ringed) dirty[pk] = 1;
    ringed = [];
    let n = 0;
    if (!allDirty) for (let pk = 0; pk < NP; pk++) n += dirty[pk];
    if (allDirty || n > NP / 4) {
      px.fill(WHITE);
      for (let slot = 0; slot < SLOTS; slot++) {
        if (!S.base[slot]) continue;
        for (let pi = 0; pi < ntotal(S.base[slot]); pi++) drawPool(slot, pi);
      }
      mctx.putImageData(img, 0, 0);
      for (let slot = 0; slot < SLOTS; slot++) drawLabels(slot);
      allDirty = false;
      dirty.fill(0);
    } else if (n > 0) {
      let lastSlot = -1;
      for (let pk = 0; pk < NP; pk++) {
        if (!dirty[pk]) continue;
        dirty[pk] = 0;
        const slot = (pk / MP) | 0, pi = pk % MP;
        drawPool(slot, pi);
        const [x0, y0] = cellXY(slot, pi);
        // the cell and a margin: a ring drawn over a neighbour's edge is wiped too
        const x = Math.max(LW, x0 - 4), y = Math.max(0, y0 - 4);
        mctx.putImageData(img, 0, 0, x, y, Math.min(map.width, x0 + PITCH + 4) - x, Math.min(map.height, y0 + PITCH + 4) - y);
        if (slot !== lastSlot) drawLabels(slot);
        lastSlot = slot;
      }
    }
    // The blocks the current event touched, and the one selected.
    for (let i = upto(cur - 1); i < N && opEvent[i] === cur; i++) {
      if ((opTag[i] & 3) > 1) continue;
      ring(opKey[i], (opTag[i] & 3) === 1 ? "#f0f" : "#f80");
    }
    if (selected !== null) ring(selected, "#06f");
  }
  function ring(key, colour) {
    const pk = (key / CAP) | 0, k = key % CAP, slot = (pk / MP) | 0, pi = pk % MP;
    ringed.push(pk); // redrawn with a margin next time: the ring crosses into neighbours
    const [x0, y0] = cellXY(slot, pi);
    mctx.strokeStyle = colour;
    mctx.lineWidth = 2;
    const c = S.cls[pk], q = k * (c >= 0 ? PPB[c] : 1);
    mctx.strokeRect(x0 + (q & 31) - 2, y0 + (q >> 5) - 2, 6, 6);
  }

  const drawChart = teach.chart(M, [[2, "#999", "mapped"], [3, "#c80", "resident (pages written, not given back)"], [1, "#06c", "live"]], goTo);

  // ---- explain -------------------------------------------------------------------
  let selected = null, pinned = false;
  const panel = document.getElementById("explain");
  function blockAddr(key) {
    const pk = (key / CAP) | 0, k = key % CAP, slot = (pk / MP) | 0, pi = pk % MP;
    const c = S.cls[pk];
    const pool = firstPool(S.base[slot]) + pi * POOL;
    return c >= 0 ? pool + OVH + k * M.class_bytes[c] : pool;
  }
  function explain(key) {
    const pk = (key / CAP) | 0, k = key % CAP, slot = (pk / MP) | 0, pi = pk % MP;
    const base = S.base[slot], c = S.cls[pk];
    if (!base) return "no arena here";
    const pool = firstPool(base) + pi * POOL;
    const L = [];
    L.push(`${hex(blockAddr(key))} (pymalloc ${M.model})`);
    L.push(`  state after event ${cur}`);
    L.push(`  arena ${slot} at ${hex(base)} (${ARENA} bytes)`);
    L.push(`    pool ${pi} at ${hex(pool)} (${POOL} bytes)`);
    if (c < 0) {
      L.push("  a pool never carved (or never used): no size class yet");
      return L.join("\n");
    }
    const nb = M.class_blocks[c];
    if (k >= nb) {
      L.push(`  past the pool's last block (${nb} blocks of ${M.class_bytes[c]} bytes)`);
      return L.join("\n");
    }
    L.push(`      block ${k} at ${hex(blockAddr(key))} (${M.class_bytes[c]} bytes)`);
    L.push(`  size class ${c} (${M.class_bytes[c]} bytes)`);
    const live = (S.occ[key >>> 5] >>> (key & 31)) & 1;
    let last = -1;
    for (let i = S.applied - 1; i >= 0; i--) {
      if (opKey[i] === key && (opTag[i] & 3) < 2) { last = i; break; }
      if ((opTag[i] & 3) > 1 && opKey[i] === slot) break; // the arena was (re)mapped
    }
    L.push(`  ${live ? "live" : last < 0 ? "untouched (at or above nextoffset: never handed out)" : "free"}; pool: ${S.count[pk]} of ${nb} blocks in use`);
    if (last >= 0) {
      const alloc = (opTag[last] & 3) === 1;
      L.push(`  last ${alloc ? "alloc" : "free"}: event ${opEvent[last]}`);
      if (alloc) L.push(`  rule: ${RULES[opTag[last] >> 2] || "?"}`);
    }
    return L.join("\n");
  }
  function keyAt(e) {
    const r = map.getBoundingClientRect();
    const x = Math.floor(((e.clientX - r.left) * map.width) / r.width);
    const y = Math.floor(((e.clientY - r.top) * map.height) / r.height);
    const slot = Math.floor(y / ROWH), yy = y - slot * ROWH;
    if (slot < 0 || slot >= SLOTS || x < LW) return null;
    const col = Math.floor((x - LW) / PITCH), row = Math.floor(yy / PITCH);
    const ix = (x - LW) % PITCH - 1, iy = yy % PITCH - 1;
    if (row >= ROWS || ix < 0 || ix > 31 || iy < 0 || iy > 31) return null;
    const pi = row * PR + col;
    if (pi >= MP) return null;
    const c = S.cls[slot * MP + pi];
    return (slot * MP + pi) * CAP + Math.floor((iy * 32 + ix) / (c >= 0 ? PPB[c] : 1));
  }
  function show(key) {
    selected = key;
    panel.textContent = key === null ? "" : explain(key);
    drawMap();
  }
  map.addEventListener("mousemove", (e) => {
    if (!pinned) show(keyAt(e));
  });
  map.addEventListener("click", (e) => {
    pinned = !pinned;
    show(keyAt(e));
  });

  teach.search(panel, (a) => {
    for (let slot = 0; slot < SLOTS; slot++) {
      const base = S.base[slot];
      if (!base || a < base || a >= base + ARENA) continue;
      const fp = firstPool(base);
      if (a < fp) {
        panel.textContent = `${hex(a)}: arena ${slot}'s partial first pool, lost to alignment`;
        return;
      }
      const pi = Math.floor((a - fp) / POOL), pk = slot * MP + pi, c = S.cls[pk];
      const off = a - (fp + pi * POOL) - OVH;
      const k = c >= 0 && off >= 0 ? Math.floor(off / M.class_bytes[c]) : 0;
      pinned = true;
      show(pk * CAP + k);
      return;
    }
    panel.textContent = `${hex(a)} is in no arena at event ${cur} (a fall-through block, or not mapped)`;
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
      const t = opTag[i] & 3;
      if (t === 1) touched.push(`alloc ${hex(blockAddr(opKey[i]))} (class ${opClass[i]}; ${RULES[opTag[i] >> 2].split(":")[0]})`);
      else if (t === 0) touched.push(`free ${hex(blockAddr(opKey[i]))}`);
      else touched.push(`arena ${opKey[i]} ${t === 2 ? "mapped" : "unmapped"}`);
    }
    ui.status.textContent = `event ${cur} of ${M.events} · ${S.arenas} arenas · ${S.used} pools in use · ${S.live} blocks in use` +
      (touched.length ? " · " + touched.join(", ") : " · (no pymalloc block changed)");
    const d = document.body.dataset;
    d.event = String(cur);
    d.arenas = String(S.arenas);
    d.usedPools = String(S.used);
    d.liveBlocks = String(S.live);
    if (selected !== null && !pinned) selected = null;
    if (selected !== null) panel.textContent = explain(selected);
    ui.follow(cur);
    d.renderMs = (performance.now() - t0).toFixed(2);
  }
  ui.start();
})();
