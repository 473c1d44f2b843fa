//! `pyalloc explain` and `pyalloc map` held to the recordings: the map's pools per size
//! class equal CPython's own `_PyObject_DebugMallocStats()`, explain's answers equal what
//! the trace and the question's table say.

mod common;
use common::pyalloc;
use serde_json::Value;
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

const SHARED: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../shared");
const PY311: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../shared/traces/cpython-3.11.7-linux-x86_64"
);

fn scratch(name: &str) -> PathBuf {
    let d = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/teach-tests");
    std::fs::create_dir_all(&d).unwrap();
    d.join(name)
}

/// The value of attribute `name` in one tag.
fn attr<'a>(tag: &'a str, name: &str) -> Option<&'a str> {
    let key = format!(" {name}=\"");
    let i = tag.find(&key)? + key.len();
    Some(&tag[i..i + tag[i..].find('"')?])
}

/// CPython's table: class -> (num pools, blocks in use), and the current arenas.
fn recorded_stats() -> (BTreeMap<u32, (u64, u64)>, u64) {
    let text =
        std::fs::read_to_string(format!("{PY311}/ints.debugmallocstats.recorder.txt")).unwrap();
    let mut classes = BTreeMap::new();
    let mut arenas = None;
    let mut in_table = false;
    // The section at the first marker (the file holds one per marker).
    let section = text
        .split("=== recorder: end of stats ===")
        .find(|s| s.contains("top-level request of 777778 bytes"))
        .expect("a section at the 777778 marker");
    for line in section.lines() {
        if line.starts_with("-----") {
            in_table = true;
            continue;
        }
        if in_table {
            let f: Vec<u64> = line
                .split_whitespace()
                .map_while(|w| w.parse().ok())
                .collect();
            if f.len() == 5 {
                classes.insert(f[0] as u32, (f[2], f[3]));
                continue;
            }
            in_table = false;
        }
        if let Some(v) = line.strip_prefix("# arenas allocated current") {
            arenas = Some(v.trim_start_matches([' ', '=']).trim().parse().unwrap());
        }
    }
    (classes, arenas.expect("the file names the current arenas"))
}

#[test]
fn map_svg_at_the_marker_has_cpythons_pools_per_size_class() {
    let svg = scratch("ints-777778.svg");
    let (ok, _, err) = pyalloc(&[
        "map",
        &format!("{PY311}/ints.trace.gz"),
        "--at-marker",
        "777778",
        "--svg",
        svg.to_str().unwrap(),
    ]);
    assert!(ok, "{err}");
    let text = std::fs::read_to_string(&svg).unwrap();
    let mut drawn: BTreeMap<u32, (u64, u64)> = BTreeMap::new();
    let mut arenas = 0u64;
    let mut states = BTreeMap::new();
    for tag in text.split('<').filter(|t| t.starts_with("g ")) {
        if attr(tag, "data-arena").is_some() {
            arenas += 1;
        }
        if let Some(_pool) = attr(tag, "data-pool") {
            let used: u64 = attr(tag, "data-used").unwrap().parse().unwrap();
            let blocks: u64 = attr(tag, "data-blocks").unwrap().parse().unwrap();
            let state = attr(tag, "data-state").unwrap();
            *states.entry(state.to_string()).or_insert(0u64) += 1;
            match state {
                "full" => assert_eq!(used, blocks),
                "used" => assert!(used > 0 && used < blocks),
                _ => assert_eq!(used, 0),
            }
            if used > 0 {
                let class: u32 = attr(tag, "data-class").unwrap().parse().unwrap();
                let e = drawn.entry(class).or_default();
                e.0 += 1;
                e.1 += used;
            }
        }
    }
    let (recorded, recorded_arenas) = recorded_stats();
    assert_eq!(drawn, recorded, "class -> (pools in use, blocks in use)");
    assert_eq!(arenas, recorded_arenas);
    eprintln!(
        "map at marker 777778: {} classes, {} pools in use, {} blocks in use, {arenas} arenas; pools by state {states:?}",
        drawn.len(),
        drawn.values().map(|v| v.0).sum::<u64>(),
        drawn.values().map(|v| v.1).sum::<u64>()
    );
}

