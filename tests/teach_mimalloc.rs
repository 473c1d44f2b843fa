//! `pyalloc explain` and `pyalloc map` of mimalloc held to the CPython 3.13 recordings:
//! an O/M line's address explained as the arena of its `S` line, the 32 MiB segment and
//! the 64 KiB slice it lies in and the page offsets of FACTS.md §3–4 place it; a freed
//! block on `local_free` (FACTS §5) and drawn so; the map's live blocks equal CPython's own
//! `Allocated Blocks` at the marker; the huge block's own segment; own mode on a CPython 3.11
//! recording; bad input refused in one line.

mod common;
use common::pyalloc;
use pyalloc::report::teach::mimalloc::MiWalk;
use pyalloc::report::teach::At;
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

const MI: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../shared/traces/cpython-3.13.0-mimalloc-linux-x86_64"
);
const PY311: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../shared/traces/cpython-3.11.7-linux-x86_64"
);
const SEGMENT: u64 = 1 << 25;
const SLICE: u64 = 1 << 16;

fn scratch(name: &str) -> PathBuf {
    let d = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/teach-tests");
    std::fs::create_dir_all(&d).unwrap();
    d.join(name)
}

/// A recording's lines: (header lines, the lines after it). Line `L` (1-based) is event
/// `L - header - 1`: a mimalloc recording's event numbers count its OS lines.
fn lines(path: &str) -> (u64, Vec<String>) {
    let f = std::fs::File::open(path).unwrap();
    let r = BufReader::new(flate2::read::GzDecoder::new(f));
    let all: Vec<String> = r.lines().map(|l| l.unwrap()).collect();
    let header = all.iter().take_while(|l| l.starts_with('#')).count();
    (header as u64, all[header..].to_vec())
}

fn hex(s: &str) -> u64 {
    u64::from_str_radix(s.trim_start_matches("0x"), 16).unwrap()
}

/// The value of attribute `name` in one tag.
fn attr<'a>(tag: &'a str, name: &str) -> Option<&'a str> {
    let key = format!(" {name}=\"");
    let i = tag.find(&key)? + key.len();
    Some(&tag[i..i + tag[i..].find('"')?])
}

fn explain_json(trace: &str, addr: u64, at: u64, model: Option<&str>) -> Value {
    let (a, e) = (format!("{addr:#x}"), at.to_string());
    let mut args = vec!["explain", trace, &a, "--at", &e, "--json"];
    if let Some(m) = model {
        args.extend(["--model", m]);
    }
    let (ok, out, err) = pyalloc(&args);
    assert!(ok, "{args:?}: {err}");
    serde_json::from_str(&out).unwrap()
}

fn map_svg(trace: &str, at: &[&str], name: &str) -> String {
    let svg = scratch(name);
    let mut args = vec!["map", trace];
    args.extend_from_slice(at);
    args.extend(["--svg", svg.to_str().unwrap()]);
    let (ok, _, err) = pyalloc(&args);
    assert!(ok, "{args:?}: {err}");
    std::fs::read_to_string(&svg).unwrap()
}

/// The first block's offset into its page's first slice (FACTS §4, segment.c
/// `_mi_segment_page_start_from_slice`): 3·bs up to 64 bytes, bs up to 512, else 0.
fn first_block_offset(bs: u64) -> u64 {
    if bs <= 64 {
        3 * bs
    } else if bs <= 512 {
        bs
    } else {
        0
    }
}

/// The arena of the recording: the first mimalloc mmap of 1 GiB (`S size addr …`).
fn arena_base(lines: &[String]) -> u64 {
    lines
        .iter()
        .find_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.first() == Some(&"S") && f[1] == "1073741824").then(|| hex(f[2]))
        })
        .expect("an S line of the arena")
}

