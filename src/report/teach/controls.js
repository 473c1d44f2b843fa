"use strict";
// pyalloc view: what the two view pages share (view.js draws pymalloc, miview.js mimalloc;
// see src/report/teach/view.rs and miview.rs, which put this script before the page's own):
// the embedded data, the op stream's varints, the event search, checkpoints, colours, the
// samples chart and the stepping controls (slider, event box, buttons, keys, jumps, #event=N).
const teach = {
  // The page's metadata (JSON) and its op stream (base64) as bytes.
  data() {
    const M = JSON.parse(document.getElementById("meta").textContent);
    const bin = atob(document.getElementById("ops").textContent.trim());
    const bytes = new Uint8Array(bin.length);
    for (let i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
    return { M, bytes };
  },
  // Reads the stream in order: `byte()` one byte, `rd()` one varint (7 bits a byte, low first).
  reader(bytes) {
    let pos = 0;
    return {
      byte: () => bytes[pos++],
      rd() {
        let v = 0, s = 1;
        for (;;) {
          const b = bytes[pos++];
          v += (b & 127) * s;
          if (b < 128) return v;
          s *= 128;
        }
      },
    };
  },
  // upto(e): the ops applied after event e, i.e. the index of the first op of a later event.
  upto(opEvent) {
    const N = opEvent.length;
    return (e) => {
      let lo = 0, hi = N;
      while (lo < hi) {
        const mid = (lo + hi) >>> 1;
        if (opEvent[mid] <= e) lo = mid + 1; else hi = mid;
      }
      return lo;
    };
  },
  // The state before ops 0, CK, 2 CK, …, and after the last op when N is a multiple of CK.
  checkpoints(N, CK, fresh, clone, apply) {
    const out = [];
    const s = fresh();
    for (let i = 0; i < N; i++) {
      if (i % CK === 0) out.push(clone(s));
      apply(s, i);
    }
    if (N % CK === 0) out.push(clone(s));
    return out;
  },
  hex(v) { return "0x" + v.toString(16); },
  // A pixel of an ImageData seen as Uint32 (little-endian: ABGR).
  rgba(r, g, b) { return (255 << 24) | (b << 16) | (g << 8) | r; },
  hsl(h, s, l) {
    s /= 100; l /= 100;
    const k = (n) => (n + h / 30) % 12, a = s * Math.min(l, 1 - l);
    const f = (n) => Math.round(255 * (l - a * Math.max(-1, Math.min(k(n) - 3, Math.min(9 - k(n), 1)))));
    return [f(0), f(8), f(4)];
  },
  // The hue of size class (or bin) c.
  hue: (c) => (c * 137 + 200) % 360,
  // The samples chart: `curves` = [[sample column, colour, name], …]; curves and jump marks
  // drawn once off screen, a click goes to the event under it. Returns draw(cur): the
  // curves back and the cursor at event cur.
  chart(M, curves, goTo) {
    const chart = document.getElementById("chart");
    const cctx = chart.getContext("2d");
    const SM = M.samples;
    const cmax = Math.max(1, ...SM.map((s) => Math.max(s[1], s[2], s[3])));
    const chartBase = document.createElement("canvas");
    chartBase.width = chart.width;
    chartBase.height = chart.height;
    const X = (e) => (e / Math.max(1, M.events - 1)) * (chart.width - 2) + 1;
    {
      const bctx = chartBase.getContext("2d");
      const W = chart.width, H = chart.height;
      const Y = (v) => H - 14 - (v / cmax) * (H - 24);
      curves.forEach(([j, col, name], n) => {
        bctx.strokeStyle = col;
        bctx.beginPath();
        SM.forEach((s, i) => (i ? bctx.lineTo(X(s[0]), Y(s[j])) : bctx.moveTo(X(s[0]), Y(s[j]))));
        bctx.stroke();
        bctx.fillStyle = col;
        bctx.fillText(name, 6 + n * 110 + (j === 1 ? 180 : 0), H - 2);
      });
      bctx.fillStyle = "#222";
      bctx.fillText(`max ${cmax.toLocaleString("en")} bytes`, W - 170, 10);
      for (const [e] of M.jumps) {
        bctx.fillStyle = "#a0a";
        bctx.fillRect(X(e), 0, 1, 6);
      }
    }
    chart.addEventListener("click", (e) => {
      const r = chart.getBoundingClientRect();
      const x = ((e.clientX - r.left) * chart.width) / r.width;
      goTo(((x - 1) / (chart.width - 2)) * (M.events - 1));
    });
    return (cur) => {
      cctx.clearRect(0, 0, chart.width, chart.height);
      cctx.drawImage(chartBase, 0, 0);
      cctx.strokeStyle = "#f00";
      cctx.beginPath();
      cctx.moveTo(X(cur), 0);
      cctx.lineTo(X(cur), chart.height - 12);
      cctx.stroke();
    };
  },
  // The address box: calls find(a) with the typed hex address, or says it is not one.
  search(panel, find) {
    const search = document.getElementById("search");
    search.addEventListener("change", () => {
      const a = parseInt(search.value.trim().replace(/^0x/i, ""), 16);
      if (!Number.isFinite(a)) {
        panel.textContent = `not a hex address: ${search.value}`;
        return;
      }
      find(a);
    });
  },
  // The stepping controls: slider, event box, jump buttons, home/end/±1/±1000 buttons and
  // keys (not while typing in the address or event box), and the #event=N fragment.
  // `now()` is the current event. Returns the status line, show(cur) (slider and box to
  // cur), follow(cur) (the fragment to cur, debounced) and start() (to the fragment's event).
  controls(M, goTo, now) {
    const slider = document.getElementById("slider");
    const box = document.getElementById("eventbox");
    const search = document.getElementById("search");
    slider.max = String(M.events - 1);
    box.max = String(M.events - 1);
    slider.addEventListener("input", () => goTo(+slider.value));
    box.addEventListener("change", () => goTo(+box.value));
    const jumpsEl = document.getElementById("jumps");
    for (const [e, label] of M.jumps) {
      const b = document.createElement("button");
      b.className = "jump";
      b.textContent = `${label} @${e}`;
      b.addEventListener("click", () => goTo(e));
      jumpsEl.appendChild(b);
    }
    const buttons = { home: () => 0, end: () => M.events - 1, back: () => now() - 1, fwd: () => now() + 1, back1000: () => now() - 1000, fwd1000: () => now() + 1000 };
    for (const id in buttons) document.getElementById(id).addEventListener("click", () => goTo(buttons[id]()));
    document.addEventListener("keydown", (e) => {
      if (e.target === search || e.target === box) return;
      const moves = { ArrowLeft: -1, ArrowRight: 1, PageUp: -1000, PageDown: 1000 };
      if (e.key in moves) goTo(now() + moves[e.key]);
      else if (e.key === "Home") goTo(0);
      else if (e.key === "End") goTo(M.events - 1);
      else return;
      e.preventDefault();
    });
    function fromHash() {
      const m = /event=(\d+)/.exec(location.hash);
      return m ? +m[1] : null;
    }
    window.addEventListener("hashchange", () => {
      const e = fromHash();
      if (e !== null && e !== now()) goTo(e);
    });
    let hashTimer = 0;
    return {
      status: document.getElementById("status"),
      show(cur) {
        slider.value = String(cur);
        box.value = String(cur);
      },
      // The fragment follows the state, debounced: browsers throttle rapid URL updates.
      follow(cur) {
        clearTimeout(hashTimer);
        hashTimer = setTimeout(() => {
          if (location.hash !== `#event=${cur}`) history.replaceState(null, "", `#event=${cur}`);
        }, 300);
      },
      start: () => goTo(fromHash() ?? 0),
    };
  },
};