#[test]
fn explain_int_36_on_macos_names_the_block_and_slot_the_question_shows() {
    // The question's table: ids fall by 24 within a block and jump where a new block
    // starts; a fresh block hands out its highest slot first.
    let table = std::fs::read_to_string(format!("{SHARED}/seed/seed_tables.tsv")).unwrap();
    // rows (i-1, i, id(i-1), id(i), diff), the deterministic ones (below 256)
    let rows: Vec<[i64; 5]> = table
        .lines()
        .filter_map(|l| l.strip_prefix("changes\t"))
        .map(|l| {
            let f: Vec<i64> = l.split('\t').map(|w| w.parse().unwrap()).collect();
            [f[0], f[1], f[2], f[3], f[4]]
        })
        .filter(|r| r[0] < 256)
        .collect();
    let stride = rows[0][4]; // the first row: id(-1) - id(0)
    let block_starts: Vec<i64> = rows
        .iter()
        .filter(|r| r[4] != stride)
        .map(|r| r[1])
        .collect();
    let value = 36i64;
    let block = block_starts.iter().filter(|&&s| s <= value).count() as u64; // block 0 holds -5..
    let id36 = rows.iter().find(|r| r[1] == value).unwrap()[3] as u64;
    let next_start = *block_starts.iter().find(|&&s| s > value).unwrap();
    let slot = (next_start - value - 1) as u64; // highest slot first, one value per slot
    let (ok, out, err) = pyalloc(&[
        "explain",
        "--platform",
        "macos-x86_64",
        "--version",
        "2.7",
        "--int",
        "36",
        "--json",
    ]);
    assert!(ok, "{err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["address"], format!("{id36:#x}"));
    let chain = v["owner_chain"].as_array().unwrap();
    let find = |kind: &str| chain.iter().find(|o| o["kind"] == kind).unwrap().clone();
    assert_eq!(find("PyIntBlock")["index"], block);
    assert_eq!(find("slot")["index"], slot);
    assert_eq!(find("slot")["address"], format!("{id36:#x}"));
    assert_eq!(v["state"], "live");
    assert!(v["rule"].as_str().unwrap().contains("fill_free_list"));
    eprintln!("explain --int 36: PyIntBlock {block}, slot {slot}, {id36:#x}");
    let (ok, text, _) = pyalloc(&["explain", "--int", "36"]);
    assert!(ok);
    assert!(text.contains(&format!("PyIntBlock {block} at")), "{text}");
    assert!(
        text.contains(&format!("slot {slot} at {id36:#x}")),
        "{text}"
    );
}

/// The trace's lines up to the first top-level request of `marker` bytes.
fn lines_to_marker(marker: &str) -> Vec<(u64, String)> {
    let f = std::fs::File::open(format!("{PY311}/ints.trace.gz")).unwrap();
    let r = BufReader::new(flate2::read::GzDecoder::new(f));
    let mut out = Vec::new();
    for (i, l) in r.lines().enumerate() {
        let l = l.unwrap();
        let f: Vec<&str> = l.split(' ').collect();
        let om = f.len() > 1 && (f[1] == "O" || f[1] == "M");
        let stop = om
            && match f[0] {
                "m" => f.get(2) == Some(&marker),
                "r" => f.get(3) == Some(&marker),
                "c" => false,
                _ => false,
            };
        out.push((i as u64 + 1, l));
        if stop {
            break;
        }
    }
    out
}

#[test]
fn explain_a_trace_address_names_its_last_event_state_and_pool() {
    let lines = lines_to_marker("777778");
    // The last small O allocation and the last small O free before the marker whose
    // address nothing reused afterwards.
    let small = |l: &str| {
        let f: Vec<&str> = l.split(' ').collect();
        f.len() == 4
            && f[0] == "m"
            && f[1] == "O"
            && f[2].parse::<u64>().is_ok_and(|n| (1..=512).contains(&n))
    };
    let (alloc_line, alloc) = lines
        .iter()
        .rev()
        .find(|(_, l)| small(l))
        .map(|(n, l)| (*n, l.split(' ').nth(3).unwrap().to_string()))
        .unwrap();
    let mut later: std::collections::HashSet<String> = std::collections::HashSet::new();
    let mut freed = None;
    let mut live_small: std::collections::HashSet<String> = std::collections::HashSet::new();
    for (_, l) in &lines {
        let f: Vec<&str> = l.split(' ').collect();
        if small(l) {
            live_small.insert(f[3].to_string());
        }
    }
    for (n, l) in lines.iter().rev() {
        let f: Vec<&str> = l.split(' ').collect();
        match f.as_slice() {
            ["f", "O", a] if !later.contains(*a) && live_small.contains(*a) => {
                freed = Some((*n, a.to_string()));
                break;
            }
            ["m", _, _, a] | ["c", _, _, _, a] => {
                later.insert(a.to_string());
            }
            ["r", _, old, _, new] => {
                later.insert(old.to_string());
                later.insert(new.to_string());
            }
            _ => {}
        }
    }
    let (free_line, free) = freed.unwrap();
    let trace = format!("{PY311}/ints.trace.gz");
    for (addr, line, state, what) in [
        (&alloc, alloc_line, "live", "alloc"),
        (&free, free_line, "free", "free"),
    ] {
        let (ok, out, err) = pyalloc(&["explain", &trace, addr, "--at-marker", "777778", "--json"]);
        assert!(ok, "{err}");
        let v: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["address"], format!("0x{addr}"));
        assert_eq!(v["state"], state, "{out}");
        assert_eq!(v["last_event"]["line"], line, "{out}");
        assert_eq!(v["last_event"]["what"], what, "{out}");
        assert_eq!(v["layer"], "pymalloc cpython-3.11");
        let kinds: Vec<&str> = v["owner_chain"]
            .as_array()
            .unwrap()
            .iter()
            .map(|o| o["kind"].as_str().unwrap())
            .collect();
        assert_eq!(kinds, ["arena", "pool", "block"]);
        let pool = u64::from_str_radix(
            v["owner_chain"][1]["address"]
                .as_str()
                .unwrap()
                .trim_start_matches("0x"),
            16,
        )
        .unwrap();
        let a = u64::from_str_radix(addr, 16).unwrap();
        assert_eq!(pool, a & !(16384 - 1), "pools are POOL_SIZE-aligned");
        if state == "free" {
            assert!(v["free_list_position"].is_u64(), "{out}");
        } else {
            assert!(v["rule"].is_string(), "{out}");
        }
    }
}

#[test]
fn explain_and_map_refuse_bad_input_with_one_line() {
    let trace = format!("{PY311}/seed_py3.trace.gz");
    let (ok, _, _) = pyalloc(&["explain", &trace, "zz", "--at", "5"]);
    assert!(!ok, "a bad address is refused");
    for args in [
        vec!["explain", &trace, "0x10", "--at", "999999999"],
        vec!["explain", "--int", "36", "--platform", "vax"],
        vec![
            "map",
            "/nonexistent.trace",
            "--at",
            "1",
            "--svg",
            "/tmp/x.svg",
        ],
    ] {
        let (ok, _, err) = pyalloc(&args);
        assert!(!ok, "{args:?}");
        assert_eq!(err.trim_end().lines().count(), 1, "{args:?}: {err}");
    }
}

const GLIBC: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../shared/traces/glibc-2.36-linux-x86_64"
);