#[test]
fn explain_places_o_and_m_lines_where_the_s_line_and_the_page_rules_say() {
    let trace = format!("{MI}/ints.trace.gz");
    let (header, ls) = lines(&trace);
    let base = arena_base(&ls);
    // every 40,000th small top-level O/M malloc
    let picks: Vec<(u64, u64, u64)> = ls
        .iter()
        .enumerate()
        .filter_map(|(i, l)| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() == 4 && f[0] == "m" && (f[1] == "O" || f[1] == "M"))
                .then(|| (i as u64, f[2].parse::<u64>().unwrap(), hex(f[3])))
        })
        .filter(|&(_, n, _)| n <= 16384)
        .step_by(40_000)
        .collect();
    assert!(picks.len() >= 5, "{}", picks.len());
    for (event, n, a) in picks {
        let j = explain_json(&trace, a, event, None);
        let chain = j["owner_chain"].as_array().unwrap();
        let what = format!("event {event} ({n} bytes at {a:#x}): {j}");
        assert_eq!(j["at_event"], event, "{what}");
        assert_eq!(chain[0]["kind"], "arena", "{what}");
        assert_eq!(hex(chain[0]["address"].as_str().unwrap()), base, "{what}");
        let seg = base + (a - base) / SEGMENT * SEGMENT;
        assert_eq!(chain[1]["kind"], "segment", "{what}");
        assert_eq!(hex(chain[1]["address"].as_str().unwrap()), seg, "{what}");
        assert_eq!(chain[1]["index"], (a - base) / SEGMENT, "{what}");
        // a small page is one slice: the slice the address is in
        let slice = (a - seg) / SLICE;
        assert_eq!(chain[2]["kind"], "small page", "{what}");
        assert_eq!(chain[2]["index"], slice, "{what}");
        assert_eq!(
            hex(chain[2]["address"].as_str().unwrap()),
            seg + slice * SLICE
        );
        let bs = j["size_class"]["bytes"].as_u64().unwrap();
        let bin = pyalloc::mimalloc::size_class::bin(n);
        assert_eq!(bs, pyalloc::mimalloc::size_class::bin_size(bin), "{what}");
        assert_eq!(j["size_class"]["index"], bin as u64, "{what}");
        let k = (a - seg - slice * SLICE - first_block_offset(bs)) / bs;
        assert_eq!(chain[3]["kind"], "block", "{what}");
        assert_eq!(chain[3]["index"], k, "{what}");
        assert_eq!(hex(chain[3]["address"].as_str().unwrap()), a, "{what}");
        assert!(j["state"].as_str().unwrap().starts_with("live"), "{what}");
        assert_eq!(j["last_event"]["line"], header + event + 1, "{what}");
        assert_eq!(j["last_event"]["what"], "alloc", "{what}");
        assert_eq!(j["last_event"]["size"], n, "{what}");
        assert!(j["rule"].as_str().unwrap().contains(".c "), "{what}");
    }
}

#[test]
fn a_freed_block_is_on_local_free_and_the_map_draws_it_there() {
    let trace = format!("{MI}/startup_only.trace.gz");
    let (header, ls) = lines(&trace);
    // the first O/M free of a block some earlier line returned
    let (event, a) = ls
        .iter()
        .enumerate()
        .find_map(|(i, l)| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() == 3 && f[0] == "f" && (f[1] == "O" || f[1] == "M"))
                .then(|| (i as u64, hex(f[2])))
        })
        .unwrap();
    let j = explain_json(&trace, a, event, None);
    let what = format!("{a:#x} at event {event}: {j}");
    assert!(
        j["state"].as_str().unwrap().contains("`local_free`"),
        "{what}"
    );
    assert_eq!(j["free_list_position"], 0, "the head: {what}");
    assert_eq!(j["last_event"]["what"], "free", "{what}");
    assert_eq!(j["last_event"]["line"], header + event + 1, "{what}");
    assert!(j["rule"].as_str().unwrap().contains("local_free"), "{what}");
    let k = j["owner_chain"][3]["index"].as_u64().unwrap();

    let svg = map_svg(&trace, &["--at", &event.to_string()], "mi-startup-free.svg");
    // the page holding it, and the run holding its block
    let groups: Vec<&str> = svg.split("<g class=\"page\"").skip(1).collect();
    let page = hex(j["owner_chain"][2]["address"].as_str().unwrap());
    let g = groups
        .iter()
        .find(|g| {
            let first = attr(g, "data-first-slice").unwrap().parse::<u64>().unwrap();
            let seg = hex(j["owner_chain"][1]["address"].as_str().unwrap());
            seg + first * SLICE == page
        })
        .expect("its page is drawn");
    let state = g
        .split("<rect class=\"run\"")
        .skip(1)
        .find(|r| {
            let f: u64 = attr(r, "data-first").unwrap().parse().unwrap();
            let c: u64 = attr(r, "data-count").unwrap().parse().unwrap();
            f <= k && k < f + c
        })
        .and_then(|r| attr(r, "data-state"));
    assert_eq!(state, Some("local_free"), "block {k} of page {page:#x}");
    // one group per page of the model at that event
    let (walk, reached) = MiWalk::to(Path::new(&trace), None, false, At::Event(event)).unwrap();
    assert_eq!(reached, event);
    assert_eq!(groups.len(), walk.pages());
    assert_eq!(
        attr(&svg, "data-pages"),
        Some(groups.len().to_string().as_str())
    );
}

