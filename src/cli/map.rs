//! `pyalloc map TRACE (--at N | --at-marker SIZE) (--svg FILE | --html FILE)`: the heap at
//! one moment as a picture — pymalloc's arenas as rows of pools (CPython 3 recordings),
//! the PyIntBlocks with their free list (CPython 2.7 PYREC recordings), the brk heap as a
//! strip of chunks with their bins (glibc recordings), mimalloc's segments as lines of
//! 64 KiB slices with their pages' blocks (CPython 3.13 mimalloc recordings, or a CPython 3
//! recording with `--model mimalloc-2.1.2`).

use pyalloc::report::teach::glibc::{self, ChunkPicture, GlibcAt};
use pyalloc::report::teach::map::{escape, freelist_svg, html, svg};
use pyalloc::report::teach::mimalloc;
use pyalloc::report::teach::walk::pyrec27_to;
use pyalloc::report::teach::{write_atomic, At, HeapPicture, Walk};
use pyalloc::trace::{sniff, Format, LineReader};
use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

/// Arguments of `pyalloc map`.
#[derive(clap::Args)]
#[command(group(clap::ArgGroup::new("out").required(true).multiple(true).args(["svg", "html"])))]
pub struct MapArgs {
    /// The recording (CPython 3 pymalloc, CPython 3.13 mimalloc, CPython 2.7 PYREC or glibc
    /// trace, plain or gzip).
    pub trace: PathBuf,
    /// Where: the state after the last event when neither flag is given.
    #[command(flatten)]
    pub point: super::Point,
    /// The model (CPython 3, mimalloc and glibc traces; default: named by the trace's
    /// header, or glibc-2.36; `mimalloc-2.1.2` on a CPython 3 recording: its O/M calls
    /// through mimalloc in its own address space).
    #[arg(long)]
    pub model: Option<String>,
    /// Write the picture as SVG here.
    #[arg(long)]
    pub svg: Option<PathBuf>,
    /// Write it as an HTML page here.
    #[arg(long)]
    pub html: Option<PathBuf>,
}

/// Runs `pyalloc map`.
pub fn run(args: MapArgs) -> Result<ExitCode, String> {
    let at = args.point.at().unwrap_or(At::End);
    pyalloc::report::refuse_inputs(
        args.svg.iter().chain(&args.html).map(PathBuf::as_path),
        &[args.trace.as_path()],
    )?;
    let progress = std::io::stderr().is_terminal();
    let first = LineReader::open(&args.trace)
        .and_then(|mut r| Ok(r.next_line()?.unwrap_or("").to_string()))
        .map_err(|e| e.to_string())?;
    let title = format!("{}", args.trace.display());
    let format = sniff(format!("{first}\n").as_bytes(), true).ok();
    let mimalloc_model =
        format == Some(Format::Pymalloc3) && mimalloc::names_mimalloc(args.model.as_deref());
    let (svg_text, html_text, summary) = match format {
        Some(Format::Mimalloc) | Some(Format::Pymalloc3) if mimalloc_model || format == Some(Format::Mimalloc) => {
            let (_, pic) = mimalloc::picture_at(&args.trace, args.model, at, progress)
                .map_err(|e| e.to_string())?;
            let live: u32 = pic.segments.iter().flat_map(|s| &s.pages).map(|p| p.used).sum();
            let summary = format!(
                "event {} (line {}): {} arena(s), {} segment(s), {} pages, {live} live blocks",
                pic.event,
                pic.line,
                pic.arenas.len(),
                pic.segments.len(),
                pic.pages()
            );
            (mimalloc::svg(&pic), mimalloc::html(&pic, &title), summary)
        }
        Some(Format::Pymalloc3) => {
            let (walk, reached) =
                Walk::to(&args.trace, args.model, progress, at).map_err(|e| e.to_string())?;
            let pic = HeapPicture::of(walk.model(), reached);
            let pools: u64 = pic.per_class().iter().map(|c| c.1).sum();
            let summary = format!(
                "event {reached}: {} arenas, {pools} pools in use",
                pic.arenas.len()
            );
            (svg(&pic), html(&pic, &title), summary)
        }
        Some(Format::Pyrec27) => {
            let (reached, replay) =
                pyrec27_to(&args.trace, at, progress).map_err(|e| e.to_string())?;
            let ints = replay.ints();
            let t = format!("{title}, after event {reached}");
            let s = freelist_svg(ints, &t);
            let pic = HeapPicture::of(replay.pymalloc(), reached);
            let page = format!(
                "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>{}</title></head><body data-event=\"{reached}\">\n<h1>{}</h1>\n<h2>PyIntBlocks</h2>\n{s}<h2>pymalloc</h2>\n{}</body></html>\n",
                escape(&t),
                escape(&t),
                svg(&pic)
            );
            let summary = format!(
                "event {reached}: {} PyIntBlocks, {} live ints, {} free",
                ints.n_blocks(),
                ints.n_live(),
                ints.n_free()
            );
            (s, page, summary)
        }
        Some(Format::Glibc) => {
            let g = GlibcAt::replay(&args.trace, args.model, at, progress)
                .map_err(|e| e.to_string())?;
            let pic = ChunkPicture::of(&g.model, g.event);
            let (free, bytes) = pic.free_outside_tcache();
            let summary = format!(
                "event {}: {} chunks in the brk heap, {free} free ({bytes} bytes, top included) outside the tcache",
                g.event,
                pic.chunks.len()
            );
            (
                glibc::svg(&pic, &g.model),
                glibc::html(&pic, &g.model, &title),
                summary,
            )
        }
        _ => {
            return Err(format!(
                "{}: map draws CPython 3 pymalloc, CPython 3.13 mimalloc, CPython 2.7 PYREC and glibc recordings (first line {first:?})",
                args.trace.display()
            ))
        }
    };
    if let Some(p) = &args.svg {
        write_atomic(p, svg_text.as_bytes())?;
    }
    if let Some(p) = &args.html {
        write_atomic(p, html_text.as_bytes())?;
    }
    eprintln!("{summary}");
    Ok(ExitCode::SUCCESS)
}