/// True for a line of a glibc recording that is an event: a call, or a `# mark` line.
fn is_event(line: &str) -> bool {
    !line.starts_with('#') || line.starts_with("# mark")
}

/// The chunks `pyalloc map TRACE --at N --svg FILE` draws (FILE named `svg_name` in the
/// scratch folder).
fn glibc_map_at(
    trace: &str,
    n: u64,
    svg_name: &str,
) -> Vec<(u64, u64, String, Option<String>, Option<u64>)> {
    let svg = scratch(svg_name);
    let at = n.to_string();
    let (ok, _, err) = pyalloc(&["map", trace, "--at", &at, "--svg", svg.to_str().unwrap()]);
    assert!(ok, "{err}");
    chunks_drawn(&std::fs::read_to_string(&svg).unwrap())
}

/// Every `<rect class="chunk" …>` of a map: (chunk, size, state, bin, position).
fn chunks_drawn(svg: &str) -> Vec<(u64, u64, String, Option<String>, Option<u64>)> {
    svg.split('<')
        .filter(|t| t.starts_with("rect class=\"chunk\""))
        .map(|t| {
            (
                u64::from_str_radix(attr(t, "data-chunk").unwrap().trim_start_matches("0x"), 16)
                    .unwrap(),
                attr(t, "data-size").unwrap().parse().unwrap(),
                attr(t, "data-state").unwrap().to_string(),
                attr(t, "data-bin").map(str::to_string),
                attr(t, "data-position").map(|p| p.parse().unwrap()),
            )
        })
        .collect()
}