#[test]
fn the_map_at_the_marker_holds_cpythons_allocated_blocks() {
    let trace = format!("{MI}/ints.trace.gz");
    let text = std::fs::read_to_string(format!("{MI}/ints.stderr.txt")).unwrap();
    let cpython = pyalloc::mimalloc::stats::parse_stderr_stats(&text);
    let svg = map_svg(&trace, &["--at-marker", "777778"], "mi-ints-777778.svg");
    let used: u64 = svg
        .split("<g class=\"page\"")
        .skip(1)
        .map(|g| attr(g, "data-used").unwrap().parse::<u64>().unwrap())
        .sum();
    assert_eq!(used, cpython[0].allocated_blocks);
    let (_, ls) = lines(&trace);
    let base = arena_base(&ls);
    let segs: Vec<u64> = svg
        .split("<g class=\"segment\"")
        .skip(1)
        .map(|g| hex(attr(g, "data-segment").unwrap()))
        .collect();
    assert_eq!(segs.first(), Some(&base), "segment 0 at the arena's base");
    assert!(segs.iter().all(|s| (s - base) % SEGMENT == 0));
}

#[test]
fn the_huge_block_gets_a_segment_of_its_own_drawn_and_explained() {
    let trace = format!("{MI}/segments.trace.gz");
    let (_, ls) = lines(&trace);
    let base = arena_base(&ls);
    // the first top-level O/M request of more than 16 MiB (MI_LARGE_OBJ_SIZE_MAX)
    let (event, a) = ls
        .iter()
        .enumerate()
        .find_map(|(i, l)| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let (n, addr) = match f.as_slice() {
                ["m", "O" | "M", n, a] => (n.parse::<u64>().ok()?, a),
                ["r", "O" | "M", _, n, a] => (n.parse::<u64>().ok()?, a),
                _ => return None,
            };
            (n > 16 << 20).then(|| (i as u64, hex(addr)))
        })
        .expect("a huge request");
    let seg = base + (a - base) / SEGMENT * SEGMENT;
    let svg = map_svg(
        &trace,
        &["--at", &event.to_string()],
        "mi-segments-huge.svg",
    );
    let huge: Vec<u64> = svg
        .split("<g class=\"segment\"")
        .skip(1)
        .filter(|g| attr(g, "data-huge") == Some("true"))
        .map(|g| hex(attr(g, "data-segment").unwrap()))
        .collect();
    assert_eq!(huge, [seg]);
    let j = explain_json(&trace, a, event, None);
    assert_eq!(j["owner_chain"][1]["kind"], "huge segment", "{j}");
    assert_eq!(j["owner_chain"][2]["kind"], "huge page", "{j}");
    assert!(
        j["rule"]
            .as_str()
            .unwrap()
            .contains("segment.c mi_segment_huge_page_alloc"),
        "{j}"
    );
    assert!(j["state"].as_str().unwrap().starts_with("live"), "{j}");
}

#[test]
fn own_mode_explains_a_cpython_311_address_under_mimalloc() {
    let trace = format!("{PY311}/startup_only.trace.gz");
    let (header, ls) = lines(&trace);
    let (event, n, a) = ls
        .iter()
        .enumerate()
        .filter_map(|(i, l)| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() == 4 && f[0] == "m" && f[1] == "O")
                .then(|| (i as u64, f[2].parse::<u64>().unwrap(), hex(f[3])))
        })
        .nth(500)
        .unwrap();
    let j = explain_json(&trace, a, event, Some("mimalloc-2.1.2"));
    let what = format!("{a:#x} at event {event}: {j}");
    let model = hex(j["address"].as_str().unwrap());
    assert_ne!(model, a, "pymalloc's address is not mimalloc's: {what}");
    assert_eq!(j["owner_chain"][0]["kind"], "arena", "{what}");
    let details = j["details"].to_string();
    assert!(
        details.contains(&format!("{a:#x} is the recorded address")),
        "{what}"
    );
    assert!(j["state"].as_str().unwrap().starts_with("live"), "{what}");
    assert_eq!(j["last_event"]["line"], header + event + 1, "{what}");
    assert_eq!(j["last_event"]["size"], n, "{what}");
    let bs = j["size_class"]["bytes"].as_u64().unwrap();
    assert_eq!(
        bs,
        pyalloc::mimalloc::size_class::bin_size(pyalloc::mimalloc::size_class::bin(n))
    );
    // the block's address is the page's block 0 plus k blocks
    let k = j["owner_chain"][3]["index"].as_u64().unwrap();
    let page = hex(j["owner_chain"][2]["address"].as_str().unwrap());
    assert_eq!(model, page + first_block_offset(bs) + k * bs, "{what}");
    // and the map of the same point draws the model's pages
    let svg = map_svg(
        &trace,
        &["--at", &event.to_string(), "--model", "mimalloc-2.1.2"],
        "mi-own-311.svg",
    );
    let (walk, _) = MiWalk::to(
        Path::new(&trace),
        Some("mimalloc-2.1.2".into()),
        false,
        At::Event(event),
    )
    .unwrap();
    assert_eq!(svg.matches("<g class=\"page\"").count(), walk.pages());
}