#[test]
fn map_of_a_glibc_trace_draws_the_models_chunks_and_bins() {
    use pyalloc::report::teach::glibc::GlibcAt;
    use pyalloc::report::teach::At;
    for name in ["synthetic", "python27_so_loop"] {
        let trace = format!("{GLIBC}/{name}.trace.gz");
        let events = {
            let f = std::fs::File::open(&trace).unwrap();
            BufReader::new(flate2::read::GzDecoder::new(f))
                .lines()
                .filter(|l| is_event(l.as_ref().unwrap()))
                .count() as u64
        };
        // three points spread over the recording, the last its final event
        for n in [events / 3, 2 * events / 3, events - 1] {
            let drawn = glibc_map_at(&trace, n, &format!("{name}-{n}.svg"));
            let g = GlibcAt::replay(Path::new(&trace), None, At::Event(n), false).unwrap();
            let m = &g.model;
            let mi = m.mallinfo();
            // the strip tiles the heap from its first chunk to the break
            assert_eq!(drawn.len(), m.chunks().len(), "{name} @{n}");
            assert_eq!(drawn[0].0, m.heap_base().0);
            let mut at = drawn[0].0;
            for c in &drawn {
                assert_eq!(c.0, at, "{name} @{n}: chunks back to back");
                at += c.1;
            }
            assert_eq!(
                at,
                m.address_space().brk().0,
                "{name} @{n}: the last chunk (top) ends at brk"
            );
            // mallinfo2 walks the bins, the picture walks the heap: they agree
            let free: Vec<_> = drawn
                .iter()
                .filter(|c| {
                    c.2 == "top"
                        || (c.2 == "free" && !c.3.as_deref().unwrap().starts_with("tcache"))
                })
                .collect();
            assert_eq!(free.len() as u64, mi.ordblks + mi.smblks, "{name} @{n}");
            assert_eq!(
                free.iter().map(|c| c.1).sum::<u64>(),
                mi.fordblks,
                "{name} @{n}"
            );
            let fast: u64 = drawn
                .iter()
                .filter(|c| c.3.as_deref().is_some_and(|b| b.starts_with("fastbin")))
                .map(|c| c.1)
                .sum();
            assert_eq!(fast, mi.fsmblks, "{name} @{n}");
            assert_eq!(drawn.last().unwrap().1, mi.keepcost, "top is keepcost");
            // every bin's chunks carry its name, at their positions in its list
            for b in m.bins() {
                for (pos, a) in b.chunks.iter().enumerate() {
                    let c = drawn.iter().find(|c| c.0 == a.0).unwrap();
                    assert_eq!(
                        (c.2.as_str(), c.3.clone(), c.4),
                        ("free", Some(b.bin.to_string()), Some(pos as u64)),
                        "{name} @{n}: chunk {a}"
                    );
                }
            }
            let binned: usize = m.bins().iter().map(|b| b.chunks.len()).sum();
            assert_eq!(drawn.iter().filter(|c| c.2 == "free").count(), binned);
            eprintln!(
                "{name} @{n}: {} chunks, {} free outside the tcache ({} bytes), {} in bins of which {} in the tcache",
                drawn.len(),
                free.len(),
                mi.fordblks,
                binned,
                drawn.iter().filter(|c| c.3.as_deref().is_some_and(|b| b.starts_with("tcache"))).count()
            );
        }
    }
}