#[test]
fn bad_input_is_one_line_and_a_failure_never_a_panic() {
    let trace = format!("{MI}/ints.trace.gz");
    let (_, ls) = lines(&trace);
    // a RAW block (libc's heap): in no mimalloc segment
    let (event, raw) = ls
        .iter()
        .enumerate()
        .find_map(|(i, l)| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() == 4 && f[0] == "m" && f[1] == "R").then(|| (i as u64, f[3].to_string()))
        })
        .unwrap();
    let at = (event + 2000).to_string();
    let t = trace.as_str();
    let svg = scratch("mi-bad.svg");
    for args in [
        vec!["explain", t, &raw, "--at", &at],
        vec!["explain", t, "0x10", "--at", "99999999"],
        vec!["explain", t, "0x10", "--at", "5", "--model", "glibc-2.36"],
        vec!["map", t, "--at", "99999999", "--svg", svg.to_str().unwrap()],
    ] {
        let (ok, _, err) = pyalloc(&args);
        assert!(!ok, "{args:?}");
        assert_eq!(err.trim_end().lines().count(), 1, "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{args:?}: {err}");
    }
    let (_, _, err) = pyalloc(&["explain", t, &raw, "--at", &at]);
    assert!(err.contains(&format!("0x{raw} is in no segment")), "{err}");
}

/// Applies a view page's op stream (miview.rs's format) up to and including event `upto`:
/// block 0 address of every live page -> its block states.
fn replay_ops(
    data: &pyalloc::report::teach::miview::MiViewData,
    upto: u64,
) -> std::collections::BTreeMap<u64, Vec<u8>> {
    let ops = &data.ops;
    let mut pos = 0usize;
    let rd = |pos: &mut usize| common::varint(ops, pos);
    let mut pages: std::collections::HashMap<u64, Vec<u8>> = Default::default();
    let mut event = 0;
    for _ in 0..data.meta.ops {
        event += rd(&mut pos);
        let tag = ops[pos];
        pos += 1;
        let key = rd(&mut pos);
        let (k, n) = if tag & 7 < 4 {
            let k = rd(&mut pos);
            (k, if tag & 0x80 != 0 { rd(&mut pos) } else { 1 })
        } else {
            (0, 0)
        };
        if event > upto {
            break;
        }
        match tag & 7 {
            st @ 0..=3 => {
                let v = pages.get_mut(&key).expect("a block op of a live page");
                for b in k..k + n {
                    v[b as usize] = st;
                }
            }
            4 => {
                pages.insert(
                    key,
                    vec![3; data.meta.layout.pages[key as usize].5 as usize],
                );
            }
            5 => {
                pages.remove(&key).expect("a live page goes");
            }
            _ => {}
        }
    }
    pages
        .into_iter()
        .map(|(inc, v)| (data.meta.layout.pages[inc as usize].3, v))
        .collect()
}

#[test]
fn the_view_ops_rebuild_every_pages_blocks_as_the_model_has_them() {
    use pyalloc::report::teach::miview;
    for (trace, model) in [
        (format!("{MI}/startup_only.trace.gz"), None),
        (format!("{MI}/segments.trace.gz"), None),
        (
            format!("{PY311}/startup_only.trace.gz"),
            Some("mimalloc-2.1.2"),
        ),
    ] {
        let path = Path::new(&trace);
        let data = miview::build(path, model.map(String::from), &[], false).unwrap();
        // at the end, and at a point in the middle
        for at in [data.meta.events / 2, data.meta.events - 1] {
            let (walk, reached) =
                MiWalk::to(path, model.map(String::from), false, At::Event(at)).unwrap();
            let want: std::collections::BTreeMap<u64, Vec<u8>> =
                miview::pages_of(&walk).into_iter().collect();
            let got = replay_ops(&data, reached);
            assert_eq!(got.len(), want.len(), "{trace} at {reached}: pages");
            for (start, states) in &want {
                assert_eq!(
                    got.get(start),
                    Some(states),
                    "{trace} at {reached}: page {start:#x}"
                );
            }
        }
    }
}

/// The page is a function of the recording and the model: its ops come out byte for byte
/// alike on every build (pages and segments that go at one event once came out in hash-map
/// order, which differs between maps and between runs).
#[test]
fn the_view_ops_are_the_same_on_every_build() {
    use pyalloc::report::teach::miview;
    let path = format!("{PY311}/startup_only.trace.gz");
    let build = || {
        miview::build(Path::new(&path), Some("mimalloc-2.1.2".into()), &[], false)
            .unwrap()
            .ops
    };
    let first = build();
    for _ in 0..4 {
        assert!(
            build() == first,
            "{path}: the view's ops differ between builds"
        );
    }
}