#[test]
fn explain_of_a_glibc_address_names_its_chunk_bin_event_and_rule() {
    let trace = format!("{GLIBC}/synthetic.trace.gz");
    let f = std::fs::File::open(&trace).unwrap();
    // (event index, line, fields) of every call line
    let calls: Vec<(u64, u64, Vec<String>)> = BufReader::new(flate2::read::GzDecoder::new(f))
        .lines()
        .enumerate()
        .filter(|(_, l)| is_event(l.as_ref().unwrap()))
        .enumerate()
        .map(|(i, (n, l))| {
            (
                i as u64,
                n as u64 + 1,
                l.unwrap().split(' ').map(str::to_string).collect(),
            )
        })
        .collect();
    let n = calls.len() as u64 / 2;
    let upto = &calls[..=n as usize];
    // the last malloc before the point whose address no later call touched, and the last
    // free of an address nothing returned again
    let mut later = std::collections::HashSet::new();
    let (mut live, mut freed) = (None, None);
    for (i, line, f) in upto.iter().rev() {
        match f.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
            ["m", _, a] if a != &"0x0" => {
                if live.is_none() && !later.contains(*a) {
                    live = Some((*i, *line, a.to_string()));
                }
                later.insert(a.to_string());
            }
            ["f", a] if a != &"0x0" => {
                if freed.is_none() && !later.contains(*a) {
                    freed = Some((*i, *line, a.to_string()));
                }
                later.insert(a.to_string());
            }
            ["c", _, _, a] | ["a", _, _, a] | ["v", _, a] | ["p", _, a] => {
                later.insert(a.to_string());
            }
            ["r", o, _, a] => {
                later.insert(o.to_string());
                later.insert(a.to_string());
            }
            _ => {}
        }
        if live.is_some() && freed.is_some() {
            break;
        }
    }
    let drawn = glibc_map_at(&trace, n, "synthetic-explain.svg");
    for ((event, line, addr), what) in [(live.unwrap(), "alloc"), (freed.unwrap(), "free")] {
        let (ok, out, err) = pyalloc(&["explain", &trace, &addr, "--at", &n.to_string(), "--json"]);
        assert!(ok, "{err}");
        let v: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["address"], addr);
        assert_eq!(v["last_event"]["event"], event, "{out}");
        assert_eq!(v["last_event"]["line"], line, "{out}");
        assert_eq!(v["last_event"]["what"], what, "{out}");
        assert!(
            v["layer"].as_str().unwrap().starts_with("glibc-2.36"),
            "{out}"
        );
        let mem = u64::from_str_radix(addr.trim_start_matches("0x"), 16).unwrap();
        if what == "alloc" {
            // a live chunk starts 16 bytes before its user pointer, as drawn
            let chunk = &v["owner_chain"][1];
            assert_eq!(chunk["kind"], "chunk");
            assert_eq!(chunk["address"], format!("{:#x}", mem - 16));
            let c = drawn
                .iter()
                .find(|c| c.0 == mem - 16)
                .expect("the chunk is drawn");
            assert_eq!(
                (c.1, c.2.as_str()),
                (chunk["size"].as_u64().unwrap(), "inuse")
            );
            assert!(v["state"].as_str().unwrap().starts_with("live"), "{out}");
            assert!(v["rule"].is_string(), "{out}");
        } else if let Some(c) = drawn.iter().find(|c| c.0 == mem - 16) {
            // still a chunk of its own (not merged): its bin and position as drawn
            assert_eq!(v["bin"].as_str(), c.3.as_deref(), "{out}");
            if c.2 == "free" {
                assert_eq!(v["free_list_position"].as_u64(), c.4, "{out}");
            }
        }
        eprintln!(
            "explain {addr} at {n}:\n{}",
            pyalloc(&["explain", &trace, &addr, "--at", &n.to_string()]).1
        );
    }
}

/// `pyalloc stats TRACE --at E`: (Σ num pools, Σ blocks in use, current arenas).
fn stats_at(trace: &str, e: u64) -> (u64, u64, u64) {
    let (ok, out, err) = pyalloc(&["stats", trace, "--at", &e.to_string()]);
    assert!(ok, "{err}");
    let (mut pools, mut blocks, mut arenas) = (0, 0, None);
    for line in out.lines() {
        let f: Vec<u64> = line
            .split_whitespace()
            .map_while(|w| w.parse().ok())
            .collect();
        if f.len() == 5 && line.split_whitespace().count() == 5 {
            pools += f[2];
            blocks += f[3];
        }
        if let Some(v) = line.strip_prefix("# arenas allocated current") {
            arenas = Some(v.trim_start_matches([' ', '=']).trim().parse().unwrap());
        }
    }
    (pools, blocks, arenas.unwrap())
}

/// The view page's op stream replayed up to event `e` as view.js does: (pools in use,
/// blocks in use, arenas).
fn page_state_at(data: &pyalloc::report::teach::view::ViewData, e: u64) -> (u64, u64, u64) {
    let b = &data.ops;
    let mut pos = 0usize;
    let rd = |pos: &mut usize| common::varint(b, pos);
    let cap = u64::from(data.meta.layout.cap);
    let mut counts: BTreeMap<u64, i64> = BTreeMap::new();
    let (mut live, mut arenas, mut event) = (0i64, 0i64, 0u64);
    for _ in 0..data.meta.ops {
        event += rd(&mut pos);
        let tag = b[pos];
        pos += 1;
        if tag & 3 == 1 {
            pos += 1; // the size class
        }
        let key = rd(&mut pos);
        if event > e {
            break;
        }
        match tag & 3 {
            1 => {
                *counts.entry(key / cap).or_default() += 1;
                live += 1;
            }
            0 => {
                *counts.entry(key / cap).or_default() -= 1;
                live -= 1;
            }
            2 => arenas += 1,
            _ => {
                arenas -= 1;
                let pools = u64::from(data.meta.layout.max_pools);
                counts.retain(|pk, _| pk / pools != key);
            }
        }
    }
    let used = counts.values().filter(|&&n| n > 0).count() as u64;
    (used, live as u64, arenas as u64)
}

#[test]
fn the_view_of_cpython_27_and_3_recordings_holds_the_states_stats_prints() {
    use pyalloc::report::teach::view::{build, build27};
    let py27 = format!("{SHARED}/traces/cpython-2.7.18-linux-x86_64/seed.trace.gz");
    let py3 = format!("{PY311}/seed_py3.trace.gz");
    for (trace, data) in [
        (&py27, build27(Path::new(&py27), &[], false).unwrap()),
        (&py3, build(Path::new(&py3), None, &[], false).unwrap()),
    ] {
        let n = data.meta.events;
        for e in [n / 3, 2 * n / 3, n - 1] {
            let page = page_state_at(&data, e);
            assert_eq!(
                page,
                stats_at(trace, e),
                "{trace} @{e}: (pools, blocks, arenas)"
            );
            eprintln!("{trace} @{e}: page (pools, blocks, arenas) = {page:?} = pyalloc stats");
        }
        let last = data.meta.chart.samples.last().unwrap();
        assert!(
            last.3 > 0 && last.3 <= last.2,
            "resident within mapped: {last:?}"
        );
    }
}

/// `view`, `map` and `compare` never write a page or picture over a file they read (the
/// trace, or compare's real-run lines), however it is named: one line, a failure, and the
/// input byte for byte as it was.
#[test]
fn no_output_is_written_over_an_input() {
    let dir = scratch("over-input");
    std::fs::create_dir_all(&dir).unwrap();
    let trace = dir.join("t.trace.gz");
    let original = std::fs::read(format!("{PY311}/startup_only.trace.gz")).unwrap();
    std::fs::write(&trace, &original).unwrap();
    let link = dir.join("page.html");
    let _ = std::fs::remove_file(&link);
    std::os::unix::fs::symlink(&trace, &link).unwrap();
    let rss = dir.join("rss.txt");
    std::fs::write(&rss, "VmRSS 1\n").unwrap();
    let (t, l, r) = (
        trace.to_str().unwrap(),
        link.to_str().unwrap(),
        rss.to_str().unwrap(),
    );
    let real = format!("glibc-2.36={r}");
    for args in [
        vec!["view", t, t],
        vec!["view", t, l, "--model", "mimalloc-2.1.2"],
        vec!["map", t, "--at", "100", "--svg", l],
        vec!["map", t, "--at", "100", "--html", t],
        vec!["compare", t, "--models", "glibc-2.36", "--svg", t],
        vec!["compare", t, "--models", "glibc-2.36", "--html", l],
        vec![
            "compare",
            t,
            "--models",
            "glibc-2.36",
            "--real-rss",
            &real,
            "--svg",
            r,
        ],
    ] {
        let (ok, _, err) = pyalloc(&args);
        assert!(!ok, "{args:?} succeeded");
        assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
        assert!(err.contains("refusing to write over"), "{args:?}: {err}");
        assert_eq!(std::fs::read(&trace).unwrap(), original, "{args:?}");
        assert_eq!(
            std::fs::read_to_string(&rss).unwrap(),
            "VmRSS 1\n",
            "{args:?}"
        );
    }
}
